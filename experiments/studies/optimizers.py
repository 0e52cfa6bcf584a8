"""The optimizers of section 2.6 on MNIST, each at a tuned learning rate.

  python -m experiments.studies.optimizers [--workdir=runs/study_optimizers] [--quick]

SGD (eq. 2.65), momentum (eq. 2.66-2.67, gamma = 0.9), Nesterov momentum, AdaGrad, AdaDelta,
RMSProp and Adam (`dl_jax.optim`, through optax, their other hyper-parameters at
optax's defaults) train the same MLP 784-256-256-10 (ReLU) from the same initialization, on the
same batches (128 examples), at a constant learning rate. Each optimizer gets its own learning
rate: every value of its grid (log-spaced, around where that optimizer usually works) trains for
`--grid_steps` steps, the one with the best validation accuracy is chosen (ties: lower validation
loss), and that learning rate trains for `--epochs` epochs. A short budget favours large learning
rates (short-horizon bias), so the choice is the best for a quick start, not necessarily for the
long run.

Result (seed 0, CPU, ~4 min on 2 busy cores): chosen rates sgd 0.1, momentum 0.03, nesterov 0.03,
adagrad 0.03, adadelta 1, rmsprop 0.001, adam 0.001; test accuracy after 5 epochs 96.86 % (adam)
to 97.76 % (rmsprop).

Every training is `dl_jax.engine.run` in its own directory under
`<workdir>/runs/`. Writes `optimizers_study.png` (the grid, the training loss against the step on
a log scale, the validation accuracy), `table.md` and `results.json`.
"""

import math
import pathlib

import jax
import matplotlib
from absl import app, flags, logging

from dl_jax.data.images import mnist, pipeline
from dl_jax.errors import ConfigError, DlJaxError
from dl_jax.models import registry
from dl_jax import engine
from dl_jax import optim as optimizers
from dl_jax.tasks.image_classification import create_train_state, eval_step
from experiments.studies import common

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

# Log-spaced learning-rate grids, 4 values per optimizer (half-decades).
GRIDS = {
    "sgd": (0.01, 0.03, 0.1, 0.3),
    "momentum": (0.003, 0.01, 0.03, 0.1),
    "nesterov": (0.003, 0.01, 0.03, 0.1),
    "adagrad": (0.003, 0.01, 0.03, 0.1),
    "adadelta": (0.3, 1.0, 3.0, 10.0),
    "rmsprop": (0.0001, 0.0003, 0.001, 0.003),
    "adam": (0.0001, 0.0003, 0.001, 0.003),
}

flags.DEFINE_string("workdir", "", "Output directory (default runs/study_optimizers, or "
                    "runs/study_optimizers_quick with --quick).")
flags.DEFINE_bool("quick", False, "Short version (CI): sizes not given as flags are: 2 grid "
                  "points (the middle ones) of 100 steps, and the chosen one is the final run "
                  "(1 epoch capped at 100 steps).")
flags.DEFINE_list("optimizers", list(GRIDS), "Optimizers to compare.")
flags.DEFINE_integer("grid_points", 4, "Learning rates tried per optimizer: the middle ones of "
                     "its grid of 4.")
flags.DEFINE_integer("grid_steps", 400, "Training steps of each learning-rate trial.")
flags.DEFINE_integer("epochs", 5, "Epochs of the run at the chosen learning rate.")
flags.DEFINE_integer("max_steps", 0, "Cap on the steps of that run (0: none).")
flags.DEFINE_integer("batch_size", 128, "Batch size of every training.")
flags.DEFINE_integer("seed", 0, "Seed of the initialization and data order (same for all).")
flags.DEFINE_string("compilation_cache", common.COMPILATION_CACHE,
                    "Persistent XLA compilation cache directory ('' disables it).")
FLAGS = flags.FLAGS

QUICK = {"grid_points": 2, "grid_steps": 100, "epochs": 1, "max_steps": 100}


def grid(name: str, points: int) -> tuple[float, ...]:
  """The `points` middle values of the optimizer's grid."""
  values = GRIDS[name]
  start = (len(values) - points) // 2
  return values[start:start + points]


def config_for(name: str, lr: float, epochs: int, max_steps: int, batch_size: int, seed: int):
  return common.study_config(
      experiment=f"optimizers_{name}", dataset="mnist", seed=seed, batch_size=batch_size,
      num_epochs=epochs, max_steps=max_steps, optimizer=name, learning_rate=lr,
      log_every_steps=20 if not max_steps or max_steps >= 200 else 10)


def initial_train_loss(config) -> float:
  """Mean cross-entropy over the training split at the initialization every run starts from."""
  model = registry.build(config.model, **config.model_kwargs.to_dict())
  spec = registry.get(config.model)
  state = create_train_state(model, optimizers.make_optimizer("sgd", 1.0),
                             jax.random.PRNGKey(config.seed), spec.input_shape)
  train, _, _ = pipeline.train_val_test(mnist.load(config.dataset), config.val_size,
                                        config.split_seed, config.train_subset)
  fn = jax.jit(eval_step)
  total, count = 0.0, 0.0
  for batch in pipeline.eval_batches(train, config.eval_batch_size):
    out = jax.device_get(fn(state, batch))
    total, count = total + float(out["loss"]), count + float(out["count"])
  return total / count


