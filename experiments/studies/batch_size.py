"""Batch size (section 2.6): the minibatch gradient's noise against B, and the time to a target.

  python -m experiments.studies.batch_size [--workdir=runs/study_batch_size] [--quick]

The notes: "the smaller the batch size, the larger the amount of noise" in the update of
eq. 2.65. On MNIST with the MLP 784-256-256-10 (ReLU):

(a) Gradient noise. At a fixed parameter point theta, a minibatch B of B distinct training
examples drawn uniformly gives g_B = (1/B) sum_{i in B} grad l_i(theta), an unbiased estimate of
the full-data gradient g = (1/N) sum_i grad l_i(theta). Its mean squared error is

    E ||g_B - g||^2 = (sigma^2 / B) (N - B) / (N - 1),   sigma^2 = (1/N) sum_i ||grad l_i - g||^2,

i.e. ~ 1/B for B << N (the factor (N - B)/(N - 1) is sampling without replacement). The study
measures the left side over `--noise_batches` minibatches per B (jitted, the minibatches vmapped),
computes sigma^2 exactly over the N training examples (each Dense layer's per-example gradient is
the outer product of its input and its output gradient, so the squared distances need no
per-example gradient in memory; checked against vmapped `jax.grad` on 64 examples), and fits the
slope of log E||g_B - g||^2 against log B, at the initialization and after
`--noise_train_steps` Adam steps.

(b) Time to a target. For each B, Adam trains from the same initialization with its learning
rate scaled with the batch size by the square-root rule, lr(B) = lr_128 sqrt(B / 128) (with
`--lr_scaling=linear`: lr_128 B / 128, the rule for SGD), until the validation accuracy, measured
every ~`--eval_every` examples, reaches `--target`. It records the steps, the examples seen and
the wall seconds of training (compilation and validation excluded). Small batches need fewer
examples but many more steps, each of which uses the hardware poorly; large batches need fewer
steps until the gradient noise stops being the limit, then more examples.

These trainings use the engine's pieces (`create_train_state`, the jitted `train_step`,
`eval_step`, the seeded batch stream) in a loop that validates mid-epoch and stops at the target,
which `train_and_evaluate` does not do; each B has its own directory under `<workdir>/runs/`, and
a finished one is read back. Writes `batch_size_study.png`, `table.md` and `results.json`.

Result (seed 0, CPU, ~2.5 min on 2 busy cores): slopes -1.009 (initialization) and -1.003 (after
300 steps), every measured E||g_B - g||^2 within 4 % of sigma^2/B; 97 % is reached after 14,336
steps at B = 16 and 500 at B = 1024; the wall time (noisy on a shared machine) is lowest at
B = 128-256, 3-5 s of training, against 18-23 s at B = 16 and 9-11 s at B = 1024.
"""

import functools
import json
import math
import pathlib
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import matplotlib
import matplotlib.ticker
import numpy as np
from absl import app, flags, logging

from dl_jax.data.images import mnist, pipeline
from dl_jax.errors import ConfigError, DlJaxError
from dl_jax.models import registry
from dl_jax import optim as optimizers
from dl_jax.tasks.image_classification import create_train_state, cross_entropy, eval_step, train_step
from experiments.studies import common

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

flags.DEFINE_string("workdir", "", "Output directory (default runs/study_batch_size, or "
                    "runs/study_batch_size_quick with --quick).")
flags.DEFINE_bool("quick", False, "Short version (CI): sizes not given as flags are: batch "
                  "sizes 16,64,256,1024, 32 noise minibatches, 100 training steps before the "
                  "second noise point, target 90 %, at most 2 epochs.")
flags.DEFINE_list("batch_sizes", ["16", "32", "64", "128", "256", "512", "1024"],
                  "Batch sizes to study.")
flags.DEFINE_integer("noise_batches", 200, "Minibatches per batch size in the noise estimate.")
flags.DEFINE_integer("noise_train_steps", 300, "Adam steps (lr 1e-3, batch 128) before the "
                     "second noise point.")
