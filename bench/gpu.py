"""Train-step throughput of ResNet-18 on one accelerator: dl_jax vs PyTorch, float32 and bfloat16.

The model is section 5.3.2's ResNet-18 in its CIFAR-style configuration: the `resnet18_small`
factory of the registry (3x3 stride-1 stem, no max-pool, 10 classes) fed 32x32x3 images, at batch
256. Rows, each warmed up and then timed over `--steps` steps (the loop blocked on the result at
its end, so that dispatch overlaps compute as in training):

- dl_jax float32 / bfloat16: `registry.build("resnet18_small", dtype=...)` (the parameters stay
  float32, the compute runs in the dtype), `dl_jax.tasks.image_classification.train_step` under
  `jax.jit` with the state donated, compiled ahead of time (the compile time is printed apart);
- torch eager float32 (NCHW) and bfloat16 (channels_last + `torch.autocast` bf16), the PyTorch
  twin of bench/train_step.py (`TorchResNet`, the dl_jax initial weights copied in; that file
  checks the twin against the model), when torch is importable. It runs in a subprocess first,
  before JAX touches the device: the two frameworks never share the device memory or a process
  (their CUDA libraries may clash), and a torch failure only costs its rows.

Both take SGD with momentum 0.9, lr 0.1 (or Adam lr 1e-3, `--optimizer adam`) on the softmax
cross-entropy of a random batch. The table gives ms/step, images/s, the ratio dl_jax / torch of
the step times in the same dtype, and the fraction of the chip's peak: the FLOPs of one step
from XLA's cost analysis of the compiled dl_jax step (used for the torch rows too), over the
step time, over the dense peak of the device kind (float32 rows against the TF32 peak: XLA's
default precision and torch's cuDNN convolutions use TF32; torch matmuls are set to allow it
too). It writes the table to stdout and, with the configuration, to the JSON file `--out`.

Usage, from the repository root:
  python bench/gpu.py --out $OUT/gpu_bench.json   # full size: batch 256, 10 warm-up + 100 steps
  python bench/gpu.py --smoke --out /tmp/gpu_smoke.json  # tiny (batch 8, 1 + 2 steps), any machine
Flags: --steps, --warmup, --batch_size, --optimizer sgd|adam, --dtypes float32,bfloat16,
  --no_torch, --torch_timeout (s), --seed. No downloads, no retries: one pass, a few minutes
  at most at full size on an H100-class GPU.
"""

import argparse
import importlib.util
import json
import math
import os
import pathlib
import platform
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
if importlib.util.find_spec("dl_jax") is None:  # not installed: run from the checkout
  sys.path.insert(0, str(ROOT))

import numpy as np  # pylint: disable=g-import-not-at-top
import jax  # importing initializes no device: the torch subprocess runs first
import optax

from dl_jax.models import registry
from dl_jax.tasks.image_classification import create_train_state, train_step

MODEL = "resnet18_small"
IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 10
# (substring of jax's device_kind, dense bf16 TFLOP/s, dense TF32 TFLOP/s) of the SXM parts;
# the PCIe and NVL boards of H100/H200 are slower and get 'unknown peak'.
PEAKS = (("H100", 989.0, 494.0), ("H200", 989.0, 494.0), ("A100", 312.0, 156.0))
SLOWER_BOARDS = ("PCIE", "NVL")
WORKER_TAG = "TORCH_ROWS "  # the worker's last stdout line: this tag, then JSON


def peak_tflops(device_kind: str, dtype: str) -> float | None:
  kind = device_kind.upper()
  for name, bf16, tf32 in PEAKS:
    if name in kind and not (name != "A100" and any(b in kind for b in SLOWER_BOARDS)):
      return bf16 if dtype == "bfloat16" else tf32
  return None


