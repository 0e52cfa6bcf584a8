"""Vanishing and exploding gradients (section 2.5.3 and its footnote 8; initialization, 2.5.5).

  python -m experiments.studies.gradients [--workdir=runs/study_gradients] [--quick]

"The composition of layers results in a product of derivatives": the gradient that reaches layer l
has passed through one factor W^T diag(phi'(z)) per layer above it. This study measures, at
initialization and on a real MNIST training batch, the Frobenius norm ||dL/dW_l|| of the mean
cross-entropy (eq. 2.62-2.63) with respect to every weight matrix of a deep MLP
(`dl_jax.models.mlp.MLP`, by default 784-12x256-10: 13 weight matrices), for the sigmoid, tanh and
ReLU (eq. 2.64), each with four initializations of the kernels (biases start at 0):

  * N(0, 0.01^2) and N(0, 1): naive scales, one far too small, one far too large for fan-in 256;
  * the matched one: Glorot normal (variance 2 / (fan_in + fan_out)) for the sigmoid and tanh,
    He normal (variance 2 / fan_in) for ReLU (the notes' references 13 and 14);
  * the matched one followed by batch normalization before every hidden activation (reference 12),
    with the batch statistics of training mode.

Each setting is averaged over `--seeds` initializations (geometric mean; the plot shades the
range). Writes `gradient_norms.png` (norm against depth, log scale, one panel per activation),
`table.md` (first-layer and last-layer norms and their ratio) and `results.json`, in under a
minute on a CPU (mostly compilation).

What it shows (default sizes): with N(0, 0.01^2) the sigmoid's gradient shrinks by about 25x per
layer towards the input (its derivative is at most 1/4), so the first layer's is ~1e-16 times the
output layer's; tanh and ReLU are nearly linear at that scale, so their gradients are uniformly
tiny instead (~1e-9, ~1e-11). N(0, 1) saturates tanh and its gradient grows about 3x per layer
towards the input (~5e5 times the output layer's at the first); with ReLU every layer's gradient is
~1e13 (forward signal and backward gradient both grow by sqrt(256 / 2) per layer, and the two
factors of dL/dW_l = h_{l-1} delta_l^T balance); the saturated sigmoid happens to stay balanced.
Glorot keeps tanh flat but not the sigmoid (~1e-7 at the first layer: Glorot does not undo the
factor 1/4), He keeps ReLU flat, and batch normalization keeps all three within about an order of
magnitude.
"""

import functools
import pathlib

import jax
import jax.numpy as jnp
import matplotlib
import numpy as np
from absl import app, flags, logging

from dl_jax.data.images import mnist, pipeline
from dl_jax.errors import require
from dl_jax.models.mlp import MLP
from dl_jax.nn import activations
from dl_jax.tasks.image_classification import cross_entropy
from experiments.studies import common

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

MATCHED = {"sigmoid": "glorot_normal", "tanh": "glorot_normal", "relu": "he_normal"}
# name -> (label, std of the naive normal draw or None for the matched initializer, batch norm)
SETTINGS = {
    "normal_0.01": ("N(0, 0.01²)", 0.01, False),
    "normal_1": ("N(0, 1)", 1.0, False),
    "matched": ("matched: {init}", None, False),
    "matched_bn": ("matched + batch norm", None, True),
}
INIT_LABEL = {"glorot_normal": "Glorot normal", "he_normal": "He normal"}

flags.DEFINE_string("workdir", "", "Output directory (default runs/study_gradients, or "
                    "runs/study_gradients_quick with --quick).")
flags.DEFINE_bool("quick", False, "Short version (CI): sizes not given as flags are: 2 seeds, "
                  "batch 128.")
flags.DEFINE_list("activations", list(MATCHED), "Hidden activations (each has a matched init).")
flags.DEFINE_integer("depth", 12, "Number of hidden layers.")
flags.DEFINE_integer("width", 256, "Width of every hidden layer.")
flags.DEFINE_integer("batch_size", 512, "Size of the MNIST training batch the gradients are taken "
                     "on.")
