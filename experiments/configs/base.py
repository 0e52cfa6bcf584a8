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


def sequence_config(name: str, model: str, order: str) -> ml_collections.ConfigDict:
  """The recipe of the sequential MNIST experiments (the `seq_mnist_*` configs): Adam 1e-3 with
  cosine decay, batch 128, the gradient clipped to a global norm of 1, 5,000 training images held
  out for validation; `order` "rows", "pixels" or "permuted" (pixel order from
  `permutation_seed`). Each config sets a length that runs in minutes on 2 CPU cores."""
  config = ml_collections.ConfigDict()
  config.task = "sequence_classification"
  config.experiment = name
  config.model = model
  config.model_kwargs = ml_collections.ConfigDict()
  config.dataset = "mnist"
  config.order = order
  config.permutation_seed = 0  # the pixel order of "permuted"
  config.data_dir = ""  # '' -> $DL_JAX_DATA_DIR or ~/.cache/dl_jax
  config.val_size = 5000
  config.split_seed = 0
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
  config.clip_norm = 1.0  # global norm of the gradient (0: no clipping)
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


def image_epoch_config(task: str, name: str, model: str, num_epochs: int, batch_size: int = 128,
                       eval_batch_size: int = 1000) -> ml_collections.ConfigDict:
  """The keys the epoch-based image tasks share (`EpochTask`): Adam 1e-3 with cosine decay,
  5,000 training images held out for validation, the whole test set at the end."""
  config = ml_collections.ConfigDict()
  config.task = task
  config.experiment = name
  config.model = model
  config.model_kwargs = ml_collections.ConfigDict()
  config.data_dir = ""  # '' -> $DL_JAX_DATA_DIR or ~/.cache/dl_jax
  config.val_size = 5000
  config.split_seed = 0
  config.train_subset = 0  # 0: all remaining training images
  config.test_subset = 0  # 0: the whole test set (> 0: the first n, for trial runs only)
  config.seed = 0
  config.batch_size = batch_size
  config.eval_batch_size = eval_batch_size
  config.num_epochs = num_epochs
  config.max_steps = 0
  config.optimizer = "adam"
  config.learning_rate = 1e-3
  config.lr_schedule = "cosine"
  config.warmup_steps = 0
  config.log_every_steps = 100
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3
  return config


def autoencoder_config(name: str, model: str, num_epochs: int) -> ml_collections.ConfigDict:
  """The autoencoder recipe of section 5.5.1 (the `ae_*` configs): Adam 1e-3 with cosine decay,
  batch 128, per-pixel cross-entropy on pixels in [0, 1], 5,000 training images held out for
  validation, MNIST (`--config.dataset=fashion_mnist` for Fashion-MNIST)."""
  config = image_epoch_config("autoencoding", name, model, num_epochs)
  config.dataset = "mnist"
  config.loss = "bce"  # or "mse"
  config.code_l1 = 0.0  # weight of sum_i |h_i| (eq. 5.28): the sparse autoencoder
  config.noise = "none"  # n(x) of eq. 5.29: gaussian, masking, salt_and_pepper
  config.noise_level = 0.0  # its standard deviation or the fraction of pixels hit
  config.sparsity_tolerance = 0.01  # |h_i| below this counts as a zero code unit
  config.probe_steps = 500  # L-BFGS iterations of the linear probe on the frozen codes
  config.probe_l2 = 1e-4
  return config


def metric_config(name: str, loss: str, dataset: str = "mnist") -> ml_collections.ConfigDict:
  """The metric-learning recipe of section 5.5.2 (the `siamese_*`, `triplet_*` and `oneshot_*`
  configs): the conv-4 embedding, Adam 1e-3 with cosine decay, P x K batches, semi-hard
  triplets; MNIST with the digits 5-9 held out of training (5-way episodes on them; 32 channels
  per convolution, 2,000 steps), or kanji with 20 % of the characters held out (5- and 20-way
  episodes; 64 channels, 3,000 steps)."""
  config = ml_collections.ConfigDict()
  config.task = "metric_learning"
  config.experiment = name
  config.model = "embed_conv4"
  config.model_kwargs = ml_collections.ConfigDict()
  if dataset != "kanji":
    config.model_kwargs.features = (32, 32, 32, 32)
  config.dataset = dataset
  config.data_dir = ""  # '' -> $DL_JAX_DATA_DIR or ~/.cache/dl_jax
  config.held_out_classes = (5, 6, 7, 8, 9) if dataset != "kanji" else ()
  config.held_out_fraction = 0.2  # kanji: the share of characters never trained on
  config.kanji_characters = 1623  # as many classes as Omniglot
  config.kanji_drawings = 20
  config.val_size = 2000  # images of the training classes, for tau and monitoring
  config.split_seed = 0
  config.seed = 0
  config.loss = loss
  config.mining = "semihard"  # triplet only: all, easy, semihard, hard, batch_hard
  config.triplet_distance = "squared"  # d of eq. 5.37; "euclidean": ||.|| (Hermans et al.)
  config.margin = 1.0
  config.classes_per_batch = 5 if dataset != "kanji" else 32
  config.examples_per_class = 20 if dataset != "kanji" else 4
  config.num_steps = 2000 if dataset != "kanji" else 3000
  config.eval_every_steps = 500
  config.eval_batch_size = 1000
  config.optimizer = "adam"
  config.learning_rate = 1e-3
  config.lr_schedule = "cosine"
  config.warmup_steps = 0
  config.ways = (5,) if dataset != "kanji" else (20, 5)
  config.shots = (1, 5)
  config.queries = 5
  config.episodes = 1000
  config.verification_pairs = 10000
  config.max_steps = 0
  config.log_every_steps = 100
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3
  return config
