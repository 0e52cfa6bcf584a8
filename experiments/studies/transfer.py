"""Transfer learning (section 5.4): reuse the convolutional part of a trained CNN.

  python -m experiments.studies.transfer [--workdir=runs/study_transfer] [--quick]

The CNN of section 5.3.1 has the two parts of section 5.2.6: convolutions (Conv_0..Conv_2,
the features) and an MLP on top (Dense_0, Dense_1). A source run trains it on dataset D_1; a
target run on D_2 starts from the source's variables (`init_from`), initializes the MLP afresh
(`reinit_layers`) and then either

  * frozen: trains the new MLP only (`freeze_layers=('transferred',)`: the optimizer's updates of
    the convolutions are exactly zero, and `lax.stop_gradient` stops backpropagation at them);
  * fine-tuned: trains everything;
  * scratch: the same network and schedule from a random initialization (no transfer).

Two protocols:

  1. The classic Keras example: MNIST digits 0-4 -> digits 5-9 (anchors: 99.8 % on 0-4, 99.2 %
     on 5-9 with frozen convolutions).
  2. Across datasets, MNIST -> Fashion-MNIST and Fashion-MNIST -> MNIST, with 1 %, 10 % and
     100 % of the target's training labels; mean and std over `--seeds` target runs.

Every target run takes `--target_steps` steps (the epochs follow from the subset size), so a
small subset is seen many times, as one would train on it. Then the step times: the jitted
training step of the network fine-tuned, with the convolutions frozen (stop-gradient and the
optimizer mask), frozen by the optimizer mask alone, and with the MLP frozen instead.

Each training is `dl_jax.engine.run` in its own directory under `<workdir>/runs/`: finished runs
are read back, interrupted ones resume. Writes `table.md` and `results.json`.
"""

import functools
import pathlib
import statistics
import time

import jax
import numpy as np
from absl import app, flags

from dl_jax import optim
from dl_jax.data.images import mnist, pipeline
from dl_jax.models import registry
from dl_jax.tasks import image_classification as ic
from experiments.studies import common

METHODS = ("frozen", "fine_tuned", "scratch")
FEATURES = ("Conv_0", "Conv_1", "Conv_2")
HEAD = ("Dense_0", "Dense_1")
DATASET_NAMES = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}

flags.DEFINE_string("workdir", "", "Output directory (default runs/study_transfer, or "
                    "runs/study_transfer_quick with --quick).")
flags.DEFINE_bool("quick", False, "Short version (CI): sizes not given as flags are: sources 1 "
                  "epoch on 3000 images, 40 target steps, 1 seed, 1 % of the target labels, 5 "
                  "timed steps.")
flags.DEFINE_integer("source_epochs", 5, "Epochs of each source training.")
flags.DEFINE_integer("source_subset", 0, "Training images of each source run (0: all).")
flags.DEFINE_integer("target_steps", 1000, "Steps of each target training.")
flags.DEFINE_integer("seeds", 3, "Target runs per setting (seeds 0, 1, ...).")
flags.DEFINE_list("fractions", ["0.01", "0.1", "1"], "Fractions of the target's training labels.")
flags.DEFINE_integer("timed_steps", 50, "Steps timed per variant of the step-time comparison.")
flags.DEFINE_string("compilation_cache", common.COMPILATION_CACHE, "Persistent XLA cache ('' off).")

QUICK = {"source_epochs": 1, "source_subset": 3000, "target_steps": 40, "seeds": 1,
         "fractions": ["0.01"], "timed_steps": 5}
VAL_SIZE = 1000


def run_config(dataset: str, seed: int, num_epochs: int, classes=(), **overrides):
  return common.study_config(model="mnist_cnn", dataset=dataset, seed=seed,
                             num_epochs=num_epochs, val_size=VAL_SIZE, lr_schedule="cosine",
                             classes=tuple(classes), log_every_steps=100, **overrides)


