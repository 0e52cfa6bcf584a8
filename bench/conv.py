"""Forward + backward time of the from-scratch 2-D convolution vs lax, dl_jax's Conv and PyTorch.

Layers: the three convolutions of the section 5.3.1 network (5x5 kernels, 'valid' padding),
batch 128: 28x28x1 -> 6, 24x24x6 -> 12, 10x10x12 -> 12. For each layer and implementation, one
call computes the output y and the gradients of sum(y * r) with respect to the input and the
kernel (eq. 5.13-5.14):
- from_scratch: `dl_jax.from_scratch.conv.correlate` (tap sum, hand-written backward pass);
- from_scratch_autodiff: the same forward pass, differentiated by JAX;
- lax: `lax.conv_general_dilated`, differentiated by JAX;
- nn_conv_auto: `dl_jax.nn.conv.Conv(impl='auto')` (the models' layer);
- torch: `torch.nn.functional.conv2d` + `backward()`, eager, NCHW.
All run in one process; the JAX ones are jitted and warmed up. Calls are interleaved in rounds
(one call of each implementation per round), so that load from other processes hits all alike;
the table gives the median time per call and its ratio to lax and to PyTorch.

Usage: python bench/conv.py [--rounds 30] [--batch_size 128]
Needs PyTorch: pip install -e .[bench]
"""

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

try:
  import torch
except ImportError:
  torch = None

import jax
import jax.numpy as jnp
from jax import lax

from dl_jax.from_scratch import conv as fs_conv
from dl_jax.nn.conv import Conv

LAYERS = ((28, 1, 6), (24, 6, 12), (10, 12, 12))  # (H = W, C_in, C_out), 5x5 kernel, valid
KERNEL = 5


def jax_fns(x, kernel, r):
  """name -> jitted (x, kernel) -> (y, dx, dk) for each JAX implementation."""
  layer = Conv(kernel.shape[-1], (KERNEL, KERNEL), padding="VALID", use_bias=False, impl="auto")
  convs = {
      "from_scratch": lambda x, k: fs_conv.correlate(x, k, 1, "valid"),
      "from_scratch_autodiff": lambda x, k: fs_conv.correlate(x, k, 1, "valid", impl="autodiff"),
      "lax": lambda x, k: lax.conv_general_dilated(x, k, (1, 1), "VALID",
                                                   dimension_numbers=("NHWC", "HWIO", "NHWC")),
      "nn_conv_auto": lambda x, k: layer.apply({"params": {"kernel": k}}, x),
  }
  fns = {}
  for name, conv in convs.items():
    def fwd_bwd(x, k, conv=conv):
      y, vjp = jax.vjp(conv, x, k)
      return (y, *vjp(r))
    fns[name] = jax.jit(fwd_bwd)
  return fns


def torch_fn(x, kernel, r):
  xt = torch.tensor(np.transpose(np.asarray(x), (0, 3, 1, 2)).copy(), requires_grad=True)
  kt = torch.tensor(np.transpose(np.asarray(kernel), (3, 2, 0, 1)).copy(), requires_grad=True)
  rt = torch.tensor(np.transpose(np.asarray(r), (0, 3, 1, 2)).copy())

  def call():
    xt.grad = kt.grad = None
    y = torch.nn.functional.conv2d(xt, kt)
    (y * rt).sum().backward()
    return y, xt.grad, kt.grad
  return call


def check_agreement(outputs) -> float:
  """Max relative difference of (y, dx, dk) between every implementation and lax."""
  ref = outputs["lax"]
  worst = 0.0
  for out in outputs.values():
    for a, b in zip(out, ref):
      worst = max(worst, float(np.abs(a - b).max() / max(1.0, np.abs(b).max())))
  return worst


def bench_layer(size, c_in, c_out, batch, rounds, rng):
  x = jnp.asarray(rng.normal(size=(batch, size, size, c_in)), jnp.float32)
  kernel = jnp.asarray(rng.normal(size=(KERNEL, KERNEL, c_in, c_out)) / KERNEL, jnp.float32)
  out = size - KERNEL + 1
  r = jnp.asarray(rng.normal(size=(batch, out, out, c_out)), jnp.float32)
  calls = {name: (lambda f=f: jax.block_until_ready(f(x, kernel)))
           for name, f in jax_fns(x, kernel, r).items()}
  tcall = torch_fn(x, kernel, r)
  calls["torch"] = tcall
  outputs = {}
  for name, call in calls.items():  # warm-up (compilation) and agreement check
    for _ in range(3):
      res = call()
    outputs[name] = [np.asarray(v.detach().numpy()) if name == "torch" else np.asarray(v)
                     for v in res]
  outputs["torch"] = [np.transpose(outputs["torch"][0], (0, 2, 3, 1)),
                      np.transpose(outputs["torch"][1], (0, 2, 3, 1)),
                      np.transpose(outputs["torch"][2], (2, 3, 1, 0))]
  times = {name: [] for name in calls}
  for _ in range(rounds):
    for name, call in calls.items():
      start = time.perf_counter()
      call()
      times[name].append(time.perf_counter() - start)
  return {name: statistics.median(t) for name, t in times.items()}, check_agreement(outputs)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
  parser.add_argument("--rounds", type=int, default=30)
  parser.add_argument("--batch_size", type=int, default=128)
  args = parser.parse_args()
  if torch is None:
    print("error: PyTorch is not installed; pip install -e .[bench]", file=sys.stderr)
    sys.exit(2)
  if args.rounds < 1 or args.batch_size < 1:
    print(f"error: --rounds and --batch_size must be positive, got {args.rounds}, "
          f"{args.batch_size}", file=sys.stderr)
    sys.exit(2)
  load_before = os.getloadavg()
  print(f"jax {jax.__version__} ({jax.default_backend()}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), python {platform.python_version()}, "
        f"{os.cpu_count()} cpus, batch {args.batch_size}, {args.rounds} interleaved rounds, "
        f"median forward+backward time per call")
  rng = np.random.default_rng(0)
  names = ("from_scratch", "from_scratch_autodiff", "lax", "nn_conv_auto", "torch")
  print(f"\n| layer | {' | '.join(n + ' (ms)' for n in names)} | from_scratch / lax | "
        "from_scratch / torch | max rel. diff |")
  print("|---" * (len(names) + 4) + "|")
  for size, c_in, c_out in LAYERS:
    med, diff = bench_layer(size, c_in, c_out, args.batch_size, args.rounds, rng)
    cells = " | ".join(f"{1e3 * med[n]:.2f}" for n in names)
    print(f"| {size}x{size}x{c_in} -> {c_out} | {cells} | "
          f"{med['from_scratch'] / med['lax']:.2f} | {med['from_scratch'] / med['torch']:.2f} | "
          f"{diff:.1e} |", flush=True)
  load_after = os.getloadavg()
  print(f"\nload average (1, 5, 15 min): before {load_before[0]:.2f} {load_before[1]:.2f} "
        f"{load_before[2]:.2f}, after {load_after[0]:.2f} {load_after[1]:.2f} "
        f"{load_after[2]:.2f} (on {os.cpu_count()} cpus: other jobs share the machine)")


if __name__ == "__main__":
  main()
