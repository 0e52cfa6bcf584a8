"""VGG (Simonyan and Zisserman 2014) on Fashion-MNIST (section 5.3.2): `vgg16_small`;
`--config.model=vgg11_small`, `vgg13_small` or `vgg19_small` for the other depths.

  ./launch.sh fashion_vgg [--config.num_epochs=N] [--config.augment_random_erasing=0.5]

The default (1 epoch, about 6 minutes on 2 CPU cores) is a CPU trial; `--config.num_epochs=15`
reached 94.13 % test accuracy in about 1.5 hours on 2 Intel Xeon cores (anchor 93.5 %), the
README's table. The recipe is `base.architecture_config`.
"""

from experiments.configs import base


def get_config():
  return base.architecture_config("fashion_vgg", "vgg16_small", num_epochs=1)
