"""GoogLeNet / Inception v1 (Szegedy et al. 2014) on Fashion-MNIST (section 5.3.2):
`googlenet_small`, its auxiliary classifiers weighted 0.3 in training.

  ./launch.sh fashion_googlenet [--config.num_epochs=N] [--config.augment_random_erasing=0.5]

The default (1 epoch) is a trial; on 2 CPU cores a step takes about 30 s, so run it on a
GPU; the README's architecture table runs `--config.num_epochs=30`. The recipe is `base.architecture_config`.
"""

from experiments.configs import base


def get_config():
  return base.architecture_config("fashion_googlenet", "googlenet_small", num_epochs=1)
