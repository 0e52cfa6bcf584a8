"""CBOW with negative sampling (section 3.3.1, eq. 3.6-3.10) on SOTU + Moby Dick + wiki.

  ./launch.sh word2vec_cbow

gensim's settings except the learning rate, 0.05 (word2vec's default for CBOW) decaying linearly
to 0.0001; the averaged context's error reaches every context word undivided, as in word2vec.
Expected: analogy accuracy >= 5 % of the covered questions (restrict 30k). bench/word2vec.py
(these settings, native engine, 32768 centers per step, 2 threads, seeds 1/2/3, 2 AMD EPYC cores):
6.48 / 5.81 / 6.37 % in 3.8-4.4 s of training; gensim 4.4.0 (workers=2, its default 0.025)
4.55 / 4.13 / 4.36 % in 5.3-6.2 s.
"""

from experiments.configs import word2vec_skipgram


def get_config():
  config = word2vec_skipgram.word2vec_config()
  config.experiment = "word2vec_cbow"
  config.model = "cbow"
  config.learning_rate = 0.05
  return config