def make_batch(batch_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng(seed)
  images = rng.standard_normal((batch_size, *IMAGE_SHAPE), dtype=np.float32)
  return images, rng.integers(0, NUM_CLASSES, batch_size).astype(np.int32)


def jax_optimizer(name: str) -> optax.GradientTransformation:
  return optax.sgd(0.1, momentum=0.9) if name == "sgd" else optax.adam(1e-3)


def initial_state(dtype: str, optimizer: str, seed: int):
  model = registry.build(MODEL, dtype=dtype, num_classes=NUM_CLASSES)
  return create_train_state(model, jax_optimizer(optimizer), jax.random.key(seed), IMAGE_SHAPE)


def _flops(compiled) -> float | None:
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except  # not every backend implements it
    return None
  if isinstance(analysis, (list, tuple)):  # older jax: one dict per computation
    analysis = analysis[0] if analysis else {}
  flops = (analysis or {}).get("flops")
  return float(flops) if flops and flops > 0 else None


def time_jax(dtype: str, args) -> dict:
  """One dl_jax row: compile ahead of time, warm up, time `steps` steps."""
  state = initial_state(dtype, args.optimizer, args.seed)
  images, labels = make_batch(args.batch_size, args.seed)
  batch = {"image": jax.device_put(images), "label": jax.device_put(labels)}
  start = time.perf_counter()
  step = jax.jit(train_step, donate_argnums=0).lower(state, batch).compile()
  compile_s = time.perf_counter() - start
  for _ in range(args.warmup):
    state, metrics = step(state, batch)
  jax.block_until_ready(state)
  start = time.perf_counter()
  for _ in range(args.steps):
    state, metrics = step(state, batch)
  jax.block_until_ready((state, metrics))
  seconds = (time.perf_counter() - start) / args.steps
  return {"framework": "dl_jax", "dtype": dtype, "setup": f"jit, donated state, {dtype} compute",
          "ms_per_step": 1e3 * seconds, "compile_s": compile_s, "flops_per_step": _flops(step),
          "final_loss": float(metrics["loss"])}


# ---------------------------------------------------------------------------------------------
# PyTorch, in a subprocess (JAX_PLATFORMS=cpu there: jax only initializes the weights)

def torch_worker(args) -> int:
  """Times the torch rows; prints WORKER_TAG + JSON {"rows", "torch", "device"} last."""
  import torch  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
  import train_step as twins  # pylint: disable=g-import-not-at-top  # bench/train_step.py

  info = {"torch": torch.__version__, "cuda": torch.version.cuda}
  if torch.cuda.is_available():
    device = torch.device("cuda")
    info["device"] = torch.cuda.get_device_name(0)
    torch.backends.cudnn.benchmark = True  # autotunes in the warm-up, as XLA at compile time
  elif args.smoke:
    device = torch.device("cpu")
    info["device"] = "cpu"
  else:
    info["error"] = (f"torch {torch.__version__} sees no CUDA device (a CPU build?): torch rows "
                     "skipped (--smoke runs them on the CPU)")
    print(WORKER_TAG + json.dumps({"rows": [], **info}))
    return 0
  torch.set_float32_matmul_precision("high")  # TF32 matmuls, as XLA's default precision
  info["cudnn_allow_tf32"] = bool(torch.backends.cudnn.allow_tf32)
  variables = jax.device_get(initial_state("float32", args.optimizer, args.seed))
  variables = {"params": variables.params, "batch_stats": variables.batch_stats}
  images, labels = make_batch(args.batch_size, args.seed)
  y = torch.tensor(labels, dtype=torch.long, device=device)
  rows = []
  for dtype in args.dtypes:
    bf16 = dtype == "bfloat16"
    memory_format = torch.channels_last if bf16 else torch.contiguous_format
    model = twins.make_twin(MODEL, in_channels=IMAGE_SHAPE[-1])
    model.load(variables)
    model = model.to(device, memory_format=memory_format).train()
    x = torch.tensor(np.transpose(images, (0, 3, 1, 2)).copy()).to(
        device, memory_format=memory_format)
    opt = (torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9) if args.optimizer == "sgd"
           else torch.optim.Adam(model.parameters(), lr=1e-3))

    def step():
      opt.zero_grad(set_to_none=True)
      with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = torch.nn.functional.cross_entropy(model(x), y)
      loss.backward()
      opt.step()
      return loss

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(args.warmup):
      step()
    sync()
    start = time.perf_counter()
    for _ in range(args.steps):
      loss = step()
    sync()
    seconds = (time.perf_counter() - start) / args.steps
    setup = ("eager, channels_last, autocast bf16" if bf16 else
             "eager, NCHW" + (", TF32 allowed" if device.type == "cuda" else ""))
    rows.append({"framework": "torch", "dtype": dtype, "setup": setup,
                 "ms_per_step": 1e3 * seconds, "final_loss": float(loss)})
  print(WORKER_TAG + json.dumps({"rows": rows, **info}))
  return 0


