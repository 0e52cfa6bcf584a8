"""XOR, section 2.4.1 (figure 2.14b): one neuron cannot classify it, one hidden layer can.

  python -m experiments.xor [--workdir=runs/xor] [--seed=0] [--hidden=8 --activation=tanh]

Trains a single neuron (logistic regression, eq. 2.31-2.40) and a 2-H-1 MLP with the binary
cross-entropy on the four XOR points, full batch, and writes `xor_boundaries.png` (both decision
boundaries) and `results.json` to the workdir. Expected: the neuron at most 75 %, the MLP 100 %,
in a few seconds on a CPU.
"""

import functools
import json
import pathlib
import platform
import sys
import time

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
import optax
from absl import app, flags, logging

from dl_jax.errors import DlJaxError
from dl_jax.nn import activations
from dl_jax.optim import make_optimizer

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top


def define_flags():
  """Defined only when run as a script, so that tests can import the module."""
  flags.DEFINE_string("workdir", "runs/xor", "Where xor_boundaries.png and results.json go.")
  flags.DEFINE_integer("seed", 0, "Seed of the parameter initialization.")
  flags.DEFINE_integer("steps", 1000, "Full-batch training steps for each model.")
  flags.DEFINE_string("optimizer", "adam", "Optimizer of section 2.6 (dl_jax.optim).")
  flags.DEFINE_float("learning_rate", 0.1, "Learning rate of both models.")
  flags.DEFINE_integer("hidden", 8, "Width of the MLP's hidden layer.")
  flags.DEFINE_string("activation", "tanh", "Hidden activation of the MLP (dl_jax.nn.activations).")


FLAGS = flags.FLAGS

# Figure 2.14b: inputs x_0, x_1 in {0, 1}, label x_0 XOR x_1.
X = jnp.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
Y = jnp.array([0.0, 1.0, 1.0, 0.0])


class Neuron(nn.Module):
  """The logit z = w^T x + b of a single neuron; P(y = 1 | x) = sigmoid(z), eq. 2.31-2.36."""

  @nn.compact
  def __call__(self, x):
    return nn.Dense(1)(x)[..., 0]


class OneHiddenLayer(nn.Module):
  """2-H-1 MLP (figure 2.12): a hidden layer of H neurons, then one output neuron (a logit)."""
  hidden: int = 8
  activation: str = "tanh"

  @nn.compact
  def __call__(self, x):
    h = activations.get(self.activation)(nn.Dense(self.hidden)(x))
    return nn.Dense(1)(h)[..., 0]


def loss_fn(model: nn.Module, params, x, y):
  """Binary cross-entropy, eq. 2.40, from the logits."""
  return optax.sigmoid_binary_cross_entropy(model.apply({"params": params}, x), y).mean()


@functools.partial(jax.jit, static_argnames=("model", "optimizer", "learning_rate", "steps"))
def train(model: nn.Module, key: jax.Array, *, optimizer: str = "adam",
          learning_rate: float = 0.1, steps: int = 1000):
  """Initializes `model` from `key` and takes `steps` full-batch steps on the four XOR points.

  Returns (params, losses), the loss before each step. The step is a pure function of
  (params, opt_state), scanned under one jit.
  """
  params = model.init(key, X)["params"]
  tx = make_optimizer(optimizer, learning_rate)

  def step(carry, _):
    params, opt_state = carry
    loss, grads = jax.value_and_grad(functools.partial(loss_fn, model))(params, X, Y)
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  (params, _), losses = jax.lax.scan(step, (params, tx.init(params)), length=steps)
  return params, losses


def accuracy(model: nn.Module, params) -> float:
  """Fraction of the four points on the right side of the boundary sigmoid(z) = 1/2, i.e. z = 0."""
  predictions = model.apply({"params": params}, X) >= 0
  return float((predictions == (Y == 1)).mean())


