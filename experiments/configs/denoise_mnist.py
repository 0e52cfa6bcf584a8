"""Denoising MNIST (section 5.3.5, eq. 5.29): DnCNN trained with the MSE against clean digits
under Gaussian noise of sigma 0.4 (not clipped), against scikit-image's classical denoisers
(Gaussian filter, median, total variation, non-local means, wavelet), each tuned on validation
digits (`dl_jax.vision.denoise`). A few minutes on a CPU.

  ./launch.sh denoise_mnist
  ./launch.sh denoise_mnist --config.noise_level=0.2      # or 0.6
  ./launch.sh denoise_mnist --config.noise=salt_and_pepper --config.noise_level=0.2
  ./launch.sh denoise_mnist --config.dataset=fashion_mnist     # or ./launch.sh denoise_fashion
  ./launch.sh denoise_mnist --config.model=unet --config.model_kwargs.features=32,64

Batch size 4: for the same images seen, more and smaller steps train further, and on 2 CPU
cores a small batch is also faster per image. The UNet 32-64 on Fashion-MNIST: 115, 146, 183
and 158 images/s at batch 64, 32, 16 and 4, and test PSNR after the same 7,680 images (learning
rate not yet decayed) 17.98, 18.32, 18.91 and 19.53 dB; three epochs of 20,000 images gave
19.13 dB at batch 64 and 20.88 dB at batch 4.

The goal: at sigma 0.4, test PSNR at least 3 dB above the best classical denoiser
on the same test digits (the README's denoising table has the numbers).
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.task = "denoising"
  config.experiment = "denoise_mnist"
  config.model = "dncnn"
  # The data's sizes (the other hyper-parameters come from the registry's defaults).
  config.model_kwargs = ml_collections.ConfigDict(
      {"image_size": 28, "in_channels": 1, "out_channels": 1})
  config.dataset = "mnist"
  config.data_dir = ""  # '' -> $DL_JAX_DATA_DIR or ~/.cache/dl_jax
  config.noise = "gaussian"  # or salt_and_pepper
  config.noise_level = 0.4  # the Gaussian's sigma on [0, 1] images, or the fraction of pixels
  config.clip_noise = False  # True: noisy images clipped to [0, 1]
  config.val_size = 5000
  config.split_seed = 0
  config.train_subset = 20000  # 0: all 55,000 remaining training images
  config.test_subset = 0  # 0: the whole test set (> 0: the first n, for trial runs only)
  config.ecg_length = 256  # dataset "ecg" only: samples per window,
  config.ecg_stride = 32  # and the step between training windows
  config.seed = 0
  config.batch_size = 4  # more, smaller steps: see the module docstring
  config.eval_batch_size = 500
  config.num_epochs = 3
  config.max_steps = 0
  config.optimizer = "adam"
  config.learning_rate = 2e-3
  config.lr_schedule = "cosine"
  config.warmup_steps = 0
  config.classical = True  # tune and measure the classical denoisers at the end
  config.classical_images = 1000  # the test images they (and the network) are measured on
  config.tune_images = 200  # the validation images their parameter is tuned on
  config.log_every_steps = 1000
  config.checkpoint_every_steps = 2000
  config.keep_checkpoints = 3
  return config