def run_torch(args) -> dict:
  """The torch rows from the subprocess, or {"rows": [], "error": why}."""
  if args.no_torch:
    return {"rows": [], "error": "--no_torch"}
  if importlib.util.find_spec("torch") is None:
    return {"rows": [], "error": "torch is not importable here"}
  command = [sys.executable, str(pathlib.Path(__file__).resolve()), "--_torch_worker",
             "--batch_size", str(args.batch_size), "--steps", str(args.steps),
             "--warmup", str(args.warmup), "--optimizer", args.optimizer,
             "--dtypes", ",".join(args.dtypes), "--seed", str(args.seed)]
  if args.smoke:
    command.append("--smoke")
  # OMP_WAIT_POLICY: torch's CPU threads (the smoke run) must not spin beside XLA's; see
  # bench/train_step.py.
  env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ, "JAX_PLATFORMS": "cpu"}
  try:
    done = subprocess.run(command, capture_output=True, text=True, timeout=args.torch_timeout,
                          env=env, check=False)
  except subprocess.TimeoutExpired:
    return {"rows": [], "error": f"the torch subprocess ran over --torch_timeout="
                                 f"{args.torch_timeout} s"}
  tagged = [line for line in done.stdout.splitlines() if line.startswith(WORKER_TAG)]
  if done.returncode or not tagged:
    tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
    return {"rows": [], "error": f"torch subprocess exit {done.returncode}: {tail[-600:]}"}
  return json.loads(tagged[-1][len(WORKER_TAG):])


# ---------------------------------------------------------------------------------------------

