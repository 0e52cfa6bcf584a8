"""Defaults shared by the image-classification experiments; each config file overrides a few."""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.task = "image_classification"
  config.experiment = ""
  config.model = ""
  config.model_kwargs = ml_collections.ConfigDict()
  config.dataset = "mnist"
  config.data_dir = ""  # '' -> $DL_JAX_DATA_DIR or ~/.cache/dl_jax
  config.val_size = 5000  # held out of the 60k training images
  config.split_seed = 0  # the validation split does not move with `seed`
  config.train_subset = 0  # 0: all remaining training images
  config.seed = 0
  config.batch_size = 128
  config.eval_batch_size = 1000
  config.num_epochs = 10
  config.max_steps = 0  # 0: num_epochs decides
  config.optimizer = "adam"
  config.learning_rate = 1e-3
  config.lr_schedule = "cosine"
  config.warmup_steps = 0
  config.weight_l1 = 0.0  # coefficient of sum |w| over kernels (section 2.5.4)
  config.weight_l2 = 0.0  # coefficient of sum w^2 over kernels
  config.log_every_steps = 100
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3
  return config
