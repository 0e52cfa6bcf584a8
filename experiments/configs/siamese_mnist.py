"""The siamese network of eq. 5.30-5.32 on MNIST: the conv-4 embedding trained with the
contrastive loss on the pairs of each batch (all ten digits), the threshold tau chosen on
validation pairs, verification accuracy on 10,000 test pairs (half of them same-digit).

  ./launch.sh siamese_mnist

Anchor: the Keras siamese example reaches 95.8 % pair accuracy on MNIST.
"""

from experiments.configs import base


def get_config():
  config = base.metric_config("siamese_mnist", "contrastive")
  config.held_out_classes = ()
  config.classes_per_batch = 10
  config.examples_per_class = 10
  return config
