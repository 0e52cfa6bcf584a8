"""LeNet-5 (LeCun et al. 1998) on Fashion-MNIST (section 5.3.2): `lenet5_relu`, the modern
variant; `--config.model=lenet5` for the paper's scaled tanh, trainable sub-sampling and partial C3.

  ./launch.sh fashion_lenet5 [--config.num_epochs=N] [--config.augment_random_erasing=0.5]

The default is the full run: about 10 minutes on 2 CPU cores. The recipe is `base.architecture_config`.
"""

from experiments.configs import base


def get_config():
  return base.architecture_config("fashion_lenet5", "lenet5_relu", num_epochs=30)
