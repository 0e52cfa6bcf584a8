"""Double descent: test error against width (section 2.5.3, "Depth and Width", figure 2.22).

  python -m experiments.studies.double_descent [--workdir=runs/study_double_descent] [--quick]

Belkin, Hsu, Ma and Mandal (PNAS 2019; the notes' reference 9) observe that past the
"interpolation threshold", where a model has just enough parameters to fit its n training examples
exactly (about n * K parameters for K outputs fitted by the squared loss), the test error of an
interpolating model falls again as the model grows: a second descent after the classical U-shaped
curve, with a peak at the threshold. This study looks for it on real data:

  * `--train_subset` MNIST training images (2000), a fraction `--label_noise` of them (20 %) given
    a uniformly drawn wrong label (seeded) so that interpolating them has a cost;
  * one-hidden-layer MLPs (`dl_jax.models.mlp.MLP`, 784-H-10) of widths H from well below to well
    above the threshold, where (784 + 1) H + (H + 1) 10 = n * 10;
  * trained without any regularization towards zero training error: the squared loss
    sum_k (f_k(x) - e_{y,k})^2 on one-hot targets (as Belkin et al.), Adam with a constant learning
    rate, `--epochs` epochs of `--batch_size` batches, from `--seeds` initializations (vmapped);
    the whole training of one width is one jitted `jax.lax.scan`. The hidden activation is tanh:
    with ReLU and the squared loss the narrowest networks lose their units (dying ReLU, section
    2.5.3) and stay near chance;
  * and, as the reference case of Belkin et al.'s figure 2, the same network with its hidden layer
    frozen at initialization (random features): only the output layer is fitted, by the
    minimum-norm least-squares solution (the limit of gradient descent from zero), whose threshold
    is H + 1 = n features.

Writes `double_descent.png` (error and loss against width, log x, with the threshold and the first
interpolating width marked; the test error against width at ten points of training; the random
features), `table.md` and `results.json`. The error is the classification error (argmax of the
outputs); the training error is measured against the noisy labels the models were fitted to.

What it shows (default sizes, one seed, about 9 minutes on two busy CPU cores): the trained MLPs
descend twice. The test error falls to 28.1 % at H = 12, rises to 33.2 % at H = 48 (P = 1.9 n K),
between the threshold P = n K (H ~ 25) and the first width that fits every training label
(H = 96), and falls again to 20.8 % at H = 512. The peak is mild next to the random features',
whose least-squares fit peaks sharply at H + 1 = n (87 % test error, test squared loss ~1e3,
against 17.7 % at H = 300 and 36.8 % at H = 6000). It needs training to interpolation: after 100
of the 1000 epochs the test error falls with width without a peak (to 14-16 % from H = 32 on,
better than any fully trained width), and the peak forms as the networks fit the wrong labels.
"""

import functools
import pathlib

import jax
import jax.numpy as jnp
import matplotlib
import matplotlib.ticker
import numpy as np
import optax
from absl import app, flags, logging

from dl_jax.data.images import mnist, pipeline
from dl_jax.errors import require
from dl_jax.models.mlp import MLP
from dl_jax.nn import activations
from dl_jax.optim import make_optimizer
from dl_jax.tasks.image_classification import cross_entropy
from experiments.studies import common

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

NUM_CLASSES = mnist.NUM_CLASSES
INPUT_DIM = 28 * 28
LOSSES = ("mse", "cross_entropy")

flags.DEFINE_string("workdir", "", "Output directory (default runs/study_double_descent, or "
                    "runs/study_double_descent_quick with --quick).")
flags.DEFINE_bool("quick", False, "Short version (CI): sizes not given as flags are: 500 "
                  "training images; widths 2, 8, 32, 256; 200 epochs of batch 100; random features "
                  "100-2000.")
flags.DEFINE_integer("train_subset", 2000, "Training images n.")
flags.DEFINE_float("label_noise", 0.2, "Fraction of the training labels replaced by a wrong one.")
flags.DEFINE_list("widths", ["2", "4", "8", "12", "16", "20", "24", "28", "32", "40", "48", "64",
                             "96", "128", "256", "512"], "Hidden widths H of the trained MLPs.")
flags.DEFINE_list("feature_widths", ["100", "300", "1000", "1500", "1800", "1999", "2200", "3000",
                                     "6000"],
                  "Hidden widths H of the random-features models ('' skips them).")
