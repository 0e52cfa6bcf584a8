"""Regularization against overfitting (sections 2.5.3-2.5.4, figure 2.23) on a small MNIST subset.

  python -m experiments.studies.regularization [--workdir=runs/study_regularization] [--quick]

With only `--train_subset` training images (1000 by default) an MLP learns them by heart: the
training accuracy reaches 100 % while the test accuracy stays far below, the train/test gap of
overfitting. The same MLP (784-256-256-10, ReLU) is trained by the same optimizer (Adam, constant
learning rate) for the same epochs from the same seed with one regularizer at a time:

  * none;
  * an L2 penalty weight_l2 * sum w^2 on the kernels (ridge, "weight decay");
  * an L1 penalty weight_l1 * sum |w| on the kernels (LASSO, sparse weights);
  * dropout on the hidden activations (figure 2.23, Srivastava et al. 2014), training only;
  * batch normalization before every hidden activation (Ioffe & Szegedy 2015).

Each training is `dl_jax.engine.run` in its own directory under
`<workdir>/runs/` (finished runs are read back, interrupted ones resume). The training accuracy is
measured afterwards, on the whole training subset, in evaluation mode (no dropout, batch norm's
running statistics), from the run's final checkpoint, with the size of its weights. Writes
`regularization.png` (train and test accuracy and the weights per setting; validation accuracy and
loss per epoch), `table.md` and `results.json`, in about two minutes on a CPU.

What it shows (default sizes): every setting learns the 1000 images by heart (training accuracy
99.9-100 %) while the test accuracy stays near 90 %, a gap of about 10 points. The penalties do
what they say to the weights (L2 shrinks their norm from 25 to 10.5, L1 leaves 79 % of them below
1e-3) and lower the test cross-entropy (0.36 against 0.48: without them the validation loss rises
from epoch ~20 on, the overfitting of the curves), but move the test accuracy by 0.3 points at
most, as does dropout; batch normalization helps most (91.2 %, gap 8.8 points). On so small a
training set none of them closes the gap.
"""

import pathlib

import jax
import matplotlib
import numpy as np
from absl import app, flags, logging

from dl_jax.data.images import mnist, pipeline
from dl_jax.errors import ConfigError, DlJaxError
from dl_jax.models import registry
from dl_jax.nn import regularizers
from dl_jax import engine
from dl_jax import optim as optimizers
from dl_jax.engine import workdir as checkpoint
from dl_jax.tasks.image_classification import create_train_state, eval_step
from experiments.studies import common

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

ALL = ("none", "l2", "l1", "dropout", "batch_norm")
COLORS = {"none": "tab:gray", "l2": "tab:blue", "l1": "tab:cyan", "dropout": "tab:orange",
          "batch_norm": "tab:purple"}

flags.DEFINE_string("workdir", "", "Output directory (default runs/study_regularization, or "
                    "runs/study_regularization_quick with --quick).")
flags.DEFINE_bool("quick", False, "Short version (CI): sizes not given as flags are: 500 "
                  "training images, 15 epochs.")
flags.DEFINE_list("settings", list(ALL), f"Regularizers to compare, among {', '.join(ALL)}.")
flags.DEFINE_integer("train_subset", 1000, "Training images (the rest of the 55k are unused).")
flags.DEFINE_list("hidden", ["256", "256"], "Widths of the hidden layers.")
flags.DEFINE_integer("epochs", 100, "Epochs of every training.")
flags.DEFINE_integer("batch_size", 100, "Batch size of every training.")
flags.DEFINE_string("optimizer", "adam", "Optimizer of every training (section 2.6).")
flags.DEFINE_float("learning_rate", 1e-3, "Constant learning rate of every training.")
flags.DEFINE_float("weight_l2", 1e-3, "Coefficient of the L2 penalty (setting l2).")
flags.DEFINE_float("weight_l1", 1e-4, "Coefficient of the L1 penalty (setting l1).")
flags.DEFINE_float("dropout_rate", 0.5, "Dropout rate on the hidden activations (setting dropout).")
flags.DEFINE_integer("seed", 0, "Seed of the initialization and data order (same for all).")
flags.DEFINE_string("compilation_cache", common.COMPILATION_CACHE,
                    "Persistent XLA compilation cache directory ('' disables it).")
