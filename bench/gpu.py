"""dl_jax against PyTorch (eager and `torch.compile`) and PyG on one accelerator, in one run.

Benchmarks (`--benches`; all by default), each at its full size below or at the `--smoke` size:
- cnn_b128, cnn_b4096: a training step (forward, backward, Adam lr 1e-3, softmax cross-entropy)
  of section 5.3.1's CNN (`dl_jax.models.cnn.MnistCNN`, its default impls) on 28x28x1 images,
  batch 128 and 4096, as bench/train_step.py times it; torch: that file's twin `TorchCNN`.
- resnet18_f32, resnet18_bf16: a training step of section 5.3.2's ResNet-18, CIFAR-style (the
  `resnet18_small` factory: 3x3 stride-1 stem, no max-pool; 32x32x3, 10 classes), batch 256,
  SGD momentum 0.9 lr 0.1 (or Adam, `--optimizer`), computing in float32 / bfloat16 with float32
  parameters; torch: the twin `TorchResNet` (NCHW float32; channels_last + autocast bf16).
- gcn: forward and backward (the gradient of the mean cross-entropy over all nodes; no
  optimizer) of a 2-layer GCN (registry "gcn", hidden 64 as bench/gnn.py, 16 classes) on a
  random graph of 100k nodes, 1M directed edges without self-loops, 128 features; PyG:
  bench/gnn.py's `TorchGCN` (GCNConv: self-loops and normalization recomputed every call, as
  dl_jax does), in eval mode (no dropout on either side), with the same weights.
- readout: the sum of 1M rows x 64 float32 features into 64 segments, ids sorted (a batch's
  node-to-graph index): dl_jax's `message_passing.segment_sum` with each impl (scatter, sorted,
  blocked); torch `index_add_` (the reference of the ratios); PyG `global_add_pool`.

The dl_jax initial variables are copied into the torch twins (for the GCN both take one set of
numpy weights); the value column (final loss; for the read-out the sum of the output) lets the
two sides be compared. Each torch row runs eagerly and under `torch.compile` (inductor; forward
and backward compiled, the optimizer step eager); in `--smoke` without CUDA the compiled rows use
the aot_eager backend instead (dynamo and autograd traced, no C++ compile). All torch and PyG
rows run first, in a subprocess, before JAX touches the device: the two never share the device
memory or a process, and a failure (no torch, no torch_geometric, a failing `torch.compile`, a
timeout) costs only the rows it reaches, with the reason printed.

Each row compiles (first call, timed apart), runs `--warmup` calls, then `--steps` calls back to
back, blocked on the result at the end. The table gives ms per call, the rate and the fraction
of the chip's peak: FLOPs (XLA's cost analysis of the dl_jax program, used for the torch rows
too) over the dense bf16 or TF32 peak for the CNN and ResNet rows (XLA's default float32
precision and cuDNN use TF32; torch matmuls are set to allow it); bytes over the HBM bandwidth
for the GCN (XLA's bytes-accessed estimate) and the read-out (the least traffic: every row and id
read once). jax/eager and jax/compile: dl_jax ms over the reference's (torch; PyG for the GCN)
eager and compiled ms in the same run (< 1: dl_jax faster). The table goes to stdout and, with
the configuration, to the JSON file `--out`.

Usage, from the repository root:
  python bench/gpu.py --out $OUT/gpu_bench.json   # full size: 10 warm-up + 100 timed calls a row
  python bench/gpu.py --smoke --out /tmp/gpu_smoke.json   # tiny sizes, 1 + 2 calls, any machine
Flags: --benches cnn,resnet18,gcn,readout, --steps, --warmup, --batch_size (ResNet-18),
  --optimizer sgd|adam (ResNet-18), --dtypes float32,bfloat16 (ResNet-18), --no_torch,
  --no_compile, --torch_timeout (s), --seed. No downloads, one pass: a few minutes on an
  H100-class GPU, most of it compiling.
"""

import argparse
import importlib.util
import json
import math
import os
import pathlib
import platform
import signal
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
if importlib.util.find_spec("dl_jax") is None:  # not installed: run from the checkout
  sys.path.insert(0, str(ROOT))

import numpy as np  # pylint: disable=g-import-not-at-top
import jax  # importing initializes no device: the torch subprocess runs first
import jax.numpy as jnp
import jraph
import optax

from dl_jax.graph import message_passing as mp
from dl_jax.models import registry
from dl_jax.models.cnn import MnistCNN
from dl_jax.tasks.image_classification import create_train_state, train_step

