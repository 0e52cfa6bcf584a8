"""The neural probabilistic language model of Bengio et al. (section 3.2, eq. 3.2-3.5).

  ./launch.sh nplm

Four previous words (n = 5), embeddings of 60, a tanh hidden layer of 100, full softmax over the
vocabulary of Moby Dick (words seen >= 3 times), Adam, 3 epochs; documents split 90/5/5 into
train / validation / test. Expected: held-out test perplexity well below the add-one unigram's
and below the interpolated bigram's: measured 326.7 against 669 (unigram) and 378 (bigram,
lambda 0.5 chosen on validation), 29 s of training on 2 AMD EPYC cores.
"""

from experiments.configs import word2vec_skipgram


def get_config():
  config = word2vec_skipgram.word2vec_config()
  config.experiment = "nplm"
  config.model = "nplm"
  config.loss = "softmax"
  config.corpus = ("moby_dick",)
  config.min_count = 3
  config.dim = 60
  config.hidden = 100
  config.context_size = 4
  config.epochs = 3
  config.batch_size = 256
  config.steps_per_call = 50
  config.learning_rate = 2e-3
  config.min_learning_rate = 1e-4
  config.log_every_steps = 200
  config.checkpoint_every_steps = 1000
  return config