flags.DEFINE_integer("seeds", 5, "Initializations averaged per setting.")
flags.DEFINE_integer("seed", 0, "Seed of the initializations and of the batch.")
flags.DEFINE_string("compilation_cache", common.COMPILATION_CACHE,
                    "Persistent XLA compilation cache directory ('' disables it).")
FLAGS = flags.FLAGS

QUICK = {"seeds": 2, "batch_size": 128}


def redraw_kernels(params, key: jax.Array, std: float):
  """Every "kernel" leaf of `params` replaced by a fresh N(0, std^2) draw; the rest unchanged."""
  leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
  keys = jax.random.split(key, len(leaves))
  new = [std * jax.random.normal(k, leaf.shape, leaf.dtype)
         if getattr(path[-1], "key", None) == "kernel" else leaf
         for k, (path, leaf) in zip(keys, leaves)]
  return jax.tree_util.tree_unflatten(treedef, new)


@functools.partial(jax.jit, static_argnames="model")
def layer_gradient_norms(model: MLP, keys: jax.Array, images: jax.Array, labels: jax.Array,
                         std: jax.Array) -> dict:
  """Per seed (a row of `keys`): the loss and ||dL/dW_l|| for l = 1..depth + 1, at initialization.

  std > 0 redraws every kernel from N(0, std^2); std = 0 keeps `model.kernel_init` (std is traced,
  so both share one compilation). Batch norm, if any, normalizes with the statistics of this batch
  (training mode), as in a training step.
  """
  num_layers = len(model.hidden) + 1

  def one(key):
    variables = model.init(key, images[:1], train=False)
    redrawn = redraw_kernels(variables["params"], jax.random.fold_in(key, 1), std)
    params = jax.tree.map(lambda a, b: jnp.where(std > 0, a, b), redrawn, variables["params"])

    def loss_fn(p):
      logits, _ = model.apply({**variables, "params": p}, images, train=True,
                              mutable=["batch_stats"])
      return cross_entropy(logits, labels).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    norms = jnp.stack([jnp.linalg.norm(grads[f"Dense_{i}"]["kernel"]) for i in range(num_layers)])
    return {"loss": loss, "norms": norms}

  return jax.vmap(one)(keys)


def geometric_mean(x: np.ndarray, axis: int = 0) -> np.ndarray:
  return np.exp(np.mean(np.log(x), axis=axis))


def plot(rows: list[dict], names: list[str], depth: int, path: pathlib.Path, title: str) -> None:
  styles = {"normal_0.01": ("tab:blue", "v"), "normal_1": ("tab:red", "^"),
            "matched": ("tab:green", "o"), "matched_bn": ("tab:purple", "s")}
  fig, axes = plt.subplots(1, len(names), figsize=(5.6 * len(names), 5.6), squeeze=False,
                           layout="constrained")
  layers = np.arange(1, depth + 2)
  for ax, name in zip(axes[0], names):
    for r in (r for r in rows if r["activation"] == name):
      color, marker = styles[r["setting"]]
      ax.plot(layers, r["norms"], color=color, marker=marker, ms=4, lw=1.6,
              label=f"{r['label']}  (ratio {r['ratio']:.1e})")
      if len(r["norms_per_seed"]) > 1:
        ax.fill_between(layers, np.min(r["norms_per_seed"], 0), np.max(r["norms_per_seed"], 0),
                        color=color, alpha=0.2, lw=0)
    ax.set_yscale("log")
    ax.set_xticks(layers, [str(i) for i in layers[:-1]] + ["out"])
    ax.set(title=name, xlabel="layer l (input side -> output side)")
    ax.grid(alpha=0.3, which="major")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=2,
              title="initialization (ratio = layer 1 / out)", title_fontsize=8)
  axes[0][0].set_ylabel(r"$\|\partial L / \partial W_l\|$ at initialization")
  fig.suptitle(title)
  fig.savefig(path, dpi=110)
  plt.close(fig)