def epochs_for(steps: int, examples: int, batch_size: int = 128) -> int:
  return max(1, round(steps / max(examples // batch_size, 1)))


def target_run(out: pathlib.Path, name: str, method: str, source_dir: pathlib.Path,
               dataset: str, seed: int, subset: int, examples: int, target_steps: int,
               classes=()) -> dict:
  transfer = {} if method == "scratch" else {"init_from": str(source_dir),
                                             "reinit_layers": HEAD}
  if method == "frozen":
    transfer["freeze_layers"] = ("transferred",)
  config = run_config(dataset, seed, epochs_for(target_steps, examples), classes,
                      train_subset=subset, **transfer)
  return common.train_once(config, out / "runs" / name)


def summarize(results: list[dict]) -> dict:
  accuracies = [r["test_accuracy"] for r in results]
  return {"mean": statistics.fmean(accuracies),
          "std": statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0,
          "runs": len(accuracies),
          "examples_per_s": statistics.fmean(r["train_examples_per_s"] or 0 for r in results)}


def cell(summary: dict) -> str:
  return (f"{100 * summary['mean']:.2f} ± {100 * summary['std']:.2f} %" if summary["runs"] > 1
          else common.percent(summary["mean"]))


def step_times(timed_steps: int) -> dict:
  """Milliseconds per jitted training step (batch 128, Adam) of the CNN, by what is trained."""
  model = registry.build("mnist_cnn")
  raw = mnist.load("mnist")
  train, _, _ = pipeline.train_val_test(raw, 0)
  batch = next(pipeline.train_batches(train, 128, 0, 0))
  variants = {  # name -> (layers given no gradient, layers the optimizer leaves alone)
      "fine-tuned (all layers trained)": ((), ()),
      "convolutions frozen (stop-gradient + optimizer mask)": (FEATURES, FEATURES),
      "convolutions frozen by the optimizer mask only": ((), FEATURES),
      "MLP frozen, convolutions trained": (HEAD, HEAD),
  }
  out = {}
  for name, (no_grad, masked) in variants.items():
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0), batch["image"][:1])["params"]
    tx = ic.freeze_optimizer(optim.make_optimizer("adam", 1e-3), params, masked)
    state = ic.create_train_state(model, tx, jax.random.PRNGKey(0), (28, 28, 1))
    step = jax.jit(functools.partial(ic.train_step, frozen=no_grad))
    for _ in range(3):  # compile and warm up
      state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(timed_steps):
      start = time.perf_counter()
      state, metrics = step(state, batch)
      jax.block_until_ready(metrics)
      times.append(1e3 * (time.perf_counter() - start))
    out[name] = statistics.median(times)
  return out


def study(sizes: dict) -> None:
  out = common.workdir(flags.FLAGS, "transfer")
  fractions = [float(f) for f in sizes["fractions"]]
  if not fractions or not all(0 < f <= 1 for f in fractions):
    raise common.ConfigError(f"--fractions={','.join(sizes['fractions'])} must be numbers in "
                             "(0, 1]")
  seeds = range(sizes["seeds"])
  results = {"keras": {}, "cross": {}, "sizes": sizes}
  rows_keras, rows_cross = [], []

  # 1. Digits 0-4 -> 5-9.
  source_dir = out / "runs" / "source_mnist_0-4"
  source = common.train_once(run_config("mnist", 0, sizes["source_epochs"], range(5),
                                        train_subset=sizes["source_subset"]), source_dir)
  results["keras"]["source_0-4"] = source["test_accuracy"]
  labels = mnist.load("mnist")["train_labels"]
  examples = int(np.isin(labels, range(5, 10)).sum()) - VAL_SIZE  # after the validation split
  for method in METHODS:
    runs = [target_run(out, f"mnist_5-9_{method}_s{seed}", method, source_dir, "mnist", seed, 0,
                       examples, sizes["target_steps"], range(5, 10)) for seed in seeds]
    results["keras"][method] = summarize(runs)
    rows_keras.append([method, cell(results["keras"][method]),
                       f"{results['keras'][method]['examples_per_s']:,.0f}"])

  # 2. Across datasets.
  for source_name, target_name in (("mnist", "fashion_mnist"), ("fashion_mnist", "mnist")):
    source_dir = out / "runs" / f"source_{source_name}"
    source = common.train_once(run_config(source_name, 0, sizes["source_epochs"],
                                          train_subset=sizes["source_subset"]), source_dir)
    pair = f"{source_name}->{target_name}"
    results["cross"][pair] = {"source_test_accuracy": source["test_accuracy"]}
    pool = 60000 - VAL_SIZE
    for fraction in fractions:
      subset = 0 if fraction == 1 else round(fraction * pool)
      row = [f"{DATASET_NAMES[source_name]} -> {DATASET_NAMES[target_name]}",
             f"{100 * fraction:g} % ({subset or pool:,})"]
      for method in METHODS:
        runs = [target_run(out, f"{pair}_{fraction:g}_{method}_s{seed}", method, source_dir,
                           target_name, seed, subset, subset or pool, sizes["target_steps"])
                for seed in seeds]
        results["cross"][pair][f"{fraction:g}_{method}"] = summarize(runs)
        row.append(cell(results["cross"][pair][f"{fraction:g}_{method}"]))
      rows_cross.append(row)

  # 3. Step times.
  results["step_ms"] = step_times(sizes["timed_steps"])
  results.update(common.environment())

  table = common.markdown_table(
      ["target 5-9", "test accuracy", "examples/s"], rows_keras,
      f"MNIST 0-4 -> 5-9 (source: {common.percent(results['keras']['source_0-4'])} on 0-4; "
      f"{sizes['target_steps']} target steps, {len(seeds)} seed(s))")
  table += "\n" + common.markdown_table(
      ["transfer", "target labels", *METHODS], rows_cross,
      f"Across datasets, test accuracy on the target ({sizes['target_steps']} steps, "
      f"{len(seeds)} seed(s))")
  table += "\n" + common.markdown_table(
      ["training step (batch 128, Adam)", "ms"],
      [[k, f"{v:.2f}"] for k, v in results["step_ms"].items()], "Step time")
  common.write_outputs(out, results, table)


def main(argv):
  common.run_main(argv, QUICK, study)


if __name__ == "__main__":
  app.run(main)