FLAGS = flags.FLAGS

QUICK = {"train_subset": 500, "epochs": 15}


def config_for(setting: str, hidden: list[int], train_subset: int, epochs: int, batch_size: int,
               optimizer: str, learning_rate: float, weight_l2: float, weight_l1: float,
               dropout_rate: float, seed: int):
  """The shared configuration with one regularizer switched on."""
  return common.study_config(
      experiment=f"regularization_{setting}", train_subset=train_subset, seed=seed,
      batch_size=batch_size, num_epochs=epochs, optimizer=optimizer, learning_rate=learning_rate,
      log_every_steps=10, weight_l2=weight_l2 if setting == "l2" else 0.0,
      weight_l1=weight_l1 if setting == "l1" else 0.0,
      model_kwargs={"hidden": list(hidden),
                    "dropout_rate": dropout_rate if setting == "dropout" else 0.0,
                    "batch_norm": setting == "batch_norm"})


def describe(setting: str, config) -> str:
  return {"none": "none", "l2": f"L2, λ = {config.weight_l2:g}",
          "l1": f"L1, λ = {config.weight_l1:g}",
          "dropout": f"dropout {config.model_kwargs.dropout_rate:g}",
          "batch_norm": "batch norm"}[setting]


def final_model(config, run_dir: pathlib.Path) -> dict:
  """The run's final checkpoint: its loss and accuracy on its training subset, in evaluation mode,
  the L2 norm of its kernels (sqrt of sum w^2) and the fraction of kernel weights below 1e-3."""
  model = registry.build(config.model, **config.model_kwargs.to_dict())
  tx = optimizers.make_optimizer(config.optimizer, config.learning_rate, config.lr_schedule)
  state = create_train_state(model, tx, jax.random.PRNGKey(config.seed),
                             registry.get(config.model).input_shape)
  ckpt = checkpoint.Checkpointer(run_dir.resolve(), config.keep_checkpoints)
  try:
    restored = ckpt.restore(ckpt.latest_step(), {"state": state,
                                                 "step": np.zeros((), np.int64),
                                                 "train_time_s": np.zeros((), np.float64)})
  finally:
    ckpt.close()
  state = restored["state"]
  train, _, _ = pipeline.train_val_test(mnist.load(config.dataset, config.data_dir or None),
                                        config.val_size, config.split_seed, config.train_subset)
  fn = jax.jit(eval_step)
  sums = {"loss": 0.0, "correct": 0.0, "count": 0.0}
  for batch in pipeline.eval_batches(train, config.eval_batch_size):
    out = jax.device_get(fn(state, batch))
    for k in sums:
      sums[k] += float(out[k])
  leaves = jax.tree_util.tree_flatten_with_path(jax.device_get(state.params))[0]
  kernels = np.concatenate([np.ravel(w) for path, w in leaves
                            if getattr(path[-1], "key", None) == "kernel"])
  return {"loss": sums["loss"] / sums["count"], "accuracy": sums["correct"] / sums["count"],
          "weight_norm": float(np.sqrt(regularizers.l2_penalty(state.params))),
          "small_weights": float(np.mean(np.abs(kernels) < 1e-3))}


