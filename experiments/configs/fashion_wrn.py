"""Wide ResNets (Zagoruyko & Komodakis 2016; the residual blocks of section 5.3.2) on
Fashion-MNIST: `wrn16_4_small` (WRN-16-4, 2.7 M parameters) by default, `wrn28_10_small`
(WRN-28-10, 36.5 M) for the anchors of the Fashion-MNIST benchmark (95.9 %; 96.3 % with random
erasing):

  ./launch.sh fashion_wrn [--config.num_epochs=N]
  ./launch.sh fashion_wrn --config.model=wrn28_10_small --config.num_epochs=30 \
      --config.augment_random_erasing=0.5 --config.model_kwargs.dtype=bfloat16   # a GPU

The default (WRN-16-4, 1 epoch: 88.27 %, 12 minutes on 2 CPU cores) is a CPU trial; WRN-28-10,
with 13 times its multiply-adds, is for a GPU. The recipe is `base.architecture_config`.
"""

from experiments.configs import base


def get_config():
  return base.architecture_config("fashion_wrn", "wrn16_4_small", num_epochs=1)
