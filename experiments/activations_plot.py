"""Figure 2.21: every activation of `dl_jax.nn.activations` and its derivative, in a grid.

  python -m experiments.activations_plot [--workdir=runs/activations]

Writes `activations.png` to the workdir. The derivatives are taken by `jax.grad` (vmapped over
the points), not written by hand.
"""

import math
import pathlib

import jax
import jax.numpy as jnp
import matplotlib
from absl import app, flags, logging

from dl_jax.nn import activations

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

flags.DEFINE_string("workdir", "runs/activations", "Where activations.png goes.")
flags.DEFINE_float("x_max", 4.0, "The plots span [-x_max, x_max].")
FLAGS = flags.FLAGS


def plot(path: pathlib.Path, x_max: float = 4.0, columns: int = 4) -> None:
  x = jnp.linspace(-x_max, x_max, 801)
  names = list(activations.ACTIVATIONS)
  rows = math.ceil(len(names) / columns)
  fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.8 * rows), squeeze=False,
                           sharex=True, layout="constrained")
  for ax, name in zip(axes.flat, names):
    fn = activations.get(name)
    ax.axhline(0, color="0.8", lw=0.8)
    ax.axvline(0, color="0.8", lw=0.8)
    ax.plot(x, fn(x), lw=2, label=r"$\phi(x)$")
    ax.plot(x, jax.vmap(jax.grad(fn))(x), lw=2, ls="--", label=r"$\phi'(x)$")
    ax.set_title(name)
    ax.set_ylim(-2.0, 3.5)
    ax.grid(alpha=0.3)
  for ax in axes.flat[len(names):]:
    ax.axis("off")
  axes.flat[0].legend(loc="upper left")
  fig.suptitle("Activation functions and their derivatives (figure 2.21)")
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments {argv[1:]}")
  workdir = pathlib.Path(FLAGS.workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  plot(workdir / "activations.png", FLAGS.x_max)
  logging.info("wrote %s", workdir / "activations.png")


if __name__ == "__main__":
  app.run(main)
