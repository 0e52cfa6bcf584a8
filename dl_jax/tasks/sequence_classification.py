"""MNIST digits read as sequences by a recurrent classifier (family "sequence"): row by row
(28 steps of 28 pixels), pixel by pixel (784 steps of 1 pixel: "sequential MNIST") or pixel by
pixel in one fixed random order (784 steps: "permuted MNIST", the order drawn once from
`permutation_seed`, the same for every image). The benchmarks of Le et al. (2015) and Bai et al.
(2018), whose table 1 gives, at about 70k parameters: sequential MNIST LSTM 87.2 %, GRU 96.2 %;
permuted MNIST LSTM 85.7 %, GRU 87.3 %.

One step per `advance`: the mean cross-entropy of the batch, the gradient clipped to a global
norm of `clip_norm` before the optimizer (Pascanu et al. 2013: the norm of a gradient through
hundreds of steps can explode), validation every epoch, test accuracy at the end. The train
state, steps and evaluation are those of image classification.
"""


import jax
import numpy as np
import optax

from dl_jax import optim
from dl_jax.data.images import mnist, pipeline
from dl_jax.engine import checks, sharding
from dl_jax.engine.task import jit_step
from dl_jax.errors import ConfigError
from dl_jax.models import registry
from dl_jax.models.spec import count_params
from dl_jax.tasks import image_classification as classification

ORDERS = ("rows", "pixels", "permuted")
SIDE = 28


def pixel_permutation(seed: int) -> np.ndarray:
  """The fixed order of the 784 pixels of permuted MNIST."""
  return np.random.default_rng(seed).permutation(SIDE * SIDE)


def to_sequences(images: np.ndarray, order: str, permutation: np.ndarray | None = None
                 ) -> np.ndarray:
  """Images [N, 28, 28, 1] -> sequences [N, T, F]: "rows" [N, 28, 28] (step t = row t),
  "pixels" [N, 784, 1] (raster order), "permuted" [N, 784, 1] (pixel `permutation[t]` at t)."""
  n = len(images)
  if order == "rows":
    return images.reshape(n, SIDE, SIDE)
  pixels = images.reshape(n, SIDE * SIDE, 1)
  if order == "permuted":
    return pixels[:, permutation]
  if order == "pixels":
    return pixels
  raise ValueError(f"order={order!r}; accepted: {', '.join(ORDERS)}")


def make_optimizer(config, schedule_steps: int) -> optax.GradientTransformation:
  """The optimizer of `config`, after clipping the gradient to a global norm of `clip_norm`
  (0: no clipping)."""
  tx = optim.make_optimizer(config.optimizer, config.learning_rate, config.lr_schedule,
                            schedule_steps, config.warmup_steps)
  if config.clip_norm:
    tx = optax.chain(optax.clip_by_global_norm(config.clip_norm), tx)
  return tx


class SequenceClassification(classification.EpochTask):
  """`config.model` (a sequence model) on MNIST or Fashion-MNIST read in `config.order`;
  `val_size` training images held out for validation, the test set at the end."""

  CHECKS = {
      **classification.EpochTask.CHECKS,
      "dataset": checks.one_of(*mnist.NAMES),
      "order": checks.one_of(*ORDERS),
      "permutation_seed": checks.seed,
      "clip_norm": checks.nonnegative_number,
  }

  @classmethod
  def validate(cls, config):
    registry.get(config.model, family="sequence")
    kwargs = config.model_kwargs.to_dict()
    if kwargs.get("num_classes", mnist.NUM_CLASSES) != mnist.NUM_CLASSES:
      raise ConfigError(f"model_kwargs.num_classes={kwargs['num_classes']} but the data has "
                        f"{mnist.NUM_CLASSES} classes")
    registry.check_output_shape(config.model, kwargs, "hidden >= 1 and num_layers >= 1")

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    self.model = registry.build(config.model, **config.model_kwargs.to_dict())
    for key in ("batch_size", "eval_batch_size"):
      sharding.check_batch_size(config[key], mesh, key)
    raw = mnist.load(config.dataset, config.data_dir or None)
    permutation = pixel_permutation(config.permutation_seed)
    self.train, self.val, self.test = (
        pipeline.Split(to_sequences(split.images, config.order, permutation), split.labels)
        for split in classification.image_splits(raw, config))
    self.steps_per_epoch, self.schedule_steps = classification.epoch_schedule(len(self.train),
                                                                              config)
    self.tx = make_optimizer(config, self.schedule_steps)
    self._train_step = jit_step(classification.train_step, donate_argnums=0)
    self._eval_step = jax.jit(classification.eval_step)
    self._batches = pipeline.StepBatches(self.train, config.batch_size, config.seed,
                                         jax.process_index(), jax.process_count())

  def _eval(self, state, split: pipeline.Split) -> dict:
    return classification.evaluate_split(state, split, self.config.eval_batch_size, self.mesh,
                                         self._eval_step)

  def evaluate(self, state, step):
    return state, {"val": self._eval(state, self.val)}

  def finish(self, state, step, out_dir):
    del out_dir
    test = self._eval(state, self.test)
    val = self._eval(state, self.val) if len(self.val) else {}
    steps, features = self.train.images.shape[1:]
    summary = {"dataset": self.config.dataset, "order": self.config.order,
               "sequence_length": steps, "input_features": features,
               "test_accuracy": test["accuracy"], "test_loss": test["loss"],
               "test_size": len(self.test), "val_accuracy": val.get("accuracy"),
               "val_loss": val.get("loss"), "param_count": count_params(state.params),
               "batch_size": self.config.batch_size, "clip_norm": self.config.clip_norm}
    return (summary, {"test": test},
            f"{self.config.order}: test loss {test['loss']:.4f}  test accuracy "
            f"{100 * test['accuracy']:.2f}%  ({count_params(state.params):,} parameters)")