def plot(rows: list[dict], initial_loss: float, path: pathlib.Path, title: str) -> None:
  colors = {name: plt.get_cmap("tab10")(i) for i, name in enumerate(GRIDS)}
  fig, axes = plt.subplots(1, 3, figsize=(18, 5), layout="constrained")
  # The grid panel's axis starts 10 points below the worst chosen trial; trials below it (or
  # diverged) are drawn on its floor as triangles.
  floor = max(0.0, 5 * math.floor((min(100 * r["grid_val_accuracy"] for r in rows) - 10) / 5))
  for r in rows:
    c = colors[r["optimizer"]]
    points = [(g["learning_rate"], floor if g["diverged"] else max(floor, 100 * g["val_accuracy"]))
              for g in r["grid"]]
    axes[0].plot(*zip(*points), marker="o", color=c, label=r["optimizer"])
    for g, (lr, y) in zip(r["grid"], points):
      if y == floor:
        axes[0].plot(lr, y, marker="v", color=c, ms=10, markeredgecolor="k", clip_on=False)
    axes[0].plot(r["learning_rate"], 100 * r["grid_val_accuracy"], marker="*", ms=15, color=c,
                 markeredgecolor="k")
    axes[1].plot(*zip(*r["train_curve"]), color=c, lw=1.2,
                 label=f"{r['optimizer']} (lr {r['learning_rate']:g})")
    val = r["val_curve"]
    axes[2].plot([s for s, _ in val], [100 * a for _, a in val], marker="o", ms=4, color=c,
                 label=r["optimizer"])
  axes[0].set(xscale="log", xlabel="learning rate", ylabel="validation accuracy (%)",
              ylim=(floor, 100), title=f"Learning-rate grid, {rows[0]['grid_steps']} steps each\n"
              f"(star: chosen; triangle: diverged or below {floor:g} %)")
  axes[1].axhline(initial_loss, color="0.3", ls=":", lw=1,
                  label=f"at the initialization ({initial_loss:.3f})")
  axes[1].set(xscale="log", yscale="log", xlabel="step", ylabel="training cross-entropy",
              title="Training loss at the chosen learning rate\n"
              f"(mean of each {rows[0]['log_every']}-step window, shared batches)")
  axes[2].set(xlabel="step", ylabel="validation accuracy (%)",
              title="Validation accuracy (end of each epoch and of the run)")
  for ax in axes:
    ax.grid(alpha=0.3, which="both" if ax is axes[1] else "major")
    ax.legend(fontsize=8)
  fig.suptitle(title)
  fig.savefig(path, dpi=110)
  plt.close(fig)


