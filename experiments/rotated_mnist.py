"""Rotated MNIST: a symmetry built into the model versus learned from augmented data (ch. 4).

  python -m experiments.rotated_mnist [--workdir=runs/rotated_mnist] [--quick] [--seed=0]

Training digits are upright; every test digit is rotated by a random multiple of 90 degrees
(drawn once from a fixed seed). Three models, each trained on the first n digits of a fixed
permutation of the MNIST training set, for several n:

- `cnn`: the section 5.3.1 CNN (`mnist_cnn`) on the upright digits. It never saw a rotated
  digit, so it only gets the quarter of the test set that is upright (plus digits like 0, 1, 8
  that look alike rotated).
- `cnn_augmented`: the same CNN, each training batch rotated by random multiples of 90 degrees
  (`dl_jax.data.images.augment`, the note of section 5.3.1): it has to learn the symmetry from data.
- `p4cnn`: the p4 group CNN (`dl_jax.models.p4cnn.P4CNN`) on the upright digits: invariant to
  rotations by 90 degrees by construction (section 4.4), so its accuracy on the rotated test
  set equals that on the upright one.

A 6 rotated by 180 degrees looks much like a 9: a rotation-invariant classifier can tell them
apart by handwriting details only (the table reports the share of errors that confuse them).

Writes `accuracy_vs_size.png`, `table.md` and `results.json` to the workdir. Adam, learning
rate 1e-3 with cosine decay, batch 64, the step counts in STEPS; --quick trains tiny versions
(for CI). Expected with the defaults (seed 0, 2 shared CPU cores, about 4.5 minutes), rotated
test accuracy at n = 1000 / 5000 / 20000: CNN 35.0 / 36.5 / 38.2 %, CNN + rotation
augmentation 79.1 / 85.5 / 89.8 %, p4 CNN 88.8 / 93.6 / 96.0 % (equal to its upright accuracy).
"""

import functools
import json
import os
import pathlib
import platform
import sys
import time

import flax
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
from absl import app, flags, logging

from dl_jax.data.images import augment as augment_lib
from dl_jax.data.images import mnist, pipeline
from dl_jax.errors import ConfigError, DlJaxError
from dl_jax.models import registry
from dl_jax.tasks.image_classification import create_train_state, param_count, train_step

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top


def define_flags():
  """Defined only when run as a script, so that tests can import the module."""
  flags.DEFINE_string("workdir", "runs/rotated_mnist",
                      "Where the plot, table.md and results.json go.")
  flags.DEFINE_bool("quick", False, "Tiny sizes and step counts, for CI.")
  flags.DEFINE_integer("seed", 0,
                       "Seed of the subsets, initializations, augmentation and test rotations.")
  flags.DEFINE_list("sizes", None, "Training-set sizes (default 1000,5000,20000; quick: 300).")
  flags.DEFINE_string("compilation_cache", os.path.expanduser("~/.cache/dl_jax/jax_cache"),
                      "Persistent XLA compilation cache ('' to turn it off).")


FLAGS = flags.FLAGS

MODELS = {  # name -> (registered model, augmentation)
    "cnn": ("mnist_cnn", None),
    "cnn_augmented": ("mnist_cnn", augment_lib.AugmentConfig(rot90=True, fill=-1.0)),
    "p4cnn": ("p4cnn", None),
}
LABELS = {"cnn": "CNN (5.3.1)", "cnn_augmented": "CNN + rot90 augmentation",
          "p4cnn": "p4 CNN (invariant)"}
SIZES = (1000, 5000, 20000)
STEPS = {1000: 300, 5000: 500, 20000: 800}  # ~19, 6.4 and 2.6 epochs at batch 64
BATCH_SIZE = 64
LEARNING_RATE = 1e-3
QUICK = {"sizes": (300,), "steps": 30, "test_size": 1000}
EVAL_BATCH = 500


def steps_for(size: int) -> int:
  """Gradient steps for a training set of `size` (interpolated in log-size outside STEPS)."""
  if size in STEPS:
    return STEPS[size]
  keys = sorted(STEPS)
  return int(np.interp(np.log(size), np.log(keys), [STEPS[k] for k in keys]))