def plot(rows: list[dict], path: pathlib.Path, title: str) -> None:
  """2 x 2 panels: train and test accuracy, the weights, validation accuracy and loss per epoch."""
  fig, axes = plt.subplots(2, 2, figsize=(15, 10), layout="constrained")
  x = np.arange(len(rows))
  labels = [r["label"] for r in rows]
  colors = [COLORS[r["setting"]] for r in rows]

  ax = axes[0, 0]
  train = np.array([100 * r["train_accuracy"] for r in rows])
  test = np.array([100 * r["test_accuracy"] for r in rows])
  b1 = ax.bar(x - 0.2, train, 0.4, color=colors, alpha=0.45, edgecolor=colors, hatch="//",
              label="train (evaluation mode)")
  b2 = ax.bar(x + 0.2, test, 0.4, color=colors, edgecolor="k", lw=0.6, label="test")
  ax.bar_label(b1, labels=[f"{a:.1f}" for a in train], fontsize=8, padding=2)
  ax.bar_label(b2, labels=[f"{a:.1f}" for a in test], fontsize=8, padding=2)
  for i, r in enumerate(rows):
    ax.annotate(f"gap {100 * r['gap']:.1f}", (x[i], 2 + max(train[i], test[i])), ha="center",
                fontsize=8, fontweight="bold")
  low = max(0.0, 10 * np.floor((test.min() - 8) / 10))
  ax.set_xticks(x, labels, rotation=12)
  ax.set(ylim=(low, 106), ylabel="accuracy (%)",
         title="Train vs test accuracy after training" + (f" (axis from {low:.0f} %)" if low
                                                          else ""))
  ax.legend(fontsize=8, loc="lower right")
  ax.grid(axis="y", alpha=0.3)

  ax = axes[0, 1]
  bars = ax.bar(x, [r["weight_norm"] for r in rows], 0.6, color=colors, edgecolor="k", lw=0.6)
  ax.bar_label(bars, labels=[f"‖W‖ {r['weight_norm']:.1f}\n{100 * r['small_weights']:.0f} % "
                             "below 1e-3" for r in rows], fontsize=8, padding=2)
  ax.set_xticks(x, labels, rotation=12)
  ax.set(ylabel="‖W‖ = sqrt(sum of squared kernel weights)",
         ylim=(0, 1.25 * max(r["weight_norm"] for r in rows)),
         title="The weights after training: L2 shrinks them, L1 sends most to ~0")
  ax.grid(axis="y", alpha=0.3)

  for r in rows:
    epochs = [e for e, _, _ in r["val_curve"]]
    axes[1, 0].plot(epochs, [100 * a for _, a, _ in r["val_curve"]], color=COLORS[r["setting"]],
                    label=r["label"])
    axes[1, 1].plot(epochs, [l for _, _, l in r["val_curve"]], color=COLORS[r["setting"]],
                    label=r["label"])
  settled = [100 * a for r in rows for e, a, _ in r["val_curve"] if e >= 0.1 * epochs[-1]]
  axes[1, 0].set(xlabel="epoch", ylabel="validation accuracy (%)",
                 ylim=(np.floor(min(settled)) - 2, np.ceil(max(settled)) + 1),
                 title="Validation accuracy (5000 held-out training images)")
  axes[1, 1].set(xlabel="epoch", ylabel="validation cross-entropy", yscale="log",
                 title="Validation loss: rises when the model overfits")
  for ax in axes[1]:
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.suptitle(title)
  fig.savefig(path, dpi=110)
  plt.close(fig)


