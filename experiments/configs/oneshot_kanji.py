"""One-shot classification of handwritten kanji (section 5.5.2), as Omniglot is used: 1,623
characters rendered 20 times each from the stroke data of python3-kanjidraw, the conv-4
embedding trained with the triplet loss over all triplets of each 32 x 4 batch on 80 % of the
characters, 20-way and 5-way 1-shot and 5-shot episodes on the 20 % never seen, beside the
raw-pixel nearest neighbour.

  ./launch.sh oneshot_kanji
  ./launch.sh oneshot_kanji --config.loss=classifier        # the plain-classifier baseline

Goal: >= 95 % 20-way 1-shot (Omniglot anchors: Koch et al. 92.0 %, Prototypical Networks 96.0 %).
"""

from experiments.configs import base


def get_config():
  config = base.metric_config("oneshot_kanji", "triplet", dataset="kanji")
  config.mining = "all"
  return config