flags.DEFINE_float("target", 0.97, "Target validation accuracy.")
flags.DEFINE_float("max_epochs", 10, "Give up on a target not reached after this many epochs.")
flags.DEFINE_integer("eval_every", 4096, "Examples between validations (rounded to whole steps).")
flags.DEFINE_string("optimizer", "adam", "Optimizer of the time-to-target runs.")
flags.DEFINE_float("learning_rate", 1e-3, "Learning rate at batch size 128.")
flags.DEFINE_enum("lr_scaling", "sqrt", ["sqrt", "linear"], "How the learning rate grows with B.")
flags.DEFINE_integer("seed", 0, "Seed of the initialization, data order and minibatch draws.")
flags.DEFINE_string("compilation_cache", common.COMPILATION_CACHE,
                    "Persistent XLA compilation cache directory ('' disables it).")
FLAGS = flags.FLAGS

QUICK = {"batch_sizes": ["16", "64", "256", "1024"], "noise_batches": 32,
         "noise_train_steps": 100, "target": 0.90, "max_epochs": 2.0}
MODEL = "mnist_mlp"
CHUNK = 1000  # examples per call when summing over the training set


# ---------------------------------------------------------------------------------------------
# (a) Gradient noise

def _sq_dist(a, b) -> jax.Array:
  """||a - b||^2 over two parameter pytrees."""
  return sum(jnp.sum((x - y) ** 2) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _dense_taps(apply_fn, params, images, labels, eps):
  """Runs the model with eps[path] added to the output of each Dense layer at `path`.

  Returns (sum of the per-example losses, {path: the layer's input}). The gradient of the sum
  with respect to eps[path] is, row by row, each example's gradient with respect to that layer's
  output (its delta, section 2.3).
  """
  inputs = {}

  def interceptor(next_fun, args, kwargs, context):
    if context.method_name != "__call__" or not isinstance(context.module, nn.Dense):
      return next_fun(*args, **kwargs)
    path = "/".join(context.module.path)
    inputs[path] = args[0]
    out = next_fun(*args, **kwargs)
    return out if eps is None else out + eps[path]

  with nn.intercept_methods(interceptor):
    logits = apply_fn({"params": params}, images)
  return jnp.sum(cross_entropy(logits, labels)), inputs


def noise_functions(apply_fn):
  """Jitted pieces of the noise measurement for one model (of Dense layers only)."""

  def loss_sum(params, images, labels, weights):
    return jnp.sum(cross_entropy(apply_fn({"params": params}, images), labels) * weights)

  @jax.jit
  def grad_sum(params, images, labels, mask):
    """sum_i grad l_i over the unmasked rows."""
    return jax.grad(loss_sum)(params, images, labels, mask)

  @jax.jit
  def per_example_sq_dev(params, g, images, labels):
    """||grad l_i - g||^2 for each row, without forming the per-example gradients.

    A Dense layer with input a_i and output gradient d_i has kernel gradient a_i d_i^T and bias
    gradient d_i, so with (G, g_b) its part of g: ||a_i d_i^T - G||^2 = |a_i|^2 |d_i|^2
    - 2 a_i^T G d_i + ||G||^2 and ||d_i - g_b||^2 = |d_i|^2 - 2 d_i.g_b + |g_b|^2.
    """
    shapes = jax.eval_shape(lambda: _dense_taps(apply_fn, params, images, labels, None)[1])
    # eps has the shape of each layer's output: (batch, kernel's last axis).
    eps = {path: jnp.zeros((images.shape[0], _at(params, path)["kernel"].shape[-1]))
           for path in shapes}
    (_, inputs), deltas = jax.value_and_grad(
        lambda e: _dense_taps(apply_fn, params, images, labels, e), has_aux=True)(eps)
    total = jnp.zeros(images.shape[0])
    for path, a in inputs.items():
      d, layer, g_layer = deltas[path], _at(params, path), _at(g, path)
      big_g = g_layer["kernel"]
      total += (jnp.sum(a * a, -1) * jnp.sum(d * d, -1) - 2 * jnp.einsum("ni,ij,nj->n", a, big_g, d)
                + jnp.sum(big_g * big_g))
      if "bias" in layer:
        total += jnp.sum(d * d, -1) - 2 * d @ g_layer["bias"] + jnp.sum(g_layer["bias"] ** 2)
    return total

  @jax.jit
  def per_example_sq_dev_vmap(params, g, images, labels):
    """The same, from per-example gradients (vmapped `jax.grad`): the check on a few rows."""
    def one(x, y):
      return _sq_dist(jax.grad(loss_sum)(params, x[None], y[None], jnp.ones(1)), g)
    return jax.vmap(one)(images, labels)

  @functools.partial(jax.jit, static_argnames="chunk")
  def minibatch_sq_dev(params, g, images, labels, idx, chunk):
    """||g_B - g||^2 for each row of idx [M, B] (minibatches vmapped `chunk` at a time)."""
    b = idx.shape[1]
    def one(ids):
      g_b = jax.grad(loss_sum)(params, images[ids], labels[ids], jnp.ones(b) / b)
      return _sq_dist(g_b, g)
    return jax.lax.map(one, idx, batch_size=chunk)

  return grad_sum, per_example_sq_dev, per_example_sq_dev_vmap, minibatch_sq_dev


def _at(tree: dict, path: str) -> dict:
  for key in path.split("/"):
    tree = tree[key]
  return tree


def _chunks(n: int):
  """(start, stop, mask) covering 0..n in CHUNK-sized pieces (the last one padded)."""
  for start in range(0, n, CHUNK):
    stop = min(start + CHUNK, n)
    mask = np.zeros(CHUNK, np.float32)
    mask[:stop - start] = 1.0
    yield start, stop, mask


def _padded(x: jax.Array, start: int, stop: int) -> jax.Array:
  part = x[start:stop]
  pad = CHUNK - (stop - start)
  return jnp.pad(part, [(0, pad)] + [(0, 0)] * (part.ndim - 1)) if pad else part


def measure_noise(apply_fn, params, images: jax.Array, labels: jax.Array,
                  batch_sizes: list[int], num_batches: int, rng: np.random.Generator) -> dict:
  """E||g_B - g||^2 per batch size, against the prediction (sigma^2 / B)(N - B)/(N - 1)."""
  grad_sum, per_example_sq_dev, per_example_sq_dev_vmap, minibatch_sq_dev = (
      noise_functions(apply_fn))
  dense = sum(x.size for x in jax.tree.leaves(params))
  n = len(labels)
  g = None
  for start, stop, mask in _chunks(n):
    part = grad_sum(params, _padded(images, start, stop), _padded(labels, start, stop), mask)
    g = part if g is None else jax.tree.map(jnp.add, g, part)
  g = jax.tree.map(lambda x: x / n, g)
  total = 0.0
  for start, stop, mask in _chunks(n):
    dev = per_example_sq_dev(params, g, _padded(images, start, stop), _padded(labels, start, stop))
    total += float(jnp.sum(dev * mask))
  sigma2 = total / n
  # The per-layer formula against per-example gradients, on the first 64 examples.
  fast = np.asarray(per_example_sq_dev(params, g, images[:64], labels[:64]))
  slow = np.asarray(per_example_sq_dev_vmap(params, g, images[:64], labels[:64]))
  check = float(np.max(np.abs(fast - slow) / np.maximum(np.abs(slow), 1e-12)))
  if check > 1e-3:
    raise DlJaxError(f"per-example gradient norms disagree with jax.grad (relative error "
                     f"{check:.2g}): the model has layers other than Dense ({dense:,} parameters)")
  rows = []
  for b in batch_sizes:
    idx = np.stack([rng.choice(n, b, replace=False) for _ in range(num_batches)])
    dev = np.asarray(minibatch_sq_dev(params, g, images, labels, jnp.asarray(idx),
                                      chunk=max(1, min(num_batches, 1024 // b))), np.float64)
    predicted = sigma2 / b * (n - b) / (n - 1)
    rows.append({"batch_size": b, "mean": float(dev.mean()),
                 "stderr": float(dev.std(ddof=1) / math.sqrt(len(dev))),
                 "predicted": predicted, "ratio": float(dev.mean()) / predicted})
  slope, intercept = np.polyfit(np.log([r["batch_size"] for r in rows]),
                                np.log([r["mean"] for r in rows]), 1)
  return {"full_grad_sq_norm": float(_sq_dist(g, jax.tree.map(jnp.zeros_like, g))),
          "sigma2": sigma2, "num_examples": n, "num_batches": num_batches,
          "per_example_check_rel_error": check,
          "slope": float(slope), "intercept": float(intercept), "rows": rows}


def short_training(state, train: pipeline.Split, steps: int, batch_size: int, seed: int):
  """`steps` steps of the engine's train step on the seeded batch stream."""
  fn = jax.jit(train_step, donate_argnums=0)
  stream = pipeline.train_batches(train, batch_size, seed, 0)
  for _ in range(steps):
    state, _ = fn(state, next(stream))
  return state


def measure_all_noise(train: pipeline.Split, batch_sizes: list[int], noise_batches: int,
                      noise_train_steps: int, seed: int) -> dict:
  """`measure_noise` at the initialization and after `noise_train_steps` Adam steps."""
  model = registry.build(MODEL)

  def fresh_state():
    return create_train_state(model, optimizers.make_optimizer("adam", 1e-3),
                              jax.random.PRNGKey(seed), registry.get(MODEL).input_shape)

  images, labels = jnp.asarray(train.images), jnp.asarray(train.labels)
  points = {"initialization": fresh_state().params}
  if noise_train_steps:  # the train step donates its state: train a copy
    trained = short_training(fresh_state(), train, noise_train_steps, 128, seed)
    points[f"after {noise_train_steps} Adam steps"] = trained.params
  noise = {}
  for i, (label, params) in enumerate(points.items()):
    noise[label] = measure_noise(model.apply, params, images, labels, batch_sizes, noise_batches,
                                 np.random.default_rng([seed, i]))
    logging.info("noise at %s: slope %.3f, sigma^2 %.4g, ratios %s", label,
                 noise[label]["slope"], noise[label]["sigma2"],
                 [round(r["ratio"], 3) for r in noise[label]["rows"]])
  return noise


# ---------------------------------------------------------------------------------------------
# (b) Time to a target accuracy

def accuracy(state, split: pipeline.Split, eval_fn) -> float:
  correct = count = 0.0
  for batch in pipeline.eval_batches(split, CHUNK):
    out = jax.device_get(eval_fn(state, batch))
    correct, count = correct + float(out["correct"]), count + float(out["count"])
  return correct / count


def time_to_target(config: dict, train, val, test) -> dict:
  """Trains until the validation accuracy reaches config["target"]; the timing is training only."""
  b = config["batch_size"]
  model = registry.build(MODEL)
  tx = optimizers.make_optimizer(config["optimizer"], config["learning_rate"])
  state = create_train_state(model, tx, jax.random.PRNGKey(config["seed"]),
                             registry.get(MODEL).input_shape)
  stream = pipeline.train_batches(train, b, config["seed"], 0)
  first = next(stream)
  step_fn = jax.jit(train_step, donate_argnums=0).lower(state, first).compile()
  eval_fn = jax.jit(eval_step)
  every = max(1, round(config["eval_every"] / b))
  max_steps = math.ceil(config["max_epochs"] * len(train) / b)
  step, seconds, batch = 0, 0.0, first
  curve = [(0, 0, 0.0, accuracy(state, val, eval_fn))]
  while curve[-1][3] < config["target"] and step < max_steps:
    start = time.perf_counter()
    for _ in range(min(every, max_steps - step)):
      state, _ = step_fn(state, batch)
      batch = next(stream)
      step += 1
    jax.block_until_ready(state)
    seconds += time.perf_counter() - start
    curve.append((step, step * b, seconds, accuracy(state, val, eval_fn)))
  reached = curve[-1][3] >= config["target"]
  return {"config": config, "reached": reached, "steps": step, "examples": step * b,
          "epochs": step * b / len(train), "wall_s": seconds,
          "examples_per_s": step * b / seconds if seconds else None,
          "val_accuracy": curve[-1][3], "test_accuracy": accuracy(state, test, eval_fn),
          "curve": curve}


def learning_rate(base: float, batch_size: int, scaling: str) -> float:
  ratio = batch_size / 128
  return base * (math.sqrt(ratio) if scaling == "sqrt" else ratio)


# ---------------------------------------------------------------------------------------------
# Outputs

def _batch_axis(ax, batch_sizes) -> None:
  """Log x axis labelled at the batch sizes; the log y axis keeps its minor labels."""
  ax.set_xticks(batch_sizes, [str(b) for b in batch_sizes])
  ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def plot(noise: dict, runs: list[dict], target: float, scaling: str, path: pathlib.Path,
         title: str) -> None:
  fig, axes = plt.subplots(2, 3, figsize=(18, 10), layout="constrained")
  ax = axes[0, 0]
  for (label, m), color in zip(noise.items(), ("C0", "C3")):
    bs = np.array([r["batch_size"] for r in m["rows"]])
    ax.errorbar(bs, [r["mean"] for r in m["rows"]], yerr=[2 * r["stderr"] for r in m["rows"]],
                fmt="o", color=color, capsize=3,
                label=f"{label}: measured (slope {m['slope']:.3f})")
    grid = np.geomspace(bs.min(), bs.max(), 50)
    n = m["num_examples"]
    ax.plot(grid, m["sigma2"] / grid * (n - grid) / (n - 1), "--", color=color,
            label=fr"{label}: $\frac{{\sigma^2}}{{B}}\frac{{N-B}}{{N-1}}$ ($\sigma^2$ = "
                  f"{m['sigma2']:.3g})")
  ax.set(xscale="log", yscale="log", xlabel="batch size B",
         ylabel=r"$E\,\|g_B - g\|^2$",
         title="(a) Minibatch gradient noise (error bars: 2 standard errors)")
  _batch_axis(ax, bs)
  ax.legend(fontsize=8)
  done = [r for r in runs if r["reached"]]
  bs = np.array([r["config"]["batch_size"] for r in runs])
  panels = [
      (axes[0, 1], "steps", "steps to target", "(b) Steps to the target"),
      (axes[0, 2], "examples", "examples seen to target", "(c) Examples to the target"),
      (axes[1, 0], "wall_s", "wall seconds of training to target", "(d) Time to the target"),
  ]
  for ax, key, ylabel, name in panels:
    ax.plot([r["config"]["batch_size"] for r in done], [r[key] for r in done], "o-", color="C2")
    for r in runs:
      if not r["reached"]:
        ax.plot(r["config"]["batch_size"], r[key], "x", color="C3", ms=9)
    ax.set(xscale="log", yscale="log", xlabel="batch size B", ylabel=ylabel,
           title=f"{name} ({100 * target:g} % validation accuracy)")
    _batch_axis(ax, bs)
  if done:
    ref = done[0]
    grid = np.array([r["config"]["batch_size"] for r in done])
    axes[0, 1].plot(grid, ref["steps"] * ref["config"]["batch_size"] / grid, ":", color="0.4",
                    label="perfect scaling: steps x B constant "
                    f"(from B={ref['config']['batch_size']})")
    axes[0, 1].legend(fontsize=8)
  cmap = plt.get_cmap("viridis")
  for i, r in enumerate(runs):
    color = cmap(i / max(1, len(runs) - 1))
    curve = r["curve"][1:]
    label = f"B={r['config']['batch_size']} (lr {r['config']['learning_rate']:.2g})"
    axes[1, 1].plot([c[1] for c in curve], [100 * c[3] for c in curve], color=color, label=label)
    axes[1, 2].plot([c[2] for c in curve], [100 * c[3] for c in curve], color=color, label=label)
  for ax, xlabel in ((axes[1, 1], "examples seen"), (axes[1, 2], "wall seconds of training")):
    ax.axhline(100 * target, color="0.4", ls=":", label="target")
    ax.set(xscale="log", xlabel=xlabel, ylabel="validation accuracy (%)",
           ylim=(max(0.0, 100 * target - 20), 100),
           title=f"({'e' if ax is axes[1, 1] else 'f'}) Validation accuracy until the target")
    ax.legend(fontsize=8)
  for ax in axes.flat:
    ax.grid(alpha=0.3, which="both")
  every = runs[0]["config"]["eval_every"]
  fig.suptitle(title + f"; Adam lr scaled with B ({scaling} rule); validation every ~{every} "
               "examples; x: target not reached")
  fig.savefig(path, dpi=100)
  plt.close(fig)


def tables(noise: dict, runs: list[dict], target: float, scaling: str, seed: int) -> str:
  labels = list(noise)
  noise_rows = []
  for i, b in enumerate(r["batch_size"] for r in noise[labels[0]]["rows"]):
    row = [str(b)]
    for label in labels:
      r = noise[label]["rows"][i]
      row += [f"{r['mean']:.4g} ± {r['stderr']:.2g}", f"{r['predicted']:.4g}", f"{r['ratio']:.3f}"]
    noise_rows.append(row)
  header = ["B"] + [f"{label}: {col}" for label in labels
                    for col in ("E‖g_B − g‖² (± s.e.)", "σ²/B·(N−B)/(N−1)", "ratio")]
  n = noise[labels[0]]
  text = common.markdown_table(
      header, noise_rows,
      caption=f"(a) Minibatch gradient noise, MLP 784-256-256-10 on MNIST (N = "
              f"{n['num_examples']:,} training examples, {n['num_batches']} minibatches per B, "
              f"seed {seed}). Fitted log-log slopes: "
              + ", ".join(f"{label} {noise[label]['slope']:.3f}" for label in labels)
              + " (theory: -1).")
  text += "\n" + common.markdown_table(
      ["B", "learning rate", "reached", "steps", "examples", "epochs", "wall s", "examples/s",
       "test accuracy at stop"],
      [[r["config"]["batch_size"], f"{r['config']['learning_rate']:.3g}",
        "yes" if r["reached"] else "no", f"{r['steps']:,}", f"{r['examples']:,}",
        f"{r['epochs']:.2f}", f"{r['wall_s']:.1f}",
        f"{r['examples_per_s']:,.0f}" if r["examples_per_s"] else "-",
        common.percent(r["test_accuracy"])] for r in runs],
      caption=f"(b) Time to {100 * target:g} % validation accuracy (validation every "
              f"~{runs[0]['config']['eval_every']} examples), {runs[0]['config']['optimizer']} "
              f"with lr(B) = {runs[0]['config']['base_learning_rate']:g} x "
              + ("sqrt(B/128)" if scaling == "sqrt" else "B/128")
              + "; wall seconds of training only, on " + jax.devices()[0].device_kind + ".")
  return text


def run(out: pathlib.Path, batch_sizes: list[int], noise_batches: int, noise_train_steps: int,
        target: float, max_epochs: float, eval_every: int, optimizer: str, base_lr: float,
        scaling: str, seed: int) -> dict:
  """Measures the noise, runs (or reads back) every time-to-target training, writes outputs."""
  if not 0 < target <= 1:
    raise ConfigError(f"--target={target} must be an accuracy in (0, 1]")
  for key, value in (("noise_batches", noise_batches), ("max_epochs", max_epochs),
                     ("eval_every", eval_every)):
    if not value > 0:
      raise ConfigError(f"--{key}={value} must be positive")
  if noise_batches < 2:
    raise ConfigError(f"--noise_batches={noise_batches} must be at least 2")
  if noise_train_steps < 0:
    raise ConfigError(f"--noise_train_steps={noise_train_steps} must be >= 0")
  optimizers.make_optimizer(optimizer, base_lr)
  raw = mnist.load("mnist")
  train, val, test = pipeline.train_val_test(raw, 5000)
  too_big = [b for b in batch_sizes if b > len(train)]
  if too_big:
    raise ConfigError(f"batch size {too_big[0]} exceeds the {len(train)} training examples")
  out.mkdir(parents=True, exist_ok=True)

  # (a) noise at the initialization and after a short training (read back if measured already).
  noise_config = common.as_json({"batch_sizes": batch_sizes, "noise_batches": noise_batches,
                                 "noise_train_steps": noise_train_steps, "seed": seed,
                                 "dataset": "mnist", "model": MODEL})
  noise_path = out / "noise.json"
  saved = json.loads(noise_path.read_text()) if noise_path.exists() else {}
  if saved.get("config") == noise_config:
    logging.info("done already: %s", noise_path)
    noise, noise_s = saved["noise"], saved["time_s"]
  else:
    timer = common.Timer()
    noise = measure_all_noise(train, batch_sizes, noise_batches, noise_train_steps, seed)
    noise_s = timer()
    noise_path.write_text(json.dumps({"config": noise_config, "noise": noise, "time_s": noise_s},
                                     indent=2))

  # (b) time to the target, one directory per batch size.
  runs = []
  for b in batch_sizes:
    config = {"batch_size": b, "learning_rate": learning_rate(base_lr, b, scaling),
              "base_learning_rate": base_lr, "lr_scaling": scaling, "optimizer": optimizer,
              "target": target, "max_epochs": max_epochs, "eval_every": eval_every,
              "seed": seed, "dataset": "mnist", "model": MODEL}
    run_dir = out / "runs" / f"b{b:04d}"
    path = run_dir / "results.json"
    if path.exists() and json.loads(path.read_text())["config"] == common.as_json(config):
      logging.info("done already: %s", path)
      result = json.loads(path.read_text())
    else:
      result = time_to_target(config, train, val, test)
      run_dir.mkdir(parents=True, exist_ok=True)
      path.write_text(json.dumps(result, indent=2))
    runs.append(result)
    logging.info("B=%d lr %.3g: %s after %d steps, %d examples, %.1f s", b,
                 config["learning_rate"], "target reached" if result["reached"] else "not reached",
                 result["steps"], result["examples"], result["wall_s"])

  title = (f"Batch size on MNIST, MLP 784-256-256-10 (ReLU), seed {seed}: noise of the "
           f"minibatch gradient and time to {100 * target:g} %")
  plot(noise, runs, target, scaling, out / "batch_size_study.png", title)
  table = tables(noise, runs, target, scaling, seed)
  done = [r for r in runs if r["reached"]]
  # The fields experiments/report.py tabulates: the run fastest to the target (or, if none
  # reached it, the one closest to it).
  if done:
    shown = min(done, key=lambda r: r["wall_s"])
    what = f"B={shown['config']['batch_size']} fastest to {100 * target:g} %"
  else:
    shown = max(runs, key=lambda r: r["val_accuracy"])
    what = f"B={shown['config']['batch_size']}, no B reached {100 * target:g} %"
  results = {
      "experiment": "study_batch_size", "model": f"mnist_mlp 784-256-256-10, {what}",
      "dataset": "mnist", "test_accuracy": shown["test_accuracy"], "epochs": shown["epochs"],
      "param_count": 784 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10,
      "train_time_s": sum(r["wall_s"] for r in runs), "train_examples_per_s": None,
      "seed": seed, **common.environment(),
      "config": {"batch_sizes": batch_sizes, "noise_batches": noise_batches,
                 "noise_train_steps": noise_train_steps, "target": target,
                 "max_epochs": max_epochs, "eval_every": eval_every, "optimizer": optimizer,
                 "base_learning_rate": base_lr, "lr_scaling": scaling},
      "noise": noise, "noise_time_s": noise_s, "time_to_target": runs,
  }
  common.write_outputs(out, results, table)
  return results


def main(argv):
  def study(size):
    run(common.workdir(FLAGS, "batch_size"), common.int_list("batch_sizes", size["batch_sizes"]),
        size["noise_batches"], size["noise_train_steps"], size["target"], size["max_epochs"],
        FLAGS.eval_every, FLAGS.optimizer, FLAGS.learning_rate, FLAGS.lr_scaling, FLAGS.seed)
  common.run_main(argv, QUICK, study)


if __name__ == "__main__":
  app.run(main)
