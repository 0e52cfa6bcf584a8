"""CBOW with negative sampling (section 3.3.1, eq. 3.6-3.10) on SOTU + Moby Dick + wiki.

  ./launch.sh word2vec_cbow

gensim's settings except the learning rate, 0.05 (word2vec's default for CBOW) decaying linearly
to 0.0001; the averaged context's error reaches every context word undivided, as in word2vec.
Expected: analogy accuracy >= 5 % of the covered questions (restrict 30k; measured 6.4 %,
WordSim-353 Spearman 0.42, SimLex-999 0.20, in 48 s of training on 2 busy CPU cores; gensim 4.4.0
with its default 0.025 gets 4.0-4.4 %).
"""

from experiments.configs import word2vec_skipgram


def get_config():
  config = word2vec_skipgram.word2vec_config()
  config.experiment = "word2vec_cbow"
  config.model = "cbow"
  config.learning_rate = 0.05
  return config
