"""Style transfer of Gatys et al. (2015), section 5.3.5: the chelsea photo in the style of the
brick texture (both from scikit-image), 128x128, L-BFGS on the pixels, features of a
random-weight VGG-style network.

  ./launch.sh style_transfer

Other pairs, features and optimizers by flags:

  --config.content=astronaut|chelsea|coffee|rocket
  --config.style=brick|grass|gravel|hubble_deep_field|immunohistochemistry|colorwheel|retina
  --config.features=trained         the same network first trained on Fashion-MNIST
  --config.optimizer=adam --config.learning_rate=0.02 --config.num_steps=300
  --config.init=noise               start from uniform noise instead of the photo

The result (`stylized.png`: content, style, result; `style_losses.png`) and the initial and
final losses (`results.json`) are in the workdir; see `dl_jax/tasks/style_transfer.py`.
"""

import ml_collections


def get_config():
  config = ml_collections.ConfigDict()
  config.task = "style_transfer"
  config.experiment = "style_transfer"
  config.content = "chelsea"
  config.style = "brick"
  config.image_size = 128  # pixels of the square crops
  config.features = "random"  # or "trained"
  config.model = "style_vgg"
  config.model_kwargs = ml_collections.ConfigDict()
  config.content_layer = "conv3_2"
  config.style_layers = ("conv1_1", "conv2_1", "conv3_1", "conv4_1")
  config.content_weight = 1.0
  config.style_weight = 1e4
  config.tv_weight = 2.0
  config.optimizer = "lbfgs"  # or "adam"
  config.learning_rate = 1.0  # L-BFGS: scales the direction before the line search
  config.num_steps = 100
  config.init = "content"  # or "noise"
  # Trained features: the network as a classifier, Adam 1e-3, before the style transfer.
  config.feature_dataset = "fashion_mnist"
  config.feature_steps = 300
  config.feature_batch_size = 64
  config.data_dir = ""  # '' -> $DL_JAX_DATA_DIR or ~/.cache/dl_jax (Fashion-MNIST)
  config.seed = 0
  config.max_steps = 0
  config.log_every_steps = 10
  config.checkpoint_every_steps = 50
  config.keep_checkpoints = 3
  return config
