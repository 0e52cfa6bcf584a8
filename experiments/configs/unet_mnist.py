"""UNet (Ronneberger et al. 2015; figure 5.37, section 5.3.4) segmenting canvases of 1-5 real
MNIST digits into 11 classes (background and the 10 digits) with the per-pixel softmax and
pixel-wise cross-entropy of section 5.3.4.

  ./launch.sh unet_mnist
  ./launch.sh unet_mnist_noskip   # the same network without its skip connections

Goals (issue 12): test mIoU >= 0.90 (a community UNet on the similar M2NIST reports 0.83), and
a boundary F1 clearly above that of the ablation without skips. See the README's segmentation
table for the numbers.
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.task = "segmentation"
  config.experiment = "unet_mnist"
  config.model = "unet"
  config.model_kwargs = ml_collections.ConfigDict()
  # The bottleneck: 256 maps at 4x4. Half these widths: test mIoU 0.863, in a third of the time.
  config.model_kwargs.features = (16, 32, 64, 128)
  config.model_kwargs.skips = True
  config.model_kwargs.batch_norm = True
  config.dataset = "mnist"
  config.data_dir = ""  # '' -> $DL_JAX_DATA_DIR or ~/.cache/dl_jax
  config.canvas_size = 64
  config.min_objects = 1
  config.max_objects = 5
  config.canvas_seed = 0
  config.train_size = 12000  # canvases of the first 55,000 training digits
  config.val_size = 1000  # canvases of the last 5,000 training digits
  config.test_size = 2000  # canvases of the 10,000 test digits
  config.seed = 0
  config.batch_size = 16
  config.eval_batch_size = 250
  config.num_epochs = 6
  config.max_steps = 0
  config.optimizer = "adam"
  config.learning_rate = 3e-3
  config.lr_schedule = "cosine"
  config.warmup_steps = 0
  config.class_weight_power = 0.5  # w[c] = (median(f) / f[c])**power; 0: no class weights
  config.boundary_tolerance = 2.0  # pixels (see dl_jax.vision.segmentation)
  config.figure_count = 8
  config.log_every_steps = 100
  config.checkpoint_every_steps = 500
  config.keep_checkpoints = 3
  return config
