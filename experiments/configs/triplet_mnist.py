"""The triplet network of eq. 5.33-5.37 on MNIST digits 0-4, evaluated on the digits 5-9 it never
saw (kNN accuracy, recall@k, 5-way 1- and 5-shot episodes), with online triplet mining inside
each 5 x 20 batch (eq. 5.38-5.40):

  ./launch.sh triplet_mnist                                 # semi-hard triplets (eq. 5.40)
  ./launch.sh triplet_mnist --config.mining=hard            # or all, easy, batch_hard
  ./launch.sh triplet_mnist --config.mining=batch_hard --config.triplet_distance=euclidean
  ./launch.sh triplet_mnist --config.loss=classifier        # the plain-classifier baseline
"""

from experiments.configs import base


def get_config():
  return base.metric_config("triplet_mnist", "triplet")
