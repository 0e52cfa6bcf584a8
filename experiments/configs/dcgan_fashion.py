"""DCGAN (Radford et al. 2016) on Fashion-MNIST, measured by the Frechet distance on the features
of dl_jax's own `mnist_cnn` trained by the task on Fashion-MNIST (see `dl_jax/tasks/gan.py`);
the recipe of `dcgan_mnist`.

  ./launch.sh dcgan_fashion                   # the CPU default (2 cores: about 9 minutes)
  ./launch.sh dcgan_fashion --config.model_kwargs.features='(64,128)' --config.batch_size=128 \\
      --config.num_steps=9375 --config.eval_every_steps=1000      # the full size: 20 epochs
"""

from experiments.configs import dcgan_mnist


def get_config():
  return dcgan_mnist.dcgan_config("dcgan_fashion", "fashion_mnist")
