"""Train-step time of dl_jax vs PyTorch eager on this machine's CPU.

Models (same architecture, same initial weights, same random batch, same loss and optimizer:
softmax cross-entropy (eq. 5.22-5.24), Adam lr 1e-3):
- mlp: 784-256-256-10 with ReLU (section 2.5), `dl_jax.models.mlp.MLP`;
- cnn: the network of section 5.3.1 (figure 5.23), in several variants of its convolution
  (`dl_jax.nn.conv.Conv`, `impl`) and max-pool (`dl_jax.nn.pool.max_pool`, `impl`), so that the
  table shows where the time goes. 'xla/xla' computes what `flax.linen.Conv` + `flax.linen.max_pool`
  do; 'model' is `dl_jax.models.cnn.MnistCNN` with its default impls.

dl_jax runs its jitted train step (`dl_jax.tasks.image_classification.train_step`, state donated); PyTorch runs
`model(x)`, `cross_entropy`, `backward()`, `Adam.step()` eagerly. Each variant is warmed up,
then timed step by step (blocking on the result) in interleaved rounds, so that load from other
processes affects all variants alike; the table gives the median over all timed steps.

`--layers` first prints, per layer of the CNN, the time of the forward pass, the input gradient
(eq. 5.14) and the kernel gradient (eq. 5.13) for each conv impl and PyTorch, and of the
max-pool forward/backward.

Usage: python bench/train_step.py [--steps 100] [--batch_size 128] [--rounds 5] [--layers]
  [--cores N] [--variants model,auto/auto,custom_vjp/xla,xla/slices,xla/xla,im2col/auto]
Needs PyTorch: pip install -e .[bench]
"""

import argparse
import os
import platform
import sys
import time


if __name__ == "__main__":
  import _cores  # pylint: disable=g-import-not-at-top
  _cores.pin_cores_from_argv()

import numpy as np  # pylint: disable=g-import-not-at-top

try:
  import torch
except ImportError:
  torch = None

import jax
import jax.numpy as jnp
import optax

from dl_jax.models.cnn import MnistCNN
from dl_jax.models.mlp import MLP
from dl_jax.nn.conv import conv2d, resolve_impl
from dl_jax.nn.pool import max_pool
from dl_jax.tasks.image_classification import create_train_state, train_step

DEFAULT_VARIANTS = "model,auto/auto,custom_vjp/xla,xla/slices,xla/xla"


def build_jax(name: str, variant: str | None, batch: dict, seed: int):
  """Returns (describe, step closure, params) for one dl_jax model."""
  if name == "mlp":
    model, desc = MLP(hidden=(256, 256), num_classes=10), "dl_jax.models.mlp.MLP"
  elif variant == "model":
    model, desc = MnistCNN(), "dl_jax.models.cnn.MnistCNN with its defaults"
  else:
    conv_impl, pool_impl = variant.split("/")
    model = MnistCNN(conv_impl=conv_impl, pool_impl=pool_impl)
    desc = (f"MnistCNN: conv impl={conv_impl} ({resolve_impl(conv_impl)}), "
            f"max_pool impl={pool_impl}")
  state = create_train_state(model, optax.adam(1e-3), jax.random.key(seed), (28, 28, 1))
  params0 = jax.device_get(state.params)
  step = jax.jit(train_step, donate_argnums=0)
  holder = {"state": state}

  def run():
    holder["state"], metrics = step(holder["state"], batch)
    return metrics["loss"]

  return desc, lambda: float(jax.block_until_ready(run())), params0


class TorchMLP(torch.nn.Module if torch else object):
  def __init__(self):
    super().__init__()
    self.fc = torch.nn.ModuleList([torch.nn.Linear(784, 256), torch.nn.Linear(256, 256),
                                   torch.nn.Linear(256, 10)])

  def forward(self, x):  # x: NHWC, as dl_jax gets it
    x = x.reshape(x.shape[0], -1)
    x = torch.relu(self.fc[0](x))
    x = torch.relu(self.fc[1](x))
    return self.fc[2](x)

  def load(self, params):
    for i, layer in enumerate(self.fc):
      p = params[f"Dense_{i}"]
      layer.weight.data = torch.tensor(np.asarray(p["kernel"]).T.copy())
      layer.bias.data = torch.tensor(np.asarray(p["bias"]))