flags.DEFINE_integer("epochs", 1000, "Epochs of every training.")
flags.DEFINE_integer("batch_size", 200, "Batch size (n for full-batch steps).")
flags.DEFINE_float("learning_rate", 1e-3, "Constant learning rate of Adam.")
flags.DEFINE_enum("loss", "mse", LOSSES, "Training loss: squared loss on one-hot targets or the "
                  "cross-entropy.")
flags.DEFINE_string("activation", "tanh", "Hidden activation (dl_jax.nn.activations).")
flags.DEFINE_integer("seeds", 1, "Initializations per width (vmapped; the curves show the mean).")
flags.DEFINE_integer("records", 10, "Times during training at which train and test are measured.")
flags.DEFINE_integer("seed", 0, "Seed of the label noise, the initializations and the data order.")
flags.DEFINE_string("compilation_cache", common.COMPILATION_CACHE,
                    "Persistent XLA compilation cache directory ('' disables it).")
FLAGS = flags.FLAGS

QUICK = {"train_subset": 500, "epochs": 200, "batch_size": 100, "widths": ["2", "8", "32", "256"],
         "feature_widths": ["100", "250", "499", "1000", "2000"]}


def param_count(width: int) -> int:
  """Parameters of the 784-H-10 MLP: (784 + 1) H + (H + 1) 10."""
  return (INPUT_DIM + 1) * width + (width + 1) * NUM_CLASSES


def threshold_width(n: int) -> float:
  """The width H at which the MLP has n * 10 parameters."""
  return (n * NUM_CLASSES - NUM_CLASSES) / (INPUT_DIM + 1 + NUM_CLASSES)