def run(out: pathlib.Path, names: list[str], depth: int, width: int, batch_size: int, seeds: int,
        seed: int) -> dict:
  """Measures every (activation, initialization) setting and writes the outputs."""
  for name in names:
    activations.get(name)  # a bad name fails before any work
    require(name in MATCHED, f"--activations: {name!r} has no matched initializer; "
                   f"accepted: {', '.join(MATCHED)}")
  for key, value in (("depth", depth), ("width", width), ("batch_size", batch_size),
                     ("seeds", seeds)):
    require(value > 0, f"--{key}={value} must be a positive integer")
  timer = common.Timer()
  out.mkdir(parents=True, exist_ok=True)
  train, _, _ = pipeline.train_val_test(mnist.load("mnist"), 5000, 0)
  batch = next(pipeline.train_batches(train, batch_size, seed, 0))
  keys = jax.random.split(jax.random.PRNGKey(seed), seeds)
  rows = []
  for name in names:
    for setting, (label, std, batch_norm) in SETTINGS.items():
      model = MLP(hidden=(width,) * depth, activation=name, kernel_init=MATCHED[name],
                  batch_norm=batch_norm)
      got = jax.device_get(layer_gradient_norms(model, keys, batch["image"], batch["label"],
                                                jnp.float32(std or 0.0)))
      per_seed = np.asarray(got["norms"], np.float64)
      norms = geometric_mean(per_seed)
      ratios = per_seed[:, 0] / per_seed[:, -1]
      rows.append({
          "activation": name, "setting": setting,
          "label": label.format(init=INIT_LABEL[MATCHED[name]]),
          "kernel_init": MATCHED[name] if std is None else f"normal(std={std:g})",
          "batch_norm": batch_norm, "loss": float(np.mean(got["loss"])),
          "norms": norms.tolist(), "norms_per_seed": per_seed.tolist(),
          "first": float(norms[0]), "last": float(norms[-1]),
          "ratio": float(geometric_mean(ratios)),
          "ratio_range": [float(ratios.min()), float(ratios.max())],
          "max_over_min": float(norms.max() / norms.min())})
      logging.info("%-8s %-22s loss %.3g  ||dW_1|| %.2e  ||dW_out|| %.2e  ratio %.2e", name,
                   rows[-1]["label"], rows[-1]["loss"], norms[0], norms[-1], rows[-1]["ratio"])

  arch = f"784-{depth}x{width}-10"
  setup = (f"MLP {arch}, one MNIST training batch of {batch_size}, mean over {seeds} "
           f"initialization(s)")
  plot(rows, names, depth, out / "gradient_norms.png",
       f"Gradient norm per layer at initialization ({setup})")
  table = common.markdown_table(
      ["activation", "initialization", "loss at init", "‖∂L/∂W_1‖", "‖∂L/∂W_out‖",
       "ratio first / last", "max / min over layers"],
      [[f"`{r['activation']}`", r["label"], f"{r['loss']:.3g}", f"{r['first']:.2e}",
        f"{r['last']:.2e}", f"{r['ratio']:.2e}", f"{r['max_over_min']:.2e}"] for r in rows],
      caption=f"Frobenius norms of the gradient of the mean cross-entropy with respect to the "
              f"first and the output weight matrix, at initialization ({setup}, geometric means).")
  results = {
      "experiment": "study_gradients", "model": f"mnist_mlp {arch}", "dataset": "mnist",
      "seed": seed, "train_time_s": timer(), **common.environment(),
      "config": {"activations": names, "depth": depth, "width": width, "batch_size": batch_size,
                 "seeds": seeds, "seed": seed},
      "rows": rows,
  }
  common.write_outputs(out, results, table)
  return results


def main(argv):
  def study(size):
    run(common.workdir(FLAGS, "gradients"), FLAGS.activations, FLAGS.depth, FLAGS.width,
        size["batch_size"], size["seeds"], FLAGS.seed)
  common.run_main(argv, QUICK, study)


if __name__ == "__main__":
  app.run(main)