BENCHES = ("cnn", "resnet18", "gcn", "readout")
RESNET = "resnet18_small"
RESNET_SHAPE, CNN_SHAPE, NUM_CLASSES = (32, 32, 3), (28, 28, 1), 10
GCN_HIDDEN, GCN_CLASSES = 64, 16  # GCN_HIDDEN: bench/gnn.py's HIDDEN, which its TorchGCN uses
READOUT_IMPLS = mp.SEGMENT_SUM_IMPLS
# Full and --smoke sizes. cnn: batches; gcn: nodes, edges, features; readout: rows, features,
# segments.
SIZES = {False: {"cnn": (128, 4096), "resnet18": 256, "gcn": (100_000, 1_000_000, 128),
                 "readout": (1_000_000, 64, 64)},
         True: {"cnn": (8, 16), "resnet18": 2, "gcn": (2_000, 10_000, 128),
                "readout": (50_000, 64, 64)}}
# (substring of jax's device_kind, dense bf16 TFLOP/s, dense TF32 TFLOP/s, HBM TB/s) of the SXM
# parts; the PCIe and NVL boards of H100/H200 are slower and get 'unknown peak', as does the
# A100's bandwidth (40 and 80 GB boards differ).
PEAKS = (("H100", 989.0, 494.0, 3.35), ("H200", 989.0, 494.0, 4.8), ("A100", 312.0, 156.0, None))
SLOWER_BOARDS = ("PCIE", "NVL")
WORKER_TAG = "TORCH_ROWS "  # each line of the worker's results: this tag, then JSON


def device_peaks(device_kind: str) -> tuple[float, float, float | None] | None:
  """(bf16 TFLOP/s, TF32 TFLOP/s, HBM TB/s) of the device kind, or None."""
  kind = device_kind.upper()
  for name, bf16, tf32, hbm in PEAKS:
    if name in kind and not (name != "A100" and any(b in kind for b in SLOWER_BOARDS)):
      return bf16, tf32, hbm
  return None


def peak_tflops(device_kind: str, dtype: str) -> float | None:
  peaks = device_peaks(device_kind)
  return None if peaks is None else peaks[0] if dtype == "bfloat16" else peaks[1]


def peak_tbps(device_kind: str) -> float | None:
  peaks = device_peaks(device_kind)
  return None if peaks is None else peaks[2]


# ---------------------------------------------------------------------------------------------
# The rows: names, inputs shared by both processes (numpy, seeded), and their sizes

def planned_rows(args) -> list[dict]:
  """Every row of this run, in table order: bench, name, side (dl_jax, torch, pyg), mode."""
  rows = []
  add = lambda bench, side, mode, impl="": rows.append(
      {"bench": bench, "side": side, "mode": mode, "impl": impl, "name": " ".join(
          p for p in (bench, side, impl, "" if side == "dl_jax" else mode) if p)})
  for bench in bench_names(args):
    reference = "pyg" if bench == "gcn" else "torch"
    if bench == "readout":
      for impl in READOUT_IMPLS:
        add(bench, "dl_jax", "jit", impl)
    else:
      add(bench, "dl_jax", "jit")
    add(bench, reference, "eager", "index_add_" if bench == "readout" else "")
    add(bench, reference, "compile", "index_add_" if bench == "readout" else "")
    if bench == "readout":
      add(bench, "pyg", "eager", "global_add_pool")
  return rows


def bench_names(args) -> list[str]:
  names = []
  for bench in args.benches:
    if bench == "cnn":
      names += [f"cnn_b{b}" for b in SIZES[False]["cnn"]]
    elif bench == "resnet18":
      names += [f"resnet18_{'bf16' if d == 'bfloat16' else 'f32'}" for d in args.dtypes]
    else:
      names.append(bench)
  return names


def bench_size(bench: str, args) -> tuple[str, dict]:
  """(size as printed, parameters) of a bench at this run's size."""
  sizes = SIZES[args.smoke]
  if bench.startswith("cnn_b"):
    full = int(bench[len("cnn_b"):])
    batch = sizes["cnn"][SIZES[False]["cnn"].index(full)]
    return f"batch {batch}", {"batch": batch}
  if bench.startswith("resnet18"):
    dtype = "bfloat16" if bench.endswith("bf16") else "float32"
    return f"batch {args.batch_size}", {"batch": args.batch_size, "dtype": dtype}
  if bench == "gcn":
    n, e, f = sizes["gcn"]
    return f"N={n} E={e} F={f}", {"nodes": n, "edges": e, "features": f}
  n, f, s = sizes["readout"]
  return f"{n} x {f} -> {s}", {"rows": n, "features": f, "segments": s}