def plot_boundaries(panels, path: pathlib.Path) -> None:
  """One panel per (title, model, params): P(y = 1 | x), the boundary z = 0, the points.

  The boundary is drawn from the logit z rather than from P = sigmoid(z) = 1/2: a neuron trained on
  XOR ends with |z| ~ 1e-7, where P rounds to exactly 1/2 everywhere but z still has a sign.
  """
  g = np.linspace(-0.5, 1.5, 201)
  grid = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)
  fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4.6), squeeze=False,
                           layout="constrained")
  for ax, (title, model, params) in zip(axes[0], panels):
    z = np.asarray(model.apply({"params": params}, grid), np.float64).reshape(len(g), len(g))
    filled = ax.contourf(g, g, 1 / (1 + np.exp(-z)), levels=np.linspace(0, 1, 11), cmap="RdBu_r",
                         alpha=0.8)
    if z.min() < 0 < z.max():
      ax.contour(g, g, z, levels=[0.0], colors="k", linewidths=2)
    for label, marker in ((0, "o"), (1, "s")):
      pts = np.asarray(X)[np.asarray(Y) == label]
      ax.scatter(pts[:, 0], pts[:, 1], marker=marker, s=140, c="white", edgecolors="k",
                 linewidths=2, label=f"y = {label}", zorder=3)
    ax.set(title=title, xlabel="$x_0$", ylabel="$x_1$", xlim=(-0.5, 1.5), ylim=(-0.5, 1.5),
           aspect="equal")
    ax.legend(loc="upper center", fontsize=8, ncols=2)
  fig.colorbar(filled, ax=axes[0].tolist(), label="P(y = 1 | x)")
  fig.savefig(path, dpi=100)
  plt.close(fig)


def run(workdir: str, seed: int = 0, steps: int = 1000, optimizer: str = "adam",
        learning_rate: float = 0.1, hidden: int = 8, activation: str = "tanh") -> dict:
  """Trains both models, writes the figure and results.json, returns the results."""
  activations.get(activation)  # a bad name fails before any training
  make_optimizer(optimizer, learning_rate)
  run_dir = pathlib.Path(workdir)
  run_dir.mkdir(parents=True, exist_ok=True)
  start = time.time()
  key_neuron, key_mlp = jax.random.split(jax.random.PRNGKey(seed))
  trained = {}
  for name, model, key in (("neuron", Neuron(), key_neuron),
                           ("mlp", OneHiddenLayer(hidden, activation), key_mlp)):
    params, losses = jax.device_get(train(model, key, optimizer=optimizer,
                                          learning_rate=learning_rate, steps=steps))
    trained[name] = (model, params, losses)
  train_time = time.time() - start

  summary = {}
  for name, (model, params, losses) in trained.items():
    summary[name] = {
        "accuracy": accuracy(model, params),
        "final_loss": float(loss_fn(model, params, X, Y)), "initial_loss": float(losses[0]),
        "probabilities": [float(p) for p in jax.nn.sigmoid(model.apply({"params": params}, X))],
        "param_count": sum(int(np.size(p)) for p in jax.tree.leaves(params)),
    }
    logging.info("%s: accuracy %.0f%%, loss %.4f -> %.4f", name, 100 * summary[name]["accuracy"],
                 summary[name]["initial_loss"], summary[name]["final_loss"])
  mlp_name = f"MLP 2-{hidden}-1 {activation}"
  titles = {"neuron": "single neuron", "mlp": mlp_name}
  plot_boundaries([(f"{titles[name]}: accuracy {100 * summary[name]['accuracy']:.0f} %, "
                    f"loss {summary[name]['final_loss']:.3f}", *trained[name][:2])
                   for name in trained], run_dir / "xor_boundaries.png")
  results = {
      # The keys experiments/report.py tabulates; the four points are train and test set.
      "experiment": "xor", "model": mlp_name, "dataset": "xor (4 points)",
      "test_accuracy": summary["mlp"]["accuracy"], "test_loss": summary["mlp"]["final_loss"],
      "steps": steps, "epochs": steps, "param_count": summary["mlp"]["param_count"],
      "train_time_s": train_time, "train_examples_per_s": None, "seed": seed,
      "platform": jax.default_backend(), "device_kind": jax.devices()[0].device_kind,
      "num_devices": 1,
      "versions": {"python": platform.python_version(), "jax": jax.__version__,
                   "flax": flax.__version__, "optax": optax.__version__},
      "config": {"optimizer": optimizer, "learning_rate": learning_rate, "hidden": hidden,
                 "activation": activation},
      **summary,
  }
  (run_dir / "results.json").write_text(json.dumps(results, indent=2))
  return results


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  try:
    run(FLAGS.workdir, FLAGS.seed, FLAGS.steps, FLAGS.optimizer, FLAGS.learning_rate,
        FLAGS.hidden, FLAGS.activation)
  except DlJaxError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  define_flags()
  app.run(main)
