"""ResNet (He et al. 2016) on Fashion-MNIST (section 5.3.2): `resnet18_small`;
`--config.model=resnet34_small` ... `resnet152_small` for the other depths,
`--config.model_kwargs.preactivation=True` for v2.

  ./launch.sh fashion_resnet [--config.num_epochs=N] [--config.augment_random_erasing=0.5]

The default (1 epoch, about 30 minutes on 2 CPU cores) is a CPU trial; the README's
architecture table runs `--config.num_epochs=30` on a GPU. The recipe is `base.architecture_config`.
"""

from experiments.configs import base


def get_config():
  return base.architecture_config("fashion_resnet", "resnet18_small", num_epochs=1)