def image_batch(batch: int, shape, seed: int) -> tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng(seed)
  images = rng.standard_normal((batch, *shape), dtype=np.float32)
  return images, rng.integers(0, NUM_CLASSES, batch).astype(np.int32)


def gcn_inputs(p: dict, seed: int) -> dict:
  """A random undirected graph (edges // 2 pairs, both directions stored; no self-loops:
  there dl_jax's and PyG's normalizations agree), features, labels, numpy GCN weights."""
  rng = np.random.default_rng(seed)
  n, e, f = p["nodes"], p["edges"], p["features"]
  a = rng.integers(0, n, e // 2)
  b = (a + rng.integers(1, n, e // 2)) % n
  senders, receivers = np.concatenate([a, b]).astype(np.int32), np.concatenate([b, a]).astype(
      np.int32)
  glorot = lambda i, o: rng.uniform(-1, 1, (i, o)).astype(np.float32) * np.sqrt(6 / (i + o))
  weights = [(glorot(f, GCN_HIDDEN), 0.1 * rng.standard_normal(GCN_HIDDEN, dtype=np.float32)),
             (glorot(GCN_HIDDEN, GCN_CLASSES),
              0.1 * rng.standard_normal(GCN_CLASSES, dtype=np.float32))]
  return {"features": rng.standard_normal((n, f), dtype=np.float32), "senders": senders,
          "receivers": receivers, "labels": rng.integers(0, GCN_CLASSES, n).astype(np.int32),
          "weights": weights}


def readout_inputs(p: dict, seed: int) -> tuple[np.ndarray, np.ndarray]:
  """Rows [n, features] float32 and sorted segment ids [n] int32."""
  rng = np.random.default_rng(seed)
  ids = np.sort(rng.integers(0, p["segments"], p["rows"])).astype(np.int32)
  return rng.standard_normal((p["rows"], p["features"]), dtype=np.float32), ids


def readout_bytes(p: dict) -> float:
  """The least memory traffic of the read-out: rows and ids read once, the sums written."""
  return 4.0 * (p["rows"] * p["features"] + p["rows"] + p["segments"] * p["features"])


def time_calls(call, warmup: int, steps: int, sync) -> tuple[float, float, object]:
  """(seconds of the first call, seconds per timed call, last result)."""
  start = time.perf_counter()
  out = call()
  sync(out)
  first = time.perf_counter() - start
  for _ in range(warmup):
    out = call()
  sync(out)
  start = time.perf_counter()
  for _ in range(steps):
    out = call()
  sync(out)
  return first, (time.perf_counter() - start) / steps, out


# ---------------------------------------------------------------------------------------------
# dl_jax rows (this process)

def jax_optimizer(name: str) -> optax.GradientTransformation:
  return optax.sgd(0.1, momentum=0.9) if name == "sgd" else optax.adam(1e-3)


_STATES = {}  # network -> its initial train state


def initial_state(bench: str, args, dtype: str = "float32"):
  """The train state of a CNN or ResNet bench on the default device. One jitted init per
  network (the parameters are float32 whatever the compute dtype), from an rbg key: its init
  compiles in half the time of the default threefry's."""
  network = "cnn" if bench.startswith("cnn") else "resnet"
  if network == "cnn":
    model, tx, shape = MnistCNN(), optax.adam(1e-3), CNN_SHAPE
  else:
    model = registry.build(RESNET, dtype=dtype, num_classes=NUM_CLASSES)
    tx, shape = jax_optimizer(args.optimizer), RESNET_SHAPE
  if network not in _STATES:
    make = jax.jit(create_train_state, static_argnums=(0, 1, 3))
    _STATES[network] = make(model, tx, jax.random.key(args.seed, impl="rbg"), shape)
  # Fresh buffers for each bench: the timed steps donate them.
  return jax.tree.map(lambda x: x.copy(), _STATES[network]).replace(apply_fn=model.apply)


def cost(compiled) -> dict:
  """XLA's cost analysis of a compiled program: flops and bytes accessed (None if absent)."""
  try:
    analysis = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except  # not every backend implements it
    analysis = None
  if isinstance(analysis, (list, tuple)):  # older jax: one dict per computation
    analysis = analysis[0] if analysis else {}
  analysis = analysis or {}
  pick = lambda key: float(analysis[key]) if analysis.get(key, 0) > 0 else None
  return {"flops": pick("flops"), "bytes": pick("bytes accessed")}


def jax_rows(bench: str, args) -> list[dict]:
  """The dl_jax row(s) of one bench: ms, first-call seconds, value, work."""
  _, p = bench_size(bench, args)
  sync = jax.block_until_ready
  if bench == "readout":
    x, ids = map(jax.device_put, readout_inputs(p, args.seed))
    rows, sums = [], {}
    for impl in READOUT_IMPLS:
      fn = jax.jit(lambda x, ids, impl=impl: mp.segment_sum(x, ids, p["segments"], impl))
      first, seconds, out = time_calls(lambda fn=fn: fn(x, ids), args.warmup, args.steps, sync)
      sums[impl] = np.asarray(out, np.float64)
      rows.append({"impl": impl, "ms": 1e3 * seconds, "first_s": first,
                   "value": float(sums[impl].sum()), "bytes": readout_bytes(p),
                   "setup": f"jit segment_sum(impl={impl!r})"})
    scale = max(1.0, float(np.abs(sums["scatter"]).max()))
    for row in rows:
      row["max_rel_diff"] = float(np.abs(sums[row["impl"]] - sums["scatter"]).max() / scale)
    return rows
  if bench == "gcn":
    data = gcn_inputs(p, args.seed)
    model = registry.build("gcn", num_classes=GCN_CLASSES, hidden=GCN_HIDDEN, num_layers=2)
    graph = jraph.GraphsTuple(
        nodes=jnp.asarray(data["features"]), edges=None, senders=jnp.asarray(data["senders"]),
        receivers=jnp.asarray(data["receivers"]), globals=None,
        n_node=jnp.asarray([p["nodes"]], jnp.int32), n_edge=jnp.asarray([p["edges"]], jnp.int32))
    params = {f"GCN_{i}": {"W": {"kernel": jnp.asarray(w)}, "bias": jnp.asarray(b)}
              for i, (w, b) in enumerate(data["weights"])}
    shapes = jax.eval_shape(model.init, jax.random.key(0), graph)["params"]
    if jax.tree.map(np.shape, shapes) != jax.tree.map(np.shape, params):
      raise ValueError(f"GCN parameter tree: {jax.tree.map(np.shape, shapes)}")
    labels = jnp.asarray(data["labels"])

    def loss(params, graph, labels):
      logits = model.apply({"params": params}, graph, deterministic=True)
      return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    start = time.perf_counter()
    step = jax.jit(jax.value_and_grad(loss)).lower(params, graph, labels).compile()
    compile_s = time.perf_counter() - start
    first, seconds, (value, _) = time_calls(lambda: step(params, graph, labels), args.warmup,
                                            args.steps, sync)
    return [{"ms": 1e3 * seconds, "first_s": compile_s + first, "value": float(value),
             "setup": "jit value_and_grad", **cost(step)}]
  dtype = p.get("dtype", "float32")
  state = initial_state(bench, args, dtype)
  images, labels = image_batch(p["batch"], CNN_SHAPE if bench.startswith("cnn") else
                               RESNET_SHAPE, args.seed)
  batch = {"image": jax.device_put(images), "label": jax.device_put(labels)}
  start = time.perf_counter()
  step = jax.jit(train_step, donate_argnums=0).lower(state, batch).compile()
  compile_s = time.perf_counter() - start
  holder = {"state": state}

  def call():
    holder["state"], metrics = step(holder["state"], batch)
    return metrics["loss"]

  first, seconds, value = time_calls(call, args.warmup, args.steps, sync)
  return [{"ms": 1e3 * seconds, "first_s": compile_s + first, "value": float(value),
           "dtype": dtype,
           "setup": f"jit train step, donated state, {dtype}", **cost(step)}]


# ---------------------------------------------------------------------------------------------
# PyTorch and PyG rows, in a subprocess (JAX_PLATFORMS=cpu there: jax only initializes weights)

def _reason(e: BaseException) -> str:
  text = str(e).strip().splitlines()
  return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def torch_bench(bench: str, args, torch, device, backend: str, modes: tuple[str, ...]) -> dict:
  """{"rows": [...], "errors": {row name: reason}}: the torch rows of one bench in `modes`."""
  _, p = bench_size(bench, args)
  sync = (lambda _: torch.cuda.synchronize()) if device.type == "cuda" else (lambda _: None)
  rows, errors = [], {}
  names = {(r["side"], r["mode"], r["impl"]): r["name"] for r in planned_rows(args)
           if r["bench"] == bench}

  def run(side, mode, impl, make, setup):
    """Times one row; `make(compiled)` returns the no-argument call."""
    if mode not in modes:
      return
    name = names[(side, mode, impl)]
    try:
      call = make(mode == "compile")
      first, seconds, out = time_calls(call, args.warmup, args.steps, sync)
      rows.append({"side": side, "mode": mode, "impl": impl, "ms": 1e3 * seconds,
                   "first_s": first, "value": float(out.double().sum()), "setup": setup})
    except Exception as e:  # pylint: disable=broad-except  # costs this row only
      errors[name] = _reason(e)
    finally:
      if mode == "compile":
        torch._dynamo.reset()  # pylint: disable=protected-access

  compile_setup = f"torch.compile(backend={backend!r})"
  compile_fn = lambda fn: torch.compile(fn, backend=backend, dynamic=False)
  if bench == "readout":
    x_np, ids_np = readout_inputs(p, args.seed)
    x, ids = torch.from_numpy(x_np).to(device), torch.from_numpy(ids_np).long().to(device)
    size = (p["segments"], p["features"])
    index_add = lambda x, ids: x.new_zeros(size).index_add_(0, ids, x)
    run("torch", "eager", "index_add_", lambda c: (lambda: index_add(x, ids)),
        "index_add_ into zeros")
    run("torch", "compile", "index_add_",
        lambda c: (lambda fn=compile_fn(index_add): fn(x, ids)), compile_setup)
    try:
      from torch_geometric.nn import global_add_pool  # pylint: disable=g-import-not-at-top
      run("pyg", "eager", "global_add_pool",
          lambda c: (lambda: global_add_pool(x, ids, p["segments"])), "global_add_pool")
    except Exception as e:  # pylint: disable=broad-except  # no torch_geometric
      if "eager" in modes:
        errors[names[("pyg", "eager", "global_add_pool")]] = _reason(e)
    return {"rows": rows, "errors": errors}

  if bench == "gcn":
    try:
      import gnn  # pylint: disable=g-import-not-at-top  # bench/gnn.py: needs torch_geometric
    except Exception as e:  # pylint: disable=broad-except
      for mode in modes:
        errors[names[("pyg", mode, "")]] = _reason(e)
      return {"rows": rows, "errors": errors}
    data = gcn_inputs(p, args.seed)
    x = torch.from_numpy(data["features"]).to(device)
    edge_index = torch.from_numpy(np.stack([data["senders"], data["receivers"]]).astype(
        np.int64)).to(device)
    y = torch.from_numpy(data["labels"].astype(np.int64)).to(device)

    def make(compiled):
      module = gnn.TorchGCN(p["features"], GCN_CLASSES)
      with torch.no_grad():
        for conv, (w, b) in zip((module.conv1, module.conv2), data["weights"]):
          conv.lin.weight.copy_(torch.from_numpy(w.T.copy()))
          conv.bias.copy_(torch.from_numpy(b))
      module = module.to(device).eval()  # eval: no dropout; gradients still flow
      net = compile_fn(module) if compiled else module

      def call():
        module.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(x, edge_index), y)
        loss.backward()
        return loss.detach()
      return call

    run("pyg", "eager", "", make, "GCNConv x 2, forward + backward")
    run("pyg", "compile", "", make, compile_setup)
    return {"rows": rows, "errors": errors}

  import train_step as twins  # pylint: disable=g-import-not-at-top  # bench/train_step.py
  cnn = bench.startswith("cnn")
  dtype = p.get("dtype", "float32")
  bf16 = dtype == "bfloat16"
  state = jax.device_get(initial_state(bench, args, "float32"))
  variables = {"params": state.params, "batch_stats": state.batch_stats}
  images, labels = image_batch(p["batch"], CNN_SHAPE if cnn else RESNET_SHAPE, args.seed)
  memory_format = torch.channels_last if bf16 else torch.contiguous_format
  x = torch.tensor(np.transpose(images, (0, 3, 1, 2)).copy()).to(device,
                                                                  memory_format=memory_format)
  y = torch.tensor(labels, dtype=torch.long, device=device)

  def make(compiled):
    model = twins.make_twin("cnn" if cnn else RESNET, in_channels=(CNN_SHAPE if cnn else
                                                                   RESNET_SHAPE)[-1])
    model.load(variables)
    model = model.to(device, memory_format=memory_format).train()
    net = compile_fn(model) if compiled else model
    opt = (torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
           if not cnn and args.optimizer == "sgd" else torch.optim.Adam(model.parameters(),
                                                                        lr=1e-3))

    def call():
      opt.zero_grad(set_to_none=True)
      with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = torch.nn.functional.cross_entropy(net(x), y)
      loss.backward()
      opt.step()
      return loss.detach()
    return call

  setup = ("channels_last, autocast bf16" if bf16 else "NCHW" + (
      ", TF32 allowed" if device.type == "cuda" else ""))
  run("torch", "eager", "", make, f"eager, {setup}")
  run("torch", "compile", "", make, f"{compile_setup}, {setup}")
  return {"rows": rows, "errors": errors}


def torch_worker(args) -> int:
  """Prints WORKER_TAG + JSON lines: {"info"}, then {"bench", "rows", "errors"} per bench and
  pass (eager rows, then compiled rows)."""
  import torch  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))  # train_step.py, gnn.py
  info = {"torch": torch.__version__, "cuda": torch.version.cuda}
  try:
    import torch_geometric  # pylint: disable=g-import-not-at-top
    info["torch_geometric"] = torch_geometric.__version__
  except Exception as e:  # pylint: disable=broad-except
    info["torch_geometric"] = f"unavailable ({_reason(e)})"
  backend = "inductor"
  if torch.cuda.is_available():
    device = torch.device("cuda")
    info["device"] = torch.cuda.get_device_name(0)
    torch.backends.cudnn.benchmark = True  # autotunes in the warm-up, as XLA at compile time
  elif args.smoke:
    device, info["device"], backend = torch.device("cpu"), "cpu", "aot_eager"
  else:
    info["error"] = (f"torch {torch.__version__} sees no CUDA device (a CPU build?): torch rows "
                     "skipped (--smoke runs them on the CPU)")
    print(WORKER_TAG + json.dumps({"info": info}), flush=True)
    return 0
  torch.set_float32_matmul_precision("high")  # TF32 matmuls, as XLA's default precision
  info["compile_backend"] = backend
  print(WORKER_TAG + json.dumps({"info": info}), flush=True)  # first: kept through a timeout
  # Every eager row first: a slow `torch.compile` (or a timeout there) costs compiled rows only.
  for modes in (("eager",),) + ((("compile",),) if not args.no_compile else ()):
    for bench in bench_names(args):
      result = torch_bench(bench, args, torch, device, backend, modes)
      print(WORKER_TAG + json.dumps({"bench": bench, **result}), flush=True)
  return 0


