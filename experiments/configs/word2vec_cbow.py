"""CBOW with negative sampling (section 3.3.1, eq. 3.6-3.10) on SOTU + Moby Dick + wiki.

  ./launch.sh word2vec_cbow

gensim's settings except the learning rate, 0.05 (word2vec's default for CBOW) decaying linearly
to 0.0001; the averaged context's error reaches every context word undivided, as in word2vec.
Expected: analogy accuracy >= 5 % of the covered questions (restrict 30k). bench/word2vec.py
(these settings, native engine, 8192 centers per step, 1 thread, seed 1, 2 cores shared with other
processes, load average 2-3): 6.86 % in 5.8-6.3 s of training; gensim 4.4.0 (workers=2, its
default 0.025) 4.66 % in 5.3 s.
"""

from experiments.configs import word2vec_skipgram


def get_config():
  config = word2vec_skipgram.word2vec_config()
  config.experiment = "word2vec_cbow"
  config.model = "cbow"
  config.learning_rate = 0.05
  config.native_threads = 1  # short CBOW steps: 2 threads were slower (10.2 s vs 6.7 s, busy cores)
  return config
