"""Character-level LSTM language model on Moby Dick (the models for sequential data of the course
overview, section 1.5), against an interpolated Kneser-Ney n-gram.

  ./launch.sh charlm_moby_lstm

The CPU default: one LSTM layer of 512 units (64-dimensional character embedding, 1,226,702
parameters with the 78 characters), 32 streams x 100 characters per step, Adam 2e-3 with cosine
decay, the gradient clipped to a global norm of 5, 2,400 steps (7.1 epochs of the 1,076,313
training characters): test 2.079 bpc against 1.987 for the 8-gram Kneser-Ney chosen on the
validation text, 660 s of training (676 s wall) on 2 AMD EPYC cores. The full run, char-rnn's
size (2 layers of 512, 3,325,902 parameters), is for an accelerator and has not been made here:

  ./launch.sh charlm_moby_lstm --config.model_kwargs.num_layers=2 --config.batch_size=64 \
      --config.num_steps=20000 --config.eval_every_steps=1000
"""

import ml_collections

NUM_STEPS = 2400


def charlm_config(name: str, model: str) -> ml_collections.ConfigDict:
  """The recipe of the character language models on Moby Dick (the `charlm_moby_*` configs)."""
  config = ml_collections.ConfigDict()
  config.task = "language_model"
  config.experiment = name
  config.model = model
  config.model_kwargs = ml_collections.ConfigDict()  # num_classes: from the data
  config.model_kwargs.hidden = 512
  config.corpus = "moby_dick"
  config.data_dir = ""  # '' -> $DL_JAX_DATA_DIR or ~/.cache/dl_jax
  config.lowercase = False  # case kept, as in char-rnn
  config.min_char_count = 5  # rarer training characters -> the unknown symbol
  config.val_fraction = 0.05  # of the documents (chapters)
  config.test_fraction = 0.05
  config.split_seed = 0
  config.seed = 0
  config.batch_size = 32  # streams
  config.seq_len = 100  # characters per window (truncated BPTT)
  config.num_steps = NUM_STEPS
  config.eval_every_steps = 200
  config.eval_streams = 16  # evaluation: contiguous streams of the split ...
  config.eval_window = 500  # ... read in windows of this many characters, the carry passed on
  config.max_steps = 0  # 0: num_steps decides
  config.optimizer = "adam"
  config.learning_rate = 2e-3
  config.lr_schedule = "cosine"
  config.warmup_steps = 0
  config.clip_norm = 5.0  # global norm of the gradient (0: no clipping)
  config.ngram_orders = (2, 3, 4, 5, 6, 7, 8, 9, 10)  # chosen on the validation text
  config.ngram_discounts = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
  config.sample_prompt = "The whale "
  config.sample_length = 300
  config.sample_count = 3
  config.sample_temperatures = (1.0, 0.7)
  config.log_every_steps = 100
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3
  return config


def get_config():
  return charlm_config("charlm_moby_lstm", "lstm_lm")
