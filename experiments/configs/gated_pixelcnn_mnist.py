"""The gated PixelCNN (van den Oord et al. 2016, "Conditional Image Generation with PixelCNN
Decoders": vertical and horizontal stacks, no blind spot, tanh x sigmoid gates) on statically
binarized MNIST, the recipe of `pixelcnn_mnist`.

  ./launch.sh gated_pixelcnn_mnist  # the CPU default (2 cores: about 12 minutes)
  ./launch.sh gated_pixelcnn_mnist --config.model_kwargs.num_layers=12   # the CPU goal run
  ./launch.sh gated_pixelcnn_mnist --config.model_kwargs.features=64 \\
      --config.model_kwargs.num_layers=12 --config.model_kwargs.output_features=128 \\
      --config.num_epochs=50             # the full-size (GPU) run

Anchor: 81.30 nats for PixelCNN on binarized MNIST (van den Oord et al. 2016a); the
gated paper reports no MNIST number. Goals: <= 85 nats within a CPU budget, <= 81.3 on a GPU.

The CPU default is the model's defaults (32 maps per stack, 5 gated layers: 130,785
parameters) for 2 epochs of the 55,000 training images at batch 4 (see `pixelcnn_mnist`):
test NLL 90.55 nats after 618 s of training, 12 minutes in all.
With 12 layers (`--config.model_kwargs.num_layers=12`, 340,225 parameters): 84.10 nats after
1,672 s of training, 32 minutes in all, the CPU goal met.
The full-size run (12 layers of 64 maps, 50 epochs) has not been made: no GPU here.
"""

from experiments.configs import pixelcnn_mnist


def get_config():
  return pixelcnn_mnist.pixelcnn_config("gated_pixelcnn_mnist", "gated_pixelcnn", num_epochs=2)