class TorchCNN(torch.nn.Module if torch else object):
  """Section 5.3.1 in PyTorch (NCHW); flattens in dl_jax's (h, w, c) order."""

  def __init__(self):
    super().__init__()
    self.convs = torch.nn.ModuleList([torch.nn.Conv2d(1, 6, 5), torch.nn.Conv2d(6, 12, 5),
                                      torch.nn.Conv2d(12, 12, 5)])
    self.fc = torch.nn.ModuleList([torch.nn.Linear(108, 256), torch.nn.Linear(256, 10)])
    self.pool = torch.nn.MaxPool2d(2)

  def forward(self, x):  # x: NCHW
    x = torch.relu(self.convs[0](x))
    x = self.pool(torch.relu(self.convs[1](x)))
    x = self.pool(torch.relu(self.convs[2](x)))
    x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
    return self.fc[1](torch.relu(self.fc[0](x)))

  def load(self, params):
    for i, layer in enumerate(self.convs):
      p = params[f"Conv_{i}"]
      layer.weight.data = torch.tensor(np.transpose(np.asarray(p["kernel"]), (3, 2, 0, 1)).copy())
      layer.bias.data = torch.tensor(np.asarray(p["bias"]))
    for i, layer in enumerate(self.fc):
      p = params[f"Dense_{i}"]
      layer.weight.data = torch.tensor(np.asarray(p["kernel"]).T.copy())
      layer.bias.data = torch.tensor(np.asarray(p["bias"]))


def build_torch(name: str, params, images: np.ndarray, labels: np.ndarray):
  model = TorchMLP() if name == "mlp" else TorchCNN()
  model.load(params)
  x = torch.tensor(images if name == "mlp" else np.transpose(images, (0, 3, 1, 2)).copy())
  y = torch.tensor(labels, dtype=torch.long)
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)

  def run():
    opt.zero_grad(set_to_none=True)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return float(loss.detach())

  return run


def _median_ms(fns: dict, rounds: int, reps: int) -> dict:
  """Median ms per call of each no-argument function, timed in interleaved rounds."""
  for fn in fns.values():
    fn()
    fn()
  times = {name: [] for name in fns}
  for _ in range(rounds):
    for name, fn in fns.items():
      for _ in range(reps):
        start = time.perf_counter()
        fn()
        times[name].append(time.perf_counter() - start)
  return {name: 1e3 * float(np.median(ts)) for name, ts in times.items()}


