"""AlexNet (Krizhevsky et al. 2012) on Fashion-MNIST (section 5.3.2), its small-image
configuration `alexnet_small`.

  ./launch.sh fashion_alexnet [--config.num_epochs=N] [--config.augment_random_erasing=0.5]

The default (1 epoch, about 2.5 minutes on 2 CPU cores) is a CPU trial; the README's
architecture table runs `--config.num_epochs=30`. The recipe is `base.architecture_config`.
"""

from experiments.configs import base


def get_config():
  return base.architecture_config("fashion_alexnet", "alexnet_small", num_epochs=1)