def run_torch(args) -> dict:
  """{"rows": {bench: [...]}, "errors": {row name: reason}, "info": {...}} from the worker;
  rows it did not reach are in "errors" with the reason."""
  result = {"rows": {}, "errors": {}, "info": {}}
  start = time.perf_counter()
  if args.no_torch:
    result["info"]["error"] = "--no_torch"
    return result
  if importlib.util.find_spec("torch") is None:
    result["info"]["error"] = "torch is not importable here"
    return result
  command = [sys.executable, str(pathlib.Path(__file__).resolve()), "--_torch_worker",
             "--benches", ",".join(args.benches), "--batch_size", str(args.batch_size),
             "--steps", str(args.steps), "--warmup", str(args.warmup), "--optimizer",
             args.optimizer, "--dtypes", ",".join(args.dtypes), "--seed", str(args.seed)]
  command += ["--smoke"] * args.smoke + ["--no_compile"] * args.no_compile
  # OMP_WAIT_POLICY: torch's CPU threads (the smoke run) must not spin; see bench/train_step.py.
  env = {"OMP_WAIT_POLICY": "PASSIVE", **os.environ, "JAX_PLATFORMS": "cpu"}
  # Its own process group: on a timeout the group goes (inductor's compile workers too), and the
  # rows it printed so far are kept.
  worker = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
  try:
    stdout, stderr = worker.communicate(timeout=args.torch_timeout)
    why = None
    if worker.returncode:
      tail = " | ".join((stderr or stdout).strip().splitlines()[-3:])
      why = f"torch subprocess exit {worker.returncode}: {tail[-600:]}"
  except subprocess.TimeoutExpired:
    os.killpg(worker.pid, signal.SIGKILL)
    stdout, _ = worker.communicate()
    why = f"the torch subprocess ran over --torch_timeout={args.torch_timeout:g} s"
  for line in stdout.splitlines():
    if line.startswith(WORKER_TAG):
      part = json.loads(line[len(WORKER_TAG):])
      if "info" in part:
        result["info"].update(part["info"])
      else:
        result["rows"].setdefault(part["bench"], []).extend(part["rows"])
        result["errors"].update(part["errors"])
  if why:
    result["info"]["error"] = why
  result["info"]["subprocess_s"] = time.perf_counter() - start
  return result


