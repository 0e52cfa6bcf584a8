"""Skip-gram with negative sampling (section 3.3.2, eq. 3.11-3.13) on SOTU + Moby Dick + wiki.

  ./launch.sh word2vec_skipgram

gensim's settings (dim 100, window 5, 5 noise words, min_count 5, sample 1e-3, 5 epochs, SGD with
learning rate 0.025 decaying linearly to 0.0001), native engine: 32768 centers per step, 2 threads.
Expected: analogy accuracy >= 6 % of the covered questions (restrict 30k, coverage 39.9 %).
bench/word2vec.py (these settings, seeds 1/2/3, 2 AMD EPYC cores): 6.94 / 6.68 / 6.19 % in
12-15 s of training; gensim 4.4.0 (workers=2) 6.40 / 6.55 / 6.50 % in 22-26 s.
Outputs in runs/word2vec_skipgram: results.json (analogies, WordSim-353 / SimLex-999 Spearman,
neighbours), vectors.txt (word2vec text format), projection.png, learning_curves.png.
"""

import ml_collections


def word2vec_config() -> ml_collections.ConfigDict:
  """Defaults shared by the chapter 3 experiments (task "word_embeddings")."""
  config = ml_collections.ConfigDict()
  config.task = "word_embeddings"
  config.experiment = ""
  config.model = "skipgram"  # skipgram | cbow | nplm
  config.loss = "negative_sampling"  # negative_sampling | softmax
  config.corpus = ("sotu", "moby_dick", "wiki")
  config.data_dir = ""  # '' -> $DL_JAX_DATA_DIR or ~/.cache/dl_jax
  config.max_tokens = 0  # 0: the whole corpus; else the first documents up to this many tokens
  config.min_count = 5
  config.max_vocab = 0  # 0: no limit
  config.sample = 1e-3  # subsampling of frequent words
  config.dim = 100
  config.window = 5  # L: window widths are uniform in [1, L]
  config.negative = 5  # k noise words per center
  config.noise_group = 1  # consecutive centers sharing their noise words (1: word2vec's way)
  config.noise_pool = 0  # noise words per group, weighted k / noise_pool (0: k)
  config.engine = "auto"  # auto (native on a CPU if it builds, else xla) | xla | native
  config.native_threads = 2  # native engine: 1 (word2vec's sequential loop) or 2 (halves)
  config.epochs = 5
  config.batch_size = 0  # centers per step; 0: 32768 with the native engine, 1024 with xla
  config.steps_per_call = 32  # steps per jitted call (lax.scan)
  config.learning_rate = 0.025
  config.min_learning_rate = 0.0001  # linear decay to this over the run, as word2vec
  config.row_scale = "none"  # none | sqrt: 1/sqrt(occurrences) on a row's summed update
  config.seed = 0
  config.max_steps = 0  # 0: epochs decide
  config.log_every_steps = 32
  config.checkpoint_every_steps = 128
  config.keep_checkpoints = 2
  # NPLM only
  config.context_size = 4  # n - 1 previous words (eq. 3.3)
  config.hidden = 100
  config.split_seed = 0
  return config


def get_config():
  config = word2vec_config()
  config.experiment = "word2vec_skipgram"
  return config