def run(out: pathlib.Path, settings: list[str], hidden: list[int], train_subset: int, epochs: int,
        batch_size: int, optimizer: str, learning_rate: float, weight_l2: float, weight_l1: float,
        dropout_rate: float, seed: int) -> dict:
  """Trains one MLP per setting (or reads back finished runs); writes the outputs."""
  for setting in settings:  # every bad value fails before the first training
    if setting not in ALL:
      raise ConfigError(f"unknown setting {setting!r}; accepted: {', '.join(ALL)}")
  if not 0 <= dropout_rate < 1:
    raise ConfigError(f"--dropout_rate={dropout_rate} must be in [0, 1)")
  configs = {s: config_for(s, hidden, train_subset, epochs, batch_size, optimizer, learning_rate,
                           weight_l2, weight_l1, dropout_rate, seed) for s in settings}
  for config in configs.values():
    engine.validate(config)
  timer = common.Timer()
  out.mkdir(parents=True, exist_ok=True)
  rows = []
  for setting in settings:
    config, run_dir = configs[setting], out / "runs" / setting
    results = common.train_once(config, run_dir)
    if "diverged" in results:
      raise DlJaxError(f"the {setting} training diverged: {results['diverged']}")
    train = final_model(config, run_dir)
    steps_per_epoch = results["steps"] / results["epochs"]
    rows.append({
        "setting": setting, "label": describe(setting, config),
        "train_accuracy": train["accuracy"], "train_loss": train["loss"],
        "test_accuracy": results["test_accuracy"], "test_loss": results["test_loss"],
        "gap": train["accuracy"] - results["test_accuracy"],
        "weight_norm": train["weight_norm"], "small_weights": train["small_weights"],
        "val_accuracy": results["val_accuracy"], "val_loss": results["val_loss"],
        "best_val_accuracy": max(r["accuracy"] for r in common.read_metrics(run_dir, "val")),
        "train_time_s": results["train_time_s"], "param_count": results["param_count"],
        "val_curve": [(r["step"] / steps_per_epoch, r["accuracy"], r["loss"])
                      for r in common.read_metrics(run_dir, "val")],
        "workdir": str(run_dir)})
    logging.info("%s: train %.2f%%  test %.2f%%  gap %.2f", setting,
                 100 * rows[-1]["train_accuracy"], 100 * rows[-1]["test_accuracy"],
                 100 * rows[-1]["gap"])

  arch = "-".join(map(str, [784, *hidden, 10]))
  setup = (f"MLP {arch} ReLU, {train_subset} MNIST training images, {optimizer} lr "
           f"{learning_rate:g}, batch {batch_size}, {epochs} epochs, seed {seed}")
  plot(rows, out / "regularization.png", f"Regularization on a small training set ({setup})")
  table = common.markdown_table(
      ["regularizer", "train accuracy", "test accuracy", "gap (train - test)", "train loss",
       "test loss", "best val accuracy", "‖W‖ (kernels)", "weights below 1e-3", "train time"],
      [[r["label"], common.percent(r["train_accuracy"]), common.percent(r["test_accuracy"]),
        f"{100 * r['gap']:.2f} pts", f"{r['train_loss']:.4f}", f"{r['test_loss']:.4f}",
        common.percent(r["best_val_accuracy"]), f"{r['weight_norm']:.1f}",
        common.percent(r["small_weights"], 1), f"{r['train_time_s']:.1f} s"] for r in rows],
      caption=f"Train and test accuracy per regularizer ({setup}). Train accuracy and loss: "
              "final model in evaluation mode on the whole training subset. ‖W‖: sqrt of the "
              "sum of the squared kernel weights; weights below 1e-3: the fraction of kernel "
              "weights of absolute value below 1e-3.")
  best = max(rows, key=lambda r: r["test_accuracy"])
  results = {
      # The fields experiments/report.py tabulates: the best setting's run.
      "experiment": "study_regularization", "model": f"mnist_mlp {arch}, best: {best['label']}",
      "dataset": f"mnist ({train_subset} training images)", "test_accuracy": best["test_accuracy"],
      "epochs": epochs, "param_count": best["param_count"],
      "train_time_s": sum(r["train_time_s"] for r in rows), "train_examples_per_s": None,
      "seed": seed, "wall_time_s": timer(), **common.environment(),
      "config": {"settings": settings, "hidden": hidden, "train_subset": train_subset,
                 "epochs": epochs, "batch_size": batch_size, "optimizer": optimizer,
                 "learning_rate": learning_rate, "weight_l2": weight_l2, "weight_l1": weight_l1,
                 "dropout_rate": dropout_rate},
      "runs": rows,
  }
  common.write_outputs(out, results, table)
  return results


def main(argv):
  def study(size):
    run(common.workdir(FLAGS, "regularization"), FLAGS.settings,
        common.int_list("hidden", FLAGS.hidden), size["train_subset"], size["epochs"],
        FLAGS.batch_size, FLAGS.optimizer, FLAGS.learning_rate, FLAGS.weight_l2, FLAGS.weight_l1,
        FLAGS.dropout_rate, FLAGS.seed)
  common.run_main(argv, QUICK, study)


if __name__ == "__main__":
  app.run(main)