# ---------------------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
  def error(self, message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def parse_args(argv=None):
  parser = _Parser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--benches", default=",".join(BENCHES), help="comma-separated")
  parser.add_argument("--steps", type=int, default=None, help="timed calls (100; smoke 2)")
  parser.add_argument("--warmup", type=int, default=None, help="untimed calls (10; smoke 1)")
  parser.add_argument("--batch_size", type=int, default=None, help="ResNet-18 (256; smoke 2)")
  parser.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd",
                      help="ResNet-18: sgd (momentum 0.9, lr 0.1) or adam (lr 1e-3)")
  parser.add_argument("--dtypes", default="float32,bfloat16", help="ResNet-18 compute dtypes")
  parser.add_argument("--smoke", action="store_true",
                      help="tiny sizes, for checking the script (torch may run on the CPU)")
  parser.add_argument("--no_torch", action="store_true", help="dl_jax rows only")
  parser.add_argument("--no_compile", action="store_true", help="no torch.compile rows")
  parser.add_argument("--torch_timeout", type=float, default=None,
                      help="seconds the torch subprocess may take (360; smoke 120)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default="gpu_bench.json", help="the JSON results file")
  parser.add_argument("--_torch_worker", action="store_true", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  full = {"steps": 100, "warmup": 10, "batch_size": SIZES[False]["resnet18"],
          "torch_timeout": 360.0}
  smoke = {"steps": 2, "warmup": 1, "batch_size": SIZES[True]["resnet18"], "torch_timeout": 120.0}
  for key, value in (smoke if args.smoke else full).items():
    if getattr(args, key) is None:
      setattr(args, key, value)
  args.dtypes = [d for d in args.dtypes.split(",") if d]
  args.benches = [b for b in args.benches.split(",") if b]
  if min(args.steps, args.batch_size) < 1 or args.warmup < 0 or args.torch_timeout <= 0:
    parser.error("--steps, --batch_size and --torch_timeout must be positive, --warmup >= 0")
  bad = [d for d in args.dtypes if d not in ("float32", "bfloat16")]
  if bad or not args.dtypes:
    parser.error(f"--dtypes: {bad[0] if bad else 'empty'}; accepted: float32, bfloat16")
  bad = [b for b in args.benches if b not in BENCHES]
  if bad or not args.benches:
    parser.error(f"--benches: {bad[0] if bad else 'empty'}; accepted: {', '.join(BENCHES)}")
  return args


def finish_rows(args, kind: str, jax_results: dict, torch_result: dict) -> list[dict]:
  """The planned rows filled in: ms, rate, fraction of peak, ratios, or the reason for none."""
  rows = planned_rows(args)
  if args.no_compile:
    rows = [r for r in rows if r["mode"] != "compile"]
  torch_error = torch_result["info"].get("error")
  for row in rows:
    bench = row["bench"]
    row["size"], _ = bench_size(bench, args)
    if row["side"] == "dl_jax":
      found = [r for r in jax_results[bench] if r.get("impl", "") == row["impl"]]
    else:
      found = [r for r in torch_result["rows"].get(bench, [])
               if (r["side"], r["mode"], r["impl"]) == (row["side"], row["mode"], row["impl"])]
    if found:
      row.update({k: v for k, v in found[0].items() if k not in ("side", "mode", "impl")})
    else:
      row["ms"] = None
      row["error"] = torch_result["errors"].get(row["name"]) or torch_error or "not run"
  for row in rows:
    work = next((r for r in rows if r["bench"] == row["bench"] and r["side"] == "dl_jax"), {})
    row["tflops"] = row["tbps"] = row["fraction_of_peak"] = row["peak"] = None
    row["ratio_jax_over_eager"] = row["ratio_jax_over_compile"] = None
    if row["ms"] is None:
      continue
    if row["bench"] in ("gcn", "readout"):
      nbytes = row.get("bytes") or work.get("bytes")
      row["tbps"] = nbytes / row["ms"] * 1e-9 if nbytes else None
      row["peak"] = peak_tbps(kind)
      rate = row["tbps"]
    else:
      flops = work.get("flops")
      row["tflops"] = flops / row["ms"] * 1e-9 if flops else None
      row["peak"] = peak_tflops(kind, work.get("dtype", "float32"))
      rate = row["tflops"]
    row["fraction_of_peak"] = rate / row["peak"] if rate and row["peak"] else None
    if row["side"] == "dl_jax":
      reference = "pyg" if row["bench"] == "gcn" else "torch"
      for mode in ("eager", "compile"):
        other = next((r for r in rows if r["bench"] == row["bench"] and r["side"] == reference
                      and r["mode"] == mode and r["ms"]), None)
        if other:
          row[f"ratio_jax_over_{mode}"] = row["ms"] / other["ms"]
    if not math.isfinite(row["value"]):
      print(f"warning: {row['name']}: the value is {row['value']}", file=sys.stderr)
  return rows


def print_table(rows: list[dict]) -> None:
  header = (f"{'row':<34} {'size':<24} {'ms':>9} {'rate':>11} {'of peak':>16} {'jax/eager':>9} "
            f"{'jax/compile':>11} {'value':>11}")
  print(header)
  print("-" * len(header))
  bench = None
  for row in rows:
    if bench is not None and row["bench"] != bench:
      print()
    bench = row["bench"]
    if row["ms"] is None:
      print(f"{row['name']:<34} {row['size']:<24} unavailable: {row['error']}"[:200])
      continue
    if row["tflops"]:
      rate = f"{row['tflops']:.3g} TF/s"
    elif row["tbps"]:
      rate = f"{1e3 * row['tbps']:.4g} GB/s"
    else:
      rate = "-"
    if row["fraction_of_peak"] is not None:
      unit = "TF" if row["tflops"] else "TB/s"
      of_peak = f"{100 * row['fraction_of_peak']:.1f}% of {row['peak']:g}{unit}"
    else:
      of_peak = "unknown peak" if rate != "-" else "-"
    ratio = lambda v: f"{v:.2f}" if v else "-"
    print(f"{row['name']:<34} {row['size']:<24} {row['ms']:>9.3f} {rate:>11} {of_peak:>16} "
          f"{ratio(row['ratio_jax_over_eager']):>9} {ratio(row['ratio_jax_over_compile']):>11} "
          f"{row['value']:>11.5g}")


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
  jax_results = {bench: jax_rows(bench, args) for bench in bench_names(args)}
  rows = finish_rows(args, kind, jax_results, torch_result)

  info = torch_result["info"]
  torch_text = (f"torch {info['torch']} (cuda {info.get('cuda')}, device "
                f"{info.get('device', '-')}, torch.compile backend "
                f"{info.get('compile_backend', '-')}), torch_geometric "
                f"{info.get('torch_geometric', '-')}" if "torch" in info else "no torch rows")
  print(f"{kind} ({device.platform}), jax {jax.__version__}; {torch_text}; Python "
        f"{platform.python_version()}")
  opt = "SGD momentum 0.9, lr 0.1" if args.optimizer == "sgd" else "Adam lr 1e-3"
  print(f"CNN of 5.3.1 (Adam lr 1e-3) and ResNet-18 ({RESNET}, {opt}) train steps; GCN forward + "
        f"backward (hidden {GCN_HIDDEN}, {GCN_CLASSES} classes); read-out sums; {args.warmup} "
        f"warm-up + {args.steps} timed calls per row")
  if args.smoke:
    print("SMOKE: sizes reduced, timings not meaningful (the full sizes: CNN batch 128 and 4096, "
          "ResNet-18 batch 256, GCN 100000 nodes / 1000000 edges / 128 features, read-out "
          "1000000 x 64 -> 64)")
  if device.platform == "cpu":
    print("JAX runs on the CPU: the GPU figures are not measured by this run")
  print()
  print_table(rows)
  print("\njax/eager, jax/compile: dl_jax ms / the reference's ms in this run (torch; PyG for "
        "gcn; < 1: dl_jax faster). rate: FLOPs (XLA's count of the dl_jax program) or bytes "
        "(gcn: XLA's estimate; readout: the least traffic) per second; peaks: dense bf16 or "
        "TF32 TFLOP/s, HBM TB/s of the device kind. value: the final loss, or the sum of the "
        "read-out.")
  for row in rows:
    if row["side"] == "dl_jax" and row.get("max_rel_diff") is not None:
      print(f"{row['name']}: max |sum - scatter's| / max |sum| = {row['max_rel_diff']:.1e}")
  firsts = ", ".join(f"{r['name']} {r['first_s']:.1f}" for r in rows if r["ms"] is not None)
  print(f"first calls (compiling; not timed), s: {firsts}")
  if "subprocess_s" in info:
    print(f"the torch subprocess took {info['subprocess_s']:.0f} s")
  if info.get("error"):
    print(f"torch: {info['error']}")
  total = time.perf_counter() - wall
  print(f"total {total:.0f} s")

  result = {"device_kind": kind, "platform": device.platform, "jax": jax.__version__,
            "torch": info, "python": platform.python_version(), "smoke": args.smoke,
            "sizes": {b: bench_size(b, args)[1] for b in bench_names(args)},
            "steps": args.steps, "warmup": args.warmup, "optimizer": args.optimizer,
            "total_s": total, "rows": rows}
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=2) + "\n")
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