def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--steps", type=int, default=None, help="timed steps (100; smoke 2)")
  parser.add_argument("--warmup", type=int, default=None, help="untimed steps (10; smoke 1)")
  parser.add_argument("--batch_size", type=int, default=None, help="(256; smoke 8)")
  parser.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd",
                      help="sgd: momentum 0.9, lr 0.1; adam: lr 1e-3")
  parser.add_argument("--dtypes", default="float32,bfloat16", help="compute dtypes")
  parser.add_argument("--smoke", action="store_true",
                      help="tiny sizes, for checking the script (torch may run on the CPU)")
  parser.add_argument("--no_torch", action="store_true", help="dl_jax rows only")
  parser.add_argument("--torch_timeout", type=float, default=120.0,
                      help="seconds the torch subprocess may take")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default="gpu_bench.json", help="the JSON results file")
  parser.add_argument("--_torch_worker", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  full, smoke = {"steps": 100, "warmup": 10, "batch_size": 256}, {"steps": 2, "warmup": 1,
                                                                  "batch_size": 8}
  for key, value in (smoke if args.smoke else full).items():
    if getattr(args, key) is None:
      setattr(args, key, value)
  args.dtypes = [d for d in args.dtypes.split(",") if d]
  if min(args.steps, args.batch_size) < 1 or args.warmup < 0:
    parser.error("--steps and --batch_size must be positive, --warmup >= 0")
  bad = [d for d in args.dtypes if d not in ("float32", "bfloat16")]
  if bad or not args.dtypes:
    parser.error(f"--dtypes: {bad[0] if bad else 'empty'}; accepted: float32, bfloat16")
  return args


def main(argv=None) -> int:
  args = parse_args(argv)
  if args._torch_worker:  # pylint: disable=protected-access
    return torch_worker(args)
  wall = time.perf_counter()
  torch_result = run_torch(args)  # first: JAX has not touched the device yet

  device = jax.devices()[0]
  kind = device.device_kind
  if device.platform == "cpu" and not args.smoke:
    print("warning: JAX runs on the CPU; this benchmark is meant for a GPU", file=sys.stderr)
  rows = []
  for dtype in args.dtypes:
    rows.append(time_jax(dtype, args))
  flops = {row["dtype"]: row["flops_per_step"] for row in rows}
  jax_ms = {row["dtype"]: row["ms_per_step"] for row in rows}
  torch_ms = {row["dtype"]: row["ms_per_step"] for row in torch_result["rows"]}
  rows += torch_result["rows"]
  for row in rows:
    row["images_per_s"] = 1e3 * args.batch_size / row["ms_per_step"]
    step_flops, peak = flops.get(row["dtype"]), peak_tflops(kind, row["dtype"])
    row["tflops"] = step_flops / row["ms_per_step"] * 1e-9 if step_flops else None
    row["peak_tflops"] = peak
    row["fraction_of_peak"] = row["tflops"] / peak if row["tflops"] and peak else None
    other = torch_ms.get(row["dtype"]) if row["framework"] == "dl_jax" else None
    row["ratio_jax_over_torch"] = row["ms_per_step"] / other if other else None
    if not math.isfinite(row["final_loss"]):
      print(f"warning: {row['framework']} {row['dtype']}: the loss is {row['final_loss']}",
            file=sys.stderr)
  rows.sort(key=lambda r: (args.dtypes.index(r["dtype"]), r["framework"] != "dl_jax"))

  opt = "SGD momentum 0.9, lr 0.1" if args.optimizer == "sgd" else "Adam lr 1e-3"
  print(f"{kind} ({device.platform}), jax {jax.__version__}, torch "
        f"{torch_result.get('torch', '-')} (cuda {torch_result.get('cuda')}, device "
        f"{torch_result.get('device', '-')}); Python {platform.python_version()}")
  print(f"ResNet-18 ({MODEL} factory) on {'x'.join(map(str, IMAGE_SHAPE))}, {NUM_CLASSES} "
        f"classes, batch {args.batch_size}, {opt}; {args.warmup} warm-up + {args.steps} timed "
        f"steps per row{' (SMOKE: tiny sizes)' if args.smoke else ''}")
  for dtype, count in flops.items():
    text = f"{count:.3e} ({count / args.batch_size / 1e9:.2f} GFLOP per image)" if count else "n/a"
    print(f"FLOPs per step, {dtype} (XLA cost analysis of the dl_jax step): {text}")
  print()
  header = (f"{'row':<54} {'ms/step':>9} {'images/s':>10} {'TFLOP/s':>8} {'of peak':>12} "
            f"{'jax/torch':>9}")
  print(header)
  print("-" * len(header))
  for row in rows:
    name = f"{row['framework']} {row['dtype']}: {row['setup']}"
    tflops = f"{row['tflops']:.3g}" if row["tflops"] else "-"
    if row["fraction_of_peak"] is not None:
      of_peak = f"{100 * row['fraction_of_peak']:.1f}% of {row['peak_tflops']:.0f}"
    else:
      of_peak = "unknown peak"
    ratio = f"{row['ratio_jax_over_torch']:.2f}" if row["ratio_jax_over_torch"] else "-"
    print(f"{name:<54} {row['ms_per_step']:>9.2f} {row['images_per_s']:>10.0f} {tflops:>8} "
          f"{of_peak:>12} {ratio:>9}")
  print("\njax/torch = dl_jax ms / torch ms in the same dtype (< 1: dl_jax faster); peaks are "
        "dense bf16 or TF32 TFLOP/s of the device kind.")
  for row in rows:
    if row["framework"] == "dl_jax":
      print(f"dl_jax {row['dtype']}: compile {row['compile_s']:.1f} s (not timed)")
  if torch_result.get("error"):
    print(f"torch rows skipped: {torch_result['error']}")
  total = time.perf_counter() - wall
  print(f"total {total:.0f} s")

  result = {"device_kind": kind, "platform": device.platform, "jax": jax.__version__,
            "torch": {k: v for k, v in torch_result.items() if k != "rows"},
            "python": platform.python_version(), "model": MODEL,
            "image_shape": list(IMAGE_SHAPE), "batch_size": args.batch_size,
            "steps": args.steps, "warmup": args.warmup, "optimizer": args.optimizer,
            "smoke": args.smoke, "total_s": total, "rows": rows}
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=2) + "\n")
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
