"""Defaults shared by the image-classification experiments; each config file overrides a few."""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.task = "image_classification"
  config.experiment = ""
  config.model = ""
  config.model_kwargs = ml_collections.ConfigDict()
  config.dataset = "mnist"
  config.classes = ()  # class ids to keep, relabelled 0..k-1 in this order; (): all
  config.data_dir = ""  # '' -> $DL_JAX_DATA_DIR or ~/.cache/dl_jax
  config.val_size = 5000  # held out of the 60k training images
  config.split_seed = 0  # the validation split does not move with `seed`
  config.train_subset = 0  # 0: all remaining training images
  config.test_subset = 0  # 0: the whole test set (> 0: the first n, for trial runs only)
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
  config.aux_loss_weight = 0.3  # auxiliary classifiers (GoogLeNet), in training only
  # Augmentation inside the jitted step, pure in (seed, step); all off by default.
  config.augment_crop_padding = 0  # random crop of the image padded by this many pixels
  config.augment_flip = False  # left-right, probability 1/2
  config.augment_max_rotation = 0.0  # degrees, uniform in [-max, max]
  config.augment_random_erasing = 0.0  # probability (Zhong et al. 2017)
  # Transfer learning (section 5.4): start from a finished run's variables.
  config.init_from = ""  # its workdir ('': initialize afresh)
  config.reinit_layers = ()  # layers initialized afresh; (): the output layer
  config.freeze_layers = ()  # layers not trained; 'transferred': every layer copied
  config.log_every_steps = 100
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3
  return config


def architecture_config(name: str, model: str, num_epochs: int) -> ml_collections.ConfigDict:
  """The recipe of the section 5.3.2 architectures on Fashion-MNIST (the `fashion_*` configs):

  SGD with Nesterov momentum 0.9, batch 128, learning rate 0.05 with a 200-step warm-up and cosine
  decay, weight decay 5e-4 (as the L2 penalty 2.5e-4 * sum w^2 over the kernels: its gradient is
  5e-4 w), augmentation by random crops of the image padded by 2 pixels and left-right flips (the
  Fashion-MNIST benchmark's ResNet-18 row uses flips and translations), 5,000 training images held
  out for validation. Random erasing (Zhong et al. 2017) is the flag
  `--config.augment_random_erasing=0.5`.
  """
  config = base_config()
  config.experiment = name
  config.model = model
  config.dataset = "fashion_mnist"
  config.optimizer = "nesterov"
  config.learning_rate = 0.05
  config.lr_schedule = "cosine"
  config.warmup_steps = 200  # linear warm-up from 0
  config.weight_l2 = 2.5e-4
  config.augment_crop_padding = 2
  config.augment_flip = True
  config.num_epochs = num_epochs
  return config


def mnist1d_config(name: str, model: str, shuffled: bool = False) -> ml_collections.ConfigDict:
  """The recipe of the MNIST-1D experiments (the `mnist1d_*` configs), that of Greydanus & Kobak,
  "Scaling down deep learning with MNIST-1D" (2020/2024), notebooks/train.py: Adam, learning
  rate 1e-2, constant, no weight decay, batch 100, 6000 steps (their 2024 version runs 8000);
  here 172 epochs of 3500 // 100 = 35 steps = 6020 steps, 500 of the 4000 training signals held
  out for validation. `shuffled`: the 40 positions permuted once, the same way for every signal
  (the paper's control)."""
  config = base_config()
  config.experiment = name
  config.model = model
  config.dataset = "mnist1d_shuffled" if shuffled else "mnist1d"
  config.val_size = 500
  config.batch_size = 100
  config.eval_batch_size = 500
  config.num_epochs = 172
  config.learning_rate = 1e-2
  config.lr_schedule = "constant"
  return config


def nbody_config(name: str, model: str) -> ml_collections.ConfigDict:
  """The N-body recipe of Satorras et al. (2021): Adam 5e-4 with weight decay 1e-12, batches of
  100 of the 3000 training systems, evaluation every 5 epochs (the `nbody_*` configs)."""
  config = ml_collections.ConfigDict()
  config.task = "nbody"
  config.experiment = name
  config.model = model
  config.model_kwargs = ml_collections.ConfigDict()
  config.dataset = "charged5"
  config.data_dir = ""  # '' -> $DL_JAX_DATA_DIR or ~/.cache/dl_jax (the simulation's cache)
  config.train_size = 3000
  config.seed = 0
  config.batch_size = 100
  config.num_epochs = 1000
  config.eval_every_epochs = 5
  config.max_steps = 0  # 0: num_epochs decides; else stop at the first epoch end at or after it
  config.optimizer = "adam"
  config.learning_rate = 5e-4
  config.lr_schedule = "constant"
  config.weight_decay = 1e-12
  config.log_every_steps = 300
  config.checkpoint_every_steps = 3000
  config.keep_checkpoints = 3
  return config
