"""Character-level GRU language model on Moby Dick: the recipe of `charlm_moby_lstm` with one GRU
layer of 512 units (931,790 parameters with the 78 characters).

  ./launch.sh charlm_moby_gru

2,400 steps (7.1 epochs): test 1.970 bpc, below the 1.987 of the 8-gram Kneser-Ney chosen on the
validation text (validation 1.910 against 1.921), 507 s of training (523 s wall) on 2 AMD EPYC
cores.
"""

from experiments.configs import charlm_moby_lstm


def get_config():
  return charlm_moby_lstm.charlm_config("charlm_moby_gru", "gru_lm")
