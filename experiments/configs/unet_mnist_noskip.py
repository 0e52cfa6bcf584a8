"""The ablation of `unet_mnist`: the same UNet and recipe without the skip connections (the
expanding path sees only the upsampled bottleneck), to test the claim of section 5.3.4 that
the skips carry the local detail needed at the borders.

  ./launch.sh unet_mnist_noskip

See the README's segmentation table: boundary F1 and mIoU with and without skips.
"""

from experiments.configs import unet_mnist


def get_config():
  config = unet_mnist.get_config()
  config.experiment = "unet_mnist_noskip"
  config.model_kwargs.skips = False
  return config