def profile_layers(batch_size: int, rounds: int, seed: int) -> None:
  """Per-layer forward / input-gradient / kernel-gradient times of the 5.3.1 CNN."""
  rng = np.random.default_rng(seed)
  layers = [("conv1 28x28x1->6", 28, 1, 6), ("conv2 24x24x6->12", 24, 6, 12),
            ("conv3 10x10x12->12", 10, 12, 12)]
  impls = ("xla", "im2col", "custom_vjp")
  print(f"per layer, batch {batch_size}, ms (median): forward / input grad / kernel grad")
  header = f"{'layer':<20}" + "".join(f"{name:>24}" for name in (*impls, "torch"))
  print(header)
  print("-" * len(header))
  for label, size, cin, cout in layers:
    x = rng.standard_normal((batch_size, size, size, cin), dtype=np.float32)
    k = (rng.standard_normal((5, 5, cin, cout)) / np.sqrt(25 * cin)).astype(np.float32)
    g = rng.standard_normal((batch_size, size - 4, size - 4, cout), dtype=np.float32)
    xj, kj, gj = jnp.asarray(x), jnp.asarray(k), jnp.asarray(g)
    fns = {}
    for impl in impls:
      conv = lambda x, k, impl=impl: conv2d(x, k, 1, "VALID", impl)
      fwd = jax.jit(conv)
      dx = jax.jit(lambda x, k, g, conv=conv: jax.vjp(lambda x: conv(x, k), x)[1](g)[0])
      dk = jax.jit(lambda x, k, g, conv=conv: jax.vjp(lambda k: conv(x, k), k)[1](g)[0])
      fns[(impl, 0)] = lambda f=fwd: jax.block_until_ready(f(xj, kj))
      fns[(impl, 1)] = lambda f=dx: jax.block_until_ready(f(xj, kj, gj))
      fns[(impl, 2)] = lambda f=dk: jax.block_until_ready(f(xj, kj, gj))
    xt = torch.tensor(np.transpose(x, (0, 3, 1, 2)).copy())
    kt = torch.tensor(np.transpose(k, (3, 2, 0, 1)).copy())
    gt = torch.tensor(np.transpose(g, (0, 3, 1, 2)).copy())
    backward = lambda mask: torch.ops.aten.convolution_backward(
        gt, xt, kt, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, mask)
    with torch.no_grad():
      fns[("torch", 0)] = lambda: torch.nn.functional.conv2d(xt, kt)
      fns[("torch", 1)] = lambda: backward([True, False, False])
      fns[("torch", 2)] = lambda: backward([False, True, False])
      ms = _median_ms(fns, rounds, 5)
    cells = [" / ".join(f"{ms[(impl, i)]:.2f}" for i in range(3)) for impl in (*impls, "torch")]
    print(f"{label:<20}" + "".join(f"{c:>24}" for c in cells))

  print(f"\n{'max-pool 2x2':<20}" + "".join(f"{n:>24}" for n in ("xla", "slices", "torch")))
  for label, size in (("pool1 20x20x12", 20), ("pool2 6x6x12", 6)):
    x = rng.standard_normal((batch_size, size, size, 12), dtype=np.float32)
    g = rng.standard_normal((batch_size, size // 2, size // 2, 12), dtype=np.float32)
    xj, gj = jnp.asarray(x), jnp.asarray(g)
    fns = {}
    for impl in ("xla", "slices"):
      pool = lambda x, impl=impl: max_pool(x, (2, 2), (2, 2), impl=impl)
      fwd, bwd = jax.jit(pool), jax.jit(lambda x, g, pool=pool: jax.vjp(pool, x)[1](g)[0])
      fns[(impl, 0)] = lambda f=fwd: jax.block_until_ready(f(xj))
      fns[(impl, 1)] = lambda f=bwd: jax.block_until_ready(f(xj, gj))
    xt = torch.tensor(np.transpose(x, (0, 3, 1, 2)).copy(), requires_grad=True)
    gt = torch.tensor(np.transpose(g, (0, 3, 1, 2)).copy())
    yt, idx = torch.nn.functional.max_pool2d(xt.detach(), 2, return_indices=True)
    with torch.no_grad():
      fns[("torch", 0)] = lambda: torch.nn.functional.max_pool2d(xt, 2)
      fns[("torch", 1)] = lambda: torch.ops.aten.max_pool2d_with_indices_backward(
          gt, xt, [2, 2], [2, 2], [0, 0], [1, 1], False, idx)
      ms = _median_ms(fns, rounds, 5)
    cells = [f"{ms[(impl, 0)]:.2f} / {ms[(impl, 1)]:.2f}" for impl in ("xla", "slices", "torch")]
    print(f"{label:<20}" + "".join(f"{c:>24}" for c in cells))
  print()


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--steps", type=int, default=100, help="timed steps per variant")
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
  parser.add_argument("--warmup", type=int, default=10, help="untimed steps per variant")
  parser.add_argument("--variants", default=DEFAULT_VARIANTS,
                      help="CNN variants conv_impl/pool_impl, comma-separated")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--layers", action="store_true",
                      help="first print per-layer forward/gradient times")
  parser.add_argument("--cores", type=int, default=0,
                      help="run both frameworks on the first N cores (default: all allowed)")
  args = parser.parse_args(argv)
  if torch is None:
    print("bench/train_step.py needs PyTorch, which is not installed: pip install -e .[bench]",
          file=sys.stderr)
    return 2
  if min(args.steps, args.batch_size, args.rounds) < 1 or args.warmup < 0:
    print("--steps, --batch_size and --rounds must be positive, --warmup >= 0", file=sys.stderr)
    return 2

  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  torch.set_num_threads(cores)  # XLA's CPU client uses one thread per allowed core
  if os.getloadavg()[0] > 0.5 * cores:
    print(f"warning: load average {os.getloadavg()[0]:.2f} on {cores} cores: other processes "
          "are running, timings will be noisy (PyTorch's threads suffer most)", file=sys.stderr)
  if args.layers:
    profile_layers(args.batch_size, args.rounds, args.seed)
  rng = np.random.default_rng(args.seed)
  images = rng.random((args.batch_size, 28, 28, 1), dtype=np.float32)
  labels = rng.integers(0, 10, args.batch_size).astype(np.int32)
  batch = {"image": jnp.asarray(images), "label": jnp.asarray(labels)}

  # name -> (model, describe, run); dl_jax and torch entries alternate in every round.
  entries = []
  torch_for = {}
  for model_name, variants in (("mlp", [None]), ("cnn", args.variants.split(","))):
    for variant in variants:
      desc, run, params = build_jax(model_name, variant, batch, args.seed)
      label = model_name if variant is None else f"{model_name} {variant}"
      entries.append((label, "dl_jax", desc, run))
      if model_name not in torch_for:
        torch_run = build_torch(model_name, params, images, labels)
        loss_jax, loss_torch = run(), torch_run()  # first step, same weights and data
        print(f"{model_name}: first-step loss dl_jax {loss_jax:.6f}, torch {loss_torch:.6f}")
        torch_for[model_name] = torch_run
        entries.append((model_name, "torch", "eager", torch_run))

  for _, _, _, run in entries:
    for _ in range(args.warmup):
      run()
  times = {(label, who): [] for label, who, _, _ in entries}
  per_round = -(-args.steps // args.rounds)
  load_before = os.getloadavg()
  for _ in range(args.rounds):
    for label, who, _, run in entries:
      for _ in range(per_round):
        start = time.perf_counter()
        run()
        times[(label, who)].append(time.perf_counter() - start)
  load_after = os.getloadavg()

  med = {key: 1e3 * float(np.median(ts)) for key, ts in times.items()}
  print(f"\nPython {platform.python_version()}, jax {jax.__version__} "
        f"({jax.default_backend()}), torch {torch.__version__}; {platform.processor() or 'cpu'}")
  print(f"threads: torch.get_num_threads()={torch.get_num_threads()}, "
        f"cores visible to XLA={cores}; batch {args.batch_size}, "
        f"{per_round * args.rounds} timed steps per row in {args.rounds} interleaved rounds, "
        f"load average {load_before[0]:.2f} -> {load_after[0]:.2f}")
  print()
  header = f"{'model':<22} {'dl_jax ms/step':>15} {'torch ms/step':>14} {'ratio':>7}"
  print(header)
  print("-" * len(header))
  for label, who, desc, _ in entries:
    if who != "dl_jax":
      continue
    model_name = label.split()[0]
    jax_ms, torch_ms = med[(label, "dl_jax")], med[(model_name, "torch")]
    print(f"{label:<22} {jax_ms:>15.2f} {torch_ms:>14.2f} {jax_ms / torch_ms:>7.2f}")
  print("\nratio = dl_jax / torch (< 1: dl_jax faster). CNN variants are conv_impl/pool_impl:")
  for label, who, desc, _ in entries:
    if who == "dl_jax" and label.startswith("cnn"):
      print(f"  {label.split()[1]:<18} {desc}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