def rotate_test_set(images: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Rotates each NHWC image by k * 90 degrees, k uniform in {0..3} from `seed`.

  Returns (rotated images, k).
  """
  k = np.random.default_rng([seed, 90]).integers(0, 4, len(images))
  rotated = np.stack([np.rot90(x, r, axes=(0, 1)) for x, r in zip(images, k)])
  return np.ascontiguousarray(rotated), k


# One optimizer object for every run, its learning rate an input of the step (cosine decay
# computed outside), so each model's step compiles once for all training-set sizes.
TX = optax.inject_hyperparams(optax.adam)(learning_rate=LEARNING_RATE)


def cosine_lr(step: int, steps: int) -> float:
  return 0.5 * LEARNING_RATE * (1 + np.cos(np.pi * step / steps))


@functools.partial(jax.jit, static_argnames="config")
def _step(state, batch, key, learning_rate, config):
  """`train_step` at `learning_rate`, on the batch augmented by `config` (None: as is)."""
  opt_state = state.opt_state._replace(
      hyperparams={**state.opt_state.hyperparams, "learning_rate": learning_rate})
  if config is not None:
    batch = {**batch, "image": augment_lib.augment(key, batch["image"], config)}
  return train_step(state.replace(opt_state=opt_state), batch)


def train(model, config, images: np.ndarray, labels: np.ndarray, steps: int, seed: int):
  """`steps` Adam steps with cosine decay on (images, labels), from explicit keys.

  Returns (state, last logged training loss).
  """
  init_key, aug_key = jax.random.split(jax.random.PRNGKey(seed))
  state = create_train_state(model, TX, init_key, images.shape[1:])
  steps_per_epoch = len(images) // BATCH_SIZE
  loss = None
  for step in range(steps):
    epoch, index = divmod(step, steps_per_epoch)
    order = pipeline.epoch_order(seed, epoch, len(images))
    ids = order[index * BATCH_SIZE:(index + 1) * BATCH_SIZE]
    batch = {"image": images[ids], "label": labels[ids]}
    state, metrics = _step(state, batch, jax.random.fold_in(aug_key, step),
                           np.float32(cosine_lr(step, steps)), config)
    if step % 100 == 0 or step == steps - 1:
      loss = float(metrics["loss"])
      if not np.isfinite(loss):
        raise DlJaxError(f"the training loss is {loss} at step {step}")
  return state, loss


def predictions(predict, params, images: np.ndarray) -> np.ndarray:
  """`predict(params, x)` over `images` in fixed-size batches (the last one padded)."""
  out = []
  for start in range(0, len(images), EVAL_BATCH):
    x = images[start:start + EVAL_BATCH]
    n = len(x)
    if n < EVAL_BATCH:
      x = np.concatenate([x, np.zeros((EVAL_BATCH - n, *x.shape[1:]), x.dtype)])
    out.append(np.asarray(predict(params, x))[:n])
  return np.concatenate(out)


def scores(predicted: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
  """(accuracy, share of the errors that are a 6 taken for a 9 or a 9 for a 6)."""
  wrong = predicted != labels
  six_nine = wrong & (((labels == 6) & (predicted == 9)) | ((labels == 9) & (predicted == 6)))
  return float(1 - wrong.mean()), float(six_nine.sum() / max(1, wrong.sum()))


def plot(results: dict, sizes, path: pathlib.Path) -> None:
  fig, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
  for name, label in LABELS.items():
    rotated = [100 * results[name][str(n)]["rotated_test_accuracy"] for n in sizes]
    ax.plot(sizes, rotated, "o-", lw=2, label=f"{label}, rotated test")
    upright = [100 * results[name][str(n)]["upright_test_accuracy"] for n in sizes]
    ax.plot(sizes, upright, "x:", color=ax.lines[-1].get_color(), alpha=0.6,
            label=f"{label}, upright test")
  ax.set(xscale="log", xlabel="training digits (upright)", ylabel="test accuracy (%)",
         title="MNIST, test digits rotated by random multiples of 90 degrees")
  ax.set_xticks(sizes, [str(n) for n in sizes])
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  fig.savefig(path, dpi=100)
  plt.close(fig)


def table(results: dict, sizes) -> str:
  lines = ["| model | parameters | " + " | ".join(f"n = {n}" for n in sizes) + " |",
           "|---|---|" + "---|" * len(sizes)]
  for name, label in LABELS.items():
    cells = [f"{100 * results[name][str(n)]['rotated_test_accuracy']:.2f} % "
             f"({100 * results[name][str(n)]['upright_test_accuracy']:.2f} %)" for n in sizes]
    lines.append(f"| {label} | {results[name]['param_count']:,} | " + " | ".join(cells) + " |")
  largest = str(sizes[-1])
  shares = ", ".join(
      f"{label} {100 * results[name][largest]['rotated_six_nine_share_of_errors']:.0f} %"
      for name, label in LABELS.items())
  return ("Test accuracy on digits rotated by random multiples of 90 degrees (in parentheses: "
          "the same digits upright); training digits upright.\n\n" + "\n".join(lines) + "\n\n"
          f"Share of the rotated-test errors that confuse 6 and 9 (n = {largest}): {shares}.\n")


def run(workdir: str, quick: bool = False, seed: int = 0, sizes=None) -> dict:
  """Trains every model at every size, writes the plot, table.md and results.json."""
  sizes = sizes or (QUICK["sizes"] if quick else SIZES)
  try:
    sizes = tuple(int(n) for n in sizes)
  except ValueError as e:
    raise ConfigError(f"sizes={list(sizes)}: not integers; accepted: sizes 1..60000") from e
  raw = mnist.load("mnist")
  if not sizes or not all(0 < n <= len(raw["train_labels"]) for n in sizes):
    raise ConfigError(f"sizes={list(sizes)}; accepted: 1..{len(raw['train_labels'])}")
  run_dir = pathlib.Path(workdir)
  run_dir.mkdir(parents=True, exist_ok=True)
  start = time.time()
  order = np.random.default_rng(seed).permutation(len(raw["train_labels"]))
  train_images = pipeline.normalize(raw["train_images"][order])
  train_labels = raw["train_labels"][order].astype(np.int32)
  test_images = pipeline.normalize(raw["test_images"])
  test_labels = raw["test_labels"].astype(np.int32)
  if quick:
    test_images, test_labels = test_images[:QUICK["test_size"]], test_labels[:QUICK["test_size"]]
  rotated_images, rotations = rotate_test_set(test_images, seed)

  results = {}
  for name, (model_name, config) in MODELS.items():
    model = registry.build(model_name)
    predict = jax.jit(lambda params, x, model=model: jnp.argmax(
        model.apply({"params": params}, x, train=False), -1))
    results[name] = {"model": model_name, "augmentation": None if config is None else
                     {"rot90": config.rot90, "fill": config.fill}}
    for n in sizes:
      steps = QUICK["steps"] if quick else steps_for(n)
      t = time.time()
      state, loss = train(model, config, train_images[:n], train_labels[:n], steps, seed)
      train_time = time.time() - t
      results[name]["param_count"] = param_count(state.params)
      rotated, six_nine = scores(predictions(predict, state.params, rotated_images), test_labels)
      upright, _ = scores(predictions(predict, state.params, test_images), test_labels)
      results[name][str(n)] = {
          "steps": steps, "epochs": steps * BATCH_SIZE / n, "final_train_loss": loss,
          "train_time_s": train_time, "rotated_test_accuracy": rotated,
          "upright_test_accuracy": upright, "rotated_six_nine_share_of_errors": six_nine,
      }
      logging.info("%s, n=%d: rotated %.4f, upright %.4f (%d steps, %.0f s)", name, n,
                   results[name][str(n)]["rotated_test_accuracy"],
                   results[name][str(n)]["upright_test_accuracy"], steps, train_time)
  total_time = time.time() - start

  plot(results, sizes, run_dir / "accuracy_vs_size.png")
  (run_dir / "table.md").write_text(table(results, sizes))
  largest = str(sizes[-1])
  summary = {
      # The keys experiments/report.py tabulates: the p4 CNN at the largest size.
      "experiment": "rotated_mnist", "model": "p4cnn", "dataset": "mnist (test rotated by k*90)",
      "test_accuracy": results["p4cnn"][largest]["rotated_test_accuracy"], "test_loss": None,
      "steps": results["p4cnn"][largest]["steps"], "epochs": results["p4cnn"][largest]["epochs"],
      "param_count": results["p4cnn"]["param_count"],
      "train_time_s": total_time, "train_examples_per_s": None, "seed": seed, "quick": quick,
      "sizes": list(sizes), "batch_size": BATCH_SIZE, "test_size": len(test_labels),
      "test_rotation_counts": np.bincount(rotations, minlength=4).tolist(),
      "platform": jax.default_backend(), "device_kind": jax.devices()[0].device_kind,
      "num_devices": 1,
      "versions": {"python": platform.python_version(), "jax": jax.__version__,
                   "flax": flax.__version__, "optax": optax.__version__},
      "results": results,
  }
  (run_dir / "results.json").write_text(json.dumps(summary, indent=2))
  logging.info("wrote %s in %.0f s", run_dir, total_time)
  return summary


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  if FLAGS.compilation_cache:
    jax.config.update("jax_compilation_cache_dir", FLAGS.compilation_cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
  try:
    run(FLAGS.workdir, FLAGS.quick, FLAGS.seed, FLAGS.sizes)
  except DlJaxError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  define_flags()
  app.run(main)