def noisy_labels(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """round(fraction * n) labels, chosen at random, replaced by a uniformly drawn other class.

  Returns the new labels and the mask of the changed ones. A pure function of (labels, seed).
  """
  rng = np.random.default_rng([seed, 2019])
  n = len(labels)
  changed = np.zeros(n, bool)
  changed[rng.choice(n, round(fraction * n), replace=False)] = True
  shift = rng.integers(1, NUM_CLASSES, n)  # 1..9: never the original class
  return np.where(changed, (labels + shift) % NUM_CLASSES, labels).astype(np.int32), changed


def loss_fn(name: str, outputs: jax.Array, labels: jax.Array) -> jax.Array:
  """Per-example loss: sum_k (f_k - e_{y,k})^2, or the cross-entropy of eq. 2.62-2.63."""
  if name == "mse":
    return jnp.sum((outputs - jax.nn.one_hot(labels, NUM_CLASSES)) ** 2, axis=-1)
  return cross_entropy(outputs, labels)


def _measure(model, params, loss: str, x, y, x_test, y_test) -> jax.Array:
  """[train error, train loss, test error, test loss]."""
  out = []
  for inputs, labels in ((x, y), (x_test, y_test)):
    outputs = model.apply({"params": params}, inputs)
    out += [jnp.mean(jnp.argmax(outputs, -1) != labels), jnp.mean(loss_fn(loss, outputs, labels))]
  return jnp.stack(out)


@functools.partial(jax.jit, static_argnames=("model", "loss", "epochs", "batch_size",
                                             "learning_rate", "records"))
def train_width(model: MLP, keys: jax.Array, x: jax.Array, y: jax.Array, x_test: jax.Array,
                y_test: jax.Array, *, loss: str, epochs: int, batch_size: int,
                learning_rate: float, records: int) -> jax.Array:
  """Trains `model` from each key (vmapped); returns [seeds, records, 4] measurements.

  Row r of each seed is [train error, train loss, test error, test loss] after
  (r + 1) * epochs / records epochs. Each epoch visits the n examples in the order
  permutation(fold_in(key, epoch)), in n // batch_size batches (the rest is dropped).
  """
  n = x.shape[0]
  steps_per_epoch = n // batch_size
  tx = make_optimizer("adam", learning_rate)

  def one(key):
    init_key, order_key = jax.random.split(key)
    params = model.init(init_key, x[:1])["params"]

    def step(carry, ids):
      params, opt_state = carry
      grads = jax.grad(lambda p: jnp.mean(loss_fn(loss, model.apply({"params": p}, x[ids]),
                                                  y[ids])))(params)
      updates, opt_state = tx.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), None

    def epoch(carry, e):
      order = jax.random.permutation(jax.random.fold_in(order_key, e), n)
      batches = order[:steps_per_epoch * batch_size].reshape(steps_per_epoch, batch_size)
      return jax.lax.scan(step, carry, batches)[0], None

    def block(carry, r):
      first = r * (epochs // records)
      carry = jax.lax.scan(epoch, carry, first + jnp.arange(epochs // records))[0]
      return carry, _measure(model, carry[0], loss, x, y, x_test, y_test)

    return jax.lax.scan(block, (params, tx.init(params)), jnp.arange(records))[1]

  return jax.vmap(one)(keys)


def min_norm_least_squares(phi: jax.Array, targets: jax.Array, rcond: float = 1e-13) -> jax.Array:
  """The minimum-norm minimizer of ||phi beta - targets||^2: pinv(phi) targets.

  Through the eigendecomposition of the smaller Gram matrix (phi phi^T or phi^T phi), whose
  eigenvalues below rcond times the largest are treated as 0. Call it in float64: at the threshold
  phi is square and nearly singular.
  """
  rows, cols = phi.shape
  if cols >= rows:  # beta = phi^T (phi phi^T)^+ targets
    eigenvalues, vectors = jnp.linalg.eigh(phi @ phi.T)
    inverse = jnp.where(eigenvalues > rcond * eigenvalues[-1], 1 / eigenvalues, 0.0)
    return phi.T @ (vectors @ (inverse[:, None] * (vectors.T @ targets)))
  eigenvalues, vectors = jnp.linalg.eigh(phi.T @ phi)  # beta = (phi^T phi)^+ phi^T targets
  inverse = jnp.where(eigenvalues > rcond * eigenvalues[-1], 1 / eigenvalues, 0.0)
  return vectors @ (inverse[:, None] * (vectors.T @ (phi.T @ targets)))


@functools.partial(jax.jit, static_argnames="model")
def _fit_random_features(model: MLP, keys: jax.Array, x: jax.Array, y: jax.Array,
                         x_test: jax.Array, y_test: jax.Array) -> jax.Array:
  def one(key):
    hidden = jax.tree.map(lambda a: a.astype(jnp.float64),
                          model.init(key, x[:1])["params"]["Dense_0"])
    act = activations.get(model.activation)

    def features(inputs):
      h = act(inputs.astype(jnp.float64) @ hidden["kernel"] + hidden["bias"])
      return jnp.concatenate([h, jnp.ones((h.shape[0], 1), h.dtype)], axis=1)

    beta = min_norm_least_squares(features(x), jax.nn.one_hot(y, NUM_CLASSES, dtype=jnp.float64))
    out = []
    for inputs, labels in ((x, y), (x_test, y_test)):
      chunks = max(1, inputs.shape[0] // 2000)  # test features 2000 rows at a time
      outputs = jnp.concatenate([features(c) @ beta for c in jnp.array_split(inputs, chunks)])
      out += [jnp.mean(jnp.argmax(outputs, -1) != labels),
              jnp.mean(loss_fn("mse", outputs, labels))]
    return jnp.stack(out)

  return jax.vmap(one)(keys)


def fit_random_features(model: MLP, keys: jax.Array, x: jax.Array, y: jax.Array,
                        x_test: jax.Array, y_test: jax.Array) -> np.ndarray:
  """Hidden layer frozen at initialization, output layer = min-norm least squares (per key).

  The limit of gradient descent from zero on the output layer alone (Belkin et al.'s random
  features), computed in float64. Returns [seeds, 4]: [train error, train squared loss, test error,
  test squared loss].
  """
  with jax.enable_x64(True):
    return np.asarray(jax.device_get(_fit_random_features(model, keys, x, y, x_test, y_test)))


def _log_width_axis(ax, ticks, label: str) -> None:
  ax.set_xscale("log")
  ax.set_xticks(ticks, [str(t) for t in ticks])
  ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
  ax.set_xlabel(label)
  ax.grid(alpha=0.3, which="both")


def plot(trained: list[dict], features: list[dict], summary: dict, n: int, noise: float,
         path: pathlib.Path, title: str) -> None:
  """2 x 2 panels: error and loss against H, test error against H during training, random
  features."""
  fig, axes = plt.subplots(2, 2, figsize=(14, 10.5), layout="constrained")
  h_star = threshold_width(n)
  widths = np.array([r["width"] for r in trained])
  ticks = [w for w in (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
           if widths.min() <= w <= widths.max()]
  interpolating = summary["first_interpolating_width"]

  def markers(ax):
    ax.axvline(h_star, color="k", ls="--", lw=1.2, label=f"P = n K = {n * NUM_CLASSES:,} "
               f"(H ≈ {h_star:.0f})")
    if interpolating:
      ax.axvline(interpolating, color="tab:green", ls=":", lw=1.5,
                 label=f"first H with train error 0 (H = {interpolating})")
    _log_width_axis(ax, ticks, "hidden width H (log scale)")
    top = ax.secondary_xaxis("top", functions=(lambda h: param_count(1) * h,
                                               lambda q: q / param_count(1)))
    top.set_xlabel("parameters P ≈ 795 H")

  def shade(ax, key, scale):
    per_seed = scale * np.array([r[key + "_per_seed"] for r in trained])
    if per_seed.shape[1] > 1:
      ax.fill_between(widths, per_seed.min(1), per_seed.max(1), alpha=0.2, lw=0,
                      color=ax.lines[-1].get_color())

  ax = axes[0, 0]
  for key, label, style in (("test_error", "test", "o-"),
                            ("train_error", "train (against the noisy labels)", "s--")):
    ax.plot(widths, [100 * r[key] for r in trained], style, ms=4, label=label)
    shade(ax, key, 100)
  ax.axhline(100 * noise, color="0.5", lw=0.8, ls="-.", label=f"label noise {100 * noise:g} %")
  peak = summary["test_error_peak"]
  if summary["peak_found"]:
    for what, offset in (("left_min", (-10, -28)), ("peak", (0, 22)), ("right_min", (-10, -28))):
      width, error = peak[f"{what}_width"], 100 * peak[what]
      ax.annotate(f"{error:.1f} %", (width, error), xytext=offset, textcoords="offset points",
                  ha="center", fontsize=8, fontweight="bold",
                  arrowprops={"arrowstyle": "->", "lw": 0.8})
  markers(ax)
  ax.set(ylabel="classification error (%)",
         title="Trained MLP 784-H-10 after training: classification error")
  ax.legend(fontsize=8)

  ax = axes[0, 1]
  for key, label, style in (("test_loss", "test", "o-"),
                            ("train_loss", "train (against the noisy labels)", "s--")):
    ax.plot(widths, [r[key] for r in trained], style, ms=4, label=label)
    shade(ax, key, 1)
  markers(ax)
  loss_name = "squared loss" if trained[0]["loss"] == "mse" else "cross-entropy"
  ax.set(ylabel=loss_name, yscale="log", title=f"Trained MLP 784-H-10 after training: {loss_name}")
  ax.legend(fontsize=8)

  ax = axes[1, 0]
  epochs = [c[0] for c in trained[0]["curve"]]
  colors = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(epochs)))
  for i, (epoch, color) in enumerate(zip(epochs, colors)):
    ax.plot(widths, [100 * r["curve"][i][3] for r in trained], "o-", ms=3, lw=1.3, color=color,
            label=f"epoch {epoch}")
  markers(ax)
  ax.set(ylabel="test classification error (%)",
         title="Test error during training: the peak grows as the noise is fitted")
  ax.legend(fontsize=7, ncols=2)

  ax = axes[1, 1]
  if features:
    f_widths = [r["width"] for r in features]
    ax.plot(f_widths, [100 * r["test_error"] for r in features], "o-", ms=4, label="test error")
    ax.plot(f_widths, [100 * r["train_error"] for r in features], "s--", ms=4,
            label="train error (noisy labels)")
    ax.axvline(n - 1, color="k", ls="--", lw=1.2, label=f"H + 1 = n = {n}")
    f_ticks = [t for t in (100, 300, 1000, 2000, 3000, 6000, 10000, 30000)
               if min(f_widths) <= t <= max(f_widths)]
    _log_width_axis(ax, f_ticks, "random features H (log scale)")
    ax.set(ylabel="classification error (%)",
           title="Random features: hidden layer frozen at init, output layer min-norm least "
                 "squares")
    loss_ax = ax.twinx()
    loss_ax.plot(f_widths, [r["test_loss"] for r in features], "^:", ms=4, color="tab:red",
                 label="test squared loss (right axis)")
    loss_ax.set_yscale("log")
    loss_ax.set_ylabel("test squared loss", color="tab:red")
    handles, labels = ax.get_legend_handles_labels()
    more_handles, more_labels = loss_ax.get_legend_handles_labels()
    ax.legend(handles + more_handles, labels + more_labels, fontsize=8, loc="upper left")
  else:
    ax.axis("off")
  fig.suptitle(title)
  fig.savefig(path, dpi=110)
  plt.close(fig)


def find_peak(widths: list[int], errors: list[float]) -> dict:
  """The most prominent interior maximum of `errors`: the width j maximizing
  errors[j] - max(min(errors[:j]), min(errors[j + 1:])), with both minima and that prominence."""
  best = None
  for j in range(1, len(errors) - 1):
    left = int(np.argmin(errors[:j]))
    right = j + 1 + int(np.argmin(errors[j + 1:]))
    prominence = errors[j] - max(errors[left], errors[right])
    if best is None or prominence > best["prominence"]:
      best = {"peak_width": widths[j], "peak": errors[j], "prominence": prominence,
              "left_min_width": widths[left], "left_min": errors[left],
              "right_min_width": widths[right], "right_min": errors[right]}
  return best or {}


def _row(width: int, got: np.ndarray, **extra) -> dict:
  """Mean over seeds of [train error, train loss, test error, test loss], and the per-seed ones."""
  names = ("train_error", "train_loss", "test_error", "test_loss")
  row = {"width": width, **extra}
  for i, name in enumerate(names):
    row[name] = float(np.mean(got[:, i]))
    row[name + "_per_seed"] = got[:, i].tolist()
  return row


def run(out: pathlib.Path, n: int, label_noise: float, widths: list[int],
        feature_widths: list[int], epochs: int, batch_size: int, learning_rate: float, loss: str,
        activation: str, seeds: int, records: int, seed: int) -> dict:
  """Trains every width (and fits every random-features model); writes the outputs."""
  activations.get(activation)
  require(0 <= label_noise < 1, f"--label_noise={label_noise} must be in [0, 1)")
  require(loss in LOSSES, f"--loss={loss!r}; accepted: {', '.join(LOSSES)}")
  for key, value in (("epochs", epochs), ("seeds", seeds), ("records", records),
                     ("batch_size", batch_size), ("train_subset", n)):
    require(value > 0, f"--{key}={value} must be a positive integer")
  require(epochs % records == 0, f"--epochs={epochs} must be a multiple of --records={records}")
  require(batch_size <= n, f"--batch_size={batch_size} exceeds --train_subset={n}")
  timer = common.Timer()
  out.mkdir(parents=True, exist_ok=True)
  train, _, test = pipeline.train_val_test(mnist.load("mnist"), 5000, 0, n)
  labels, changed = noisy_labels(train.labels, label_noise, seed)
  x = jnp.asarray(train.images.reshape(n, -1))
  y = jnp.asarray(labels)
  x_test = jnp.asarray(test.images.reshape(len(test), -1))
  y_test = jnp.asarray(test.labels)
  keys = jax.random.split(jax.random.PRNGKey(seed), seeds)

  trained = []
  for width in widths:
    t = common.Timer()
    got = np.asarray(jax.device_get(train_width(
        MLP(hidden=(width,), activation=activation), keys, x, y, x_test, y_test, loss=loss,
        epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, records=records)),
        np.float64)  # [seeds, records, 4]
    row = _row(width, got[:, -1], params=param_count(width), loss=loss, seconds=t())
    row["curve"] = [[(r + 1) * epochs // records, *np.mean(got[:, r], 0).tolist()]
                    for r in range(records)]
    trained.append(row)
    logging.info("H=%4d P=%7d  train error %.4f  test error %.4f  train loss %.4f  test loss "
                 "%.4f  (%.1f s)", width, row["params"], row["train_error"], row["test_error"],
                 row["train_loss"], row["test_loss"], row["seconds"])
  features = []
  for width in feature_widths:
    t = common.Timer()
    got = fit_random_features(MLP(hidden=(width,), activation=activation), keys, x, y, x_test,
                              y_test)
    features.append(_row(width, got, trained_params=(width + 1) * NUM_CLASSES, seconds=t()))
    logging.info("random features H=%5d  train error %.4f  test error %.4f  test loss %.4f "
                 "(%.1f s)", width, features[-1]["train_error"], features[-1]["test_error"],
                 features[-1]["test_loss"], features[-1]["seconds"])

  h_star = threshold_width(n)
  interpolating = [r["width"] for r in trained if r["train_error"] == 0.0]
  summary = {
      "threshold_width": h_star,
      "first_interpolating_width": interpolating[0] if interpolating else None,
      "test_error_peak": find_peak([r["width"] for r in trained],
                                   [r["test_error"] for r in trained]),
      "test_loss_peak": find_peak([r["width"] for r in trained],
                                  [r["test_loss"] for r in trained]),
  }
  # A double descent: the test error rises by more than 1 point (the standard error of an error
  # rate on 10^4 test images is below 0.5 points) to a peak and falls again on both sides.
  summary["peak_found"] = summary["test_error_peak"].get("prominence", 0.0) > 0.01
  if features:
    f_peak = find_peak([r["width"] for r in features], [r["test_error"] for r in features])
    summary["random_features_peak"] = f_peak
  logging.info("summary: %s", summary)

  setup = (f"n = {n} MNIST training images, {100 * label_noise:g} % wrong labels, {activation}, "
           f"{loss} loss, Adam lr {learning_rate:g}, batch {batch_size}, {epochs} epochs, "
           f"{seeds} seed(s)")
  plot(trained, features, summary, n, label_noise, out / "double_descent.png",
       f"Double descent on MNIST ({setup})")
  loss_name = "squared loss" if loss == "mse" else "cross-entropy"
  table = common.markdown_table(
      ["H", "parameters", "P / (n K)", "train error", "test error", f"train {loss_name}",
       f"test {loss_name}", "time"],
      [[r["width"], f"{r['params']:,}", f"{r['params'] / (n * NUM_CLASSES):.2f}",
        common.percent(r["train_error"]), common.percent(r["test_error"]),
        f"{r['train_loss']:.4f}", f"{r['test_loss']:.4f}", f"{r['seconds']:.1f} s"]
       for r in trained],
      caption=f"Trained one-hidden-layer MLPs ({setup}); the threshold P = n K is at H ≈ "
              f"{h_star:.1f}. Train error: against the noisy labels.")
  if features:
    table += "\n" + common.markdown_table(
        ["H", "trained parameters", "train error", "test error", "train squared loss",
         "test squared loss"],
        [[r["width"], f"{r['trained_params']:,}", common.percent(r["train_error"]),
          common.percent(r["test_error"]), f"{r['train_loss']:.4f}", f"{r['test_loss']:.4f}"]
         for r in features],
        caption=f"Random features: the same network with its hidden layer frozen at "
                f"initialization, output layer fitted by min-norm least squares (threshold H + 1 "
                f"= n = {n}).")
  best = min(trained, key=lambda r: r["test_error"])
  results = {
      # The fields experiments/report.py tabulates: the best width's model.
      "experiment": "study_double_descent", "model": f"mnist_mlp 784-{best['width']}-10",
      "dataset": f"mnist ({n} training images, {100 * label_noise:g} % label noise)",
      "test_accuracy": 1 - best["test_error"], "epochs": epochs, "param_count": best["params"],
      "train_time_s": timer(), "train_examples_per_s": None, "seed": seed,
      **common.environment(),
      "config": {"train_subset": n, "label_noise": label_noise, "noisy_labels": int(changed.sum()),
                 "widths": widths, "feature_widths": feature_widths, "epochs": epochs,
                 "batch_size": batch_size, "learning_rate": learning_rate, "loss": loss,
                 "activation": activation, "seeds": seeds, "records": records},
      "summary": summary, "trained": trained, "random_features": features,
  }
  common.write_outputs(out, results, table)
  return results


def main(argv):
  def study(size):
    feature_widths = [w for w in size["feature_widths"] if w]
    run(common.workdir(FLAGS, "double_descent"), size["train_subset"], FLAGS.label_noise,
        common.int_list("widths", size["widths"]),
        common.int_list("feature_widths", feature_widths) if feature_widths else [],
        size["epochs"], size["batch_size"], FLAGS.learning_rate, FLAGS.loss, FLAGS.activation,
        FLAGS.seeds, FLAGS.records, FLAGS.seed)
  common.run_main(argv, QUICK, study)


if __name__ == "__main__":
  app.run(main)