def run(out: pathlib.Path, names: list[str], grid_points: int, grid_steps: int, epochs: int,
        max_steps: int, batch_size: int, seed: int) -> dict:
  """Tunes and trains every optimizer (or reads back finished runs); writes the outputs."""
  for name in names:
    if name not in GRIDS:
      raise ConfigError(f"unknown optimizer {name!r}; accepted: {', '.join(GRIDS)}")
  if not 1 <= grid_points <= 4:
    raise ConfigError(f"--grid_points={grid_points} must be in 1..4")
  for key, value in (("grid_steps", grid_steps), ("epochs", epochs), ("batch_size", batch_size)):
    if value <= 0:
      raise ConfigError(f"--{key}={value} must be a positive integer")
  reference = config_for(names[0], 1e-3, epochs, max_steps, batch_size, seed)
  engine.validate(reference)
  # The trials do not depend on --epochs (the learning rate is constant): enough epochs to hold
  # grid_steps steps, then the cap.
  grid_epochs = math.ceil(grid_steps / ((60_000 - reference.val_size) // batch_size))
  out.mkdir(parents=True, exist_ok=True)
  initial_loss = initial_train_loss(reference)
  logging.info("initial training loss %.4f", initial_loss)
  rows = []
  for name in names:
    trials, grid_runs = [], {}
    for lr in grid(name, grid_points):
      grid_runs[lr] = (config_for(name, lr, grid_epochs, grid_steps, batch_size, seed),
                       out / "runs" / "grid" / f"{name}_lr{lr:g}")
      results = common.train_once(*grid_runs[lr])
      diverged = "diverged" in results
      trials.append({"learning_rate": lr, "diverged": diverged,
                     "val_accuracy": None if diverged else results["val_accuracy"],
                     "val_loss": None if diverged else results["val_loss"],
                     "train_time_s": None if diverged else results["train_time_s"]})
      logging.info("%s lr %g: %s", name, lr, "diverged" if diverged else
                   f"val accuracy {100 * results['val_accuracy']:.2f}%")
    finite = [t for t in trials if not t["diverged"]]
    if not finite:
      raise DlJaxError(f"every learning rate of {name} diverged: "
                       f"{', '.join(str(t['learning_rate']) for t in trials)}")
    best = max(finite, key=lambda t: (t["val_accuracy"], -t["val_loss"]))
    config = config_for(name, best["learning_rate"], epochs, max_steps, batch_size, seed)
    run_dir = out / "runs" / "final" / name
    grid_config, grid_dir = grid_runs[best["learning_rate"]]
    if common.as_json(config.to_dict()) == common.as_json(grid_config.to_dict()):
      run_dir = grid_dir  # the run at the chosen rate is that trial itself (same length)
    results = common.train_once(config, run_dir)
    if "diverged" in results:
      raise DlJaxError(f"{name} at lr {best['learning_rate']:g} diverged: {results['diverged']}")
    train = common.read_metrics(run_dir, "train")
    val = [(r["step"], r["accuracy"]) for r in common.read_metrics(run_dir, "val")]
    if not val or val[-1][0] != results["steps"]:
      val.append((results["steps"], results["val_accuracy"]))
    rows.append({
        "optimizer": name, "learning_rate": best["learning_rate"], "grid": trials,
        "grid_steps": grid_steps, "grid_val_accuracy": best["val_accuracy"],
        "grid_time_s": sum(t["train_time_s"] or 0.0 for t in trials),
        "val_accuracy": results["val_accuracy"], "test_accuracy": results["test_accuracy"],
        "test_loss": results["test_loss"], "initial_train_loss": initial_loss,
        "final_train_loss": train[-1]["loss"], "steps": results["steps"],
        "epochs": results["epochs"], "train_time_s": results["train_time_s"],
        "log_every": config.log_every_steps,
        "train_curve": [(r["step"], r["loss"]) for r in train], "val_curve": val,
        "workdir": str(run_dir)})
    logging.info("%s: lr %g, test accuracy %.2f%%", name, best["learning_rate"],
                 100 * results["test_accuracy"])

  setup = (f"MLP 784-256-256-10 (ReLU), MNIST, batch {batch_size}, constant learning rate, "
           f"seed {seed}")
  plot(rows, initial_loss, out / "optimizers_study.png",
       f"Optimizers of section 2.6, each at its tuned learning rate ({setup}; "
       f"{rows[0]['epochs']:.3g} epochs = {rows[0]['steps']} steps)")
  table = common.markdown_table(
      ["optimizer", f"grid: lr -> val accuracy after {grid_steps} steps", "chosen lr",
       "val accuracy", "test accuracy", "train loss (start -> end)", "train time",
       "grid time"],
      [[f"`{r['optimizer']}`",
        ", ".join(f"{t['learning_rate']:g}: " + ("diverged" if t["diverged"] else
                                                  f"{100 * t['val_accuracy']:.1f}")
                  for t in r["grid"]),
        f"{r['learning_rate']:g}", common.percent(r["val_accuracy"]),
        common.percent(r["test_accuracy"]),
        f"{r['initial_train_loss']:.3f} -> {r['final_train_loss']:.4f}",
        f"{r['train_time_s']:.1f} s", f"{r['grid_time_s']:.1f} s"] for r in rows],
      caption=f"Optimizers at their tuned learning rates: {setup}; each run {rows[0]['steps']} "
              f"steps ({rows[0]['epochs']:.2g} epochs). The final train loss is the mean over "
              f"the last {rows[0]['log_every']} steps.")
  best = max(rows, key=lambda r: r["test_accuracy"])
  results = {
      # The fields experiments/report.py tabulates: the best optimizer's run.
      "experiment": "study_optimizers",
      "model": f"mnist_mlp 784-256-256-10, best: {best['optimizer']} lr {best['learning_rate']:g}",
      "dataset": "mnist", "test_accuracy": best["test_accuracy"], "epochs": best["epochs"],
      "param_count": 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10,
      "train_time_s": sum(r["train_time_s"] + r["grid_time_s"] for r in rows),
      "train_examples_per_s": None, "seed": seed, **common.environment(),
      "config": {"optimizers": names, "grids": {n: grid(n, grid_points) for n in names},
                 "grid_steps": grid_steps, "epochs": epochs, "max_steps": max_steps,
                 "batch_size": batch_size, "lr_schedule": "constant"},
      "initial_train_loss": initial_loss, "runs": rows,
  }
  common.write_outputs(out, results, table)
  return results


def main(argv):
  def study(size):
    run(common.workdir(FLAGS, "optimizers"), FLAGS.optimizers, size["grid_points"],
        size["grid_steps"], size["epochs"], size["max_steps"], FLAGS.batch_size, FLAGS.seed)
  common.run_main(argv, QUICK, study)


if __name__ == "__main__":
  app.run(main)
