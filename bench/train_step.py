"""Train-step time of dl_jax vs PyTorch (eager and `torch.compile`) on this machine's CPU.

Models (same architecture, same initial weights, same random batch, same loss and optimizer:
softmax cross-entropy (eq. 5.22-5.24), Adam lr 1e-3), chosen with `--models`:
- mlp: 784-256-256-10 with ReLU (section 2.5), `dl_jax.models.mlp.MLP`;
- cnn: the network of section 5.3.1 (figure 5.23), in several variants of its convolution
  (`dl_jax.nn.conv.Conv`, `impl`) and max-pool (`dl_jax.nn.pool.max_pool`, `impl`), so that the
  table shows where the time goes. 'xla/xla' computes what `flax.linen.Conv` + `flax.linen.max_pool`
  do; 'model' is `dl_jax.models.cnn.MnistCNN` with its default impls;
- resnet18_small, googlenet_small: the section 5.3.2 networks for 28x28x1 and 10 classes, as
  `dl_jax.models.registry.build(name, conv_impl=...)` makes them (a row per `--conv_impls`
  value: 'auto', the default, and 'xla', XLA's own convolutions), in train mode: batch norm on
  the batch statistics, dropout on, and for GoogLeNet its two auxiliary classifiers with loss
  weight 0.3 (`train_step`'s `aux_loss_weight`). The PyTorch twins below are written layer by
  layer from the model files (BN eps as there, torch momentum 0.1 == flax momentum 0.9);
- lstm_classifier, gru_classifier: the recurrent classifiers of sequential MNIST (LSTM 130 and
  GRU 150 units, about 70k parameters, `dl_jax.models.recurrent`) on 784 steps of one pixel,
  against `torch.nn.LSTM` / `torch.nn.GRU` (the same gate order; the GRU's reset gate applied
  after the recurrent product in both) and a `Linear` head. Same loss and optimizer, no clipping.

The dl_jax initial variables are copied into the PyTorch twin (conv kernels HWIO -> OIHW, dense
kernels (in, out) -> (out, in), batch norm scale/bias/mean/var); before any timing, both must give
the same logits on the batch in eval mode and, for the batch-norm models, in train mode (batch
statistics; dropout off for that check): the max |difference| is printed and more than 1e-3 stops
the benchmark. The parameter counts must agree too.

dl_jax runs its jitted train step (`dl_jax.tasks.image_classification.train_step`, state donated);
PyTorch runs `model(x)`, `cross_entropy`, `backward()`, `Adam.step()` eagerly, and again with the
model wrapped in `torch.compile` (default mode; forward and backward compiled, the Adam step
eager as in the eager row). The first steps, which compile (XLA; dynamo + inductor), are excluded
from the table and their time printed apart. When `torch.compile` fails here (e.g. no C++
compiler), the reason is printed and that column left empty. Each variant is warmed up, then timed
step by step (blocking on the result) in interleaved rounds, so that load from other processes
affects all variants alike; the table gives the median over all timed steps, images/s from it, and
the ratios dl_jax / torch eager and dl_jax / torch.compile (< 1: dl_jax faster). Both use one
thread per allowed core; PyTorch's OpenMP threads wait passively (OMP_WAIT_POLICY=PASSIVE unless
set otherwise), since spinning beside XLA's threads on the same cores distorts its times.

`--layers` first prints, per layer of the CNN, the time of the forward pass, the input gradient
(eq. 5.14) and the kernel gradient (eq. 5.13) for each conv impl and PyTorch, and of the
max-pool forward/backward.

Usage: python bench/train_step.py [--models mlp,cnn] [--steps 100] [--batch_size 128] [--rounds 5]
  [--warmup 10] [--layers] [--cores N] [--no_compile]
  [--variants model,folded/slices,custom_vjp/slices,xla/reshape,xla/xla,im2col/auto]
  [--conv_impls auto,xla]
e.g. ./launch.sh bench train_step --models resnet18_small,googlenet_small --steps 20 --rounds 4
Needs PyTorch: pip install -e .[bench]
"""

import argparse
import copy
import os
import platform
import sys
import time


if __name__ == "__main__":
  import _cores  # pylint: disable=g-import-not-at-top
  _cores.pin_cores_from_argv()
  # PyTorch's OpenMP threads spin between parallel regions by default. Beside XLA's threads in
  # this process, on as many cores as threads (and other load), that spinning made the eager
  # MLP step 70x slower here (278 ms vs 4 ms, batch 128, 2 cores). Set before torch loads;
  # export OMP_WAIT_POLICY=ACTIVE to measure the spinning default.
  os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # pylint: disable=g-import-not-at-top

try:
  import torch
except ImportError:
  torch = None

import jax
import jax.numpy as jnp
import optax

from dl_jax.models import registry
from dl_jax.models.cnn import MnistCNN
from dl_jax.models.googlenet import INCEPTION
from dl_jax.models.mlp import MLP
from dl_jax.nn.conv import conv2d, resolve_impl
from dl_jax.nn.pool import max_pool
from dl_jax.tasks.image_classification import create_train_state, train_step

DEFAULT_VARIANTS = "model,folded/slices,custom_vjp/slices,xla/reshape,xla/xla"
MODELS = ("mlp", "cnn", "resnet18_small", "googlenet_small", "lstm_classifier",
          "gru_classifier")
REGISTERED = ("resnet18_small", "googlenet_small")  # built by name through the registry
SEQUENCE = ("lstm_classifier", "gru_classifier")  # sequential MNIST: 784 steps of one pixel
INPUT_SHAPE = (28, 28, 1)


def input_shape(name: str) -> tuple[int, ...]:
  return (784, 1) if name in SEQUENCE else INPUT_SHAPE
AUX_LOSS_WEIGHT = 0.3  # train_step's default: the auxiliary classifiers' weight (GoogLeNet)
TOLERANCE = 1e-3  # max |logits dl_jax - logits torch| accepted before timing


def build_jax(name: str, variant: str | None, batch: dict, seed: int):
  """Returns (model, describe, step closure, initial variables) for one dl_jax model."""
  if name == "mlp":
    model, desc = MLP(hidden=(256, 256), num_classes=10), "dl_jax.models.mlp.MLP"
  elif name in REGISTERED:
    model = registry.build(name, conv_impl=variant or "auto")
    desc = f"registry.build({name!r}, conv_impl={variant or 'auto'!r}), train mode"
  elif name in SEQUENCE:
    model, desc = registry.build(name), f"registry.build({name!r}), 784 steps of one pixel"
  elif variant == "model":
    model, desc = MnistCNN(), "dl_jax.models.cnn.MnistCNN with its defaults"
  else:
    conv_impl, pool_impl = variant.split("/")
    model = MnistCNN(conv_impl=conv_impl, pool_impl=pool_impl)
    desc = (f"MnistCNN: conv impl={conv_impl} ({resolve_impl(conv_impl)}), "
            f"max_pool impl={pool_impl}")
  state = create_train_state(model, optax.adam(1e-3), jax.random.key(seed),
                             input_shape(name))
  variables0 = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
  step = jax.jit(train_step, donate_argnums=0)
  holder = {"state": state}

  def run():
    holder["state"], metrics = step(holder["state"], batch)
    return metrics["loss"]

  return model, desc, lambda: float(jax.block_until_ready(run())), variables0


# ---------------------------------------------------------------------------------------------
# The PyTorch twins (NCHW) and the copy of the dl_jax variables into them

_Module = torch.nn.Module if torch else object


def _copy(dst, src, what: str) -> None:
  """dst (a torch tensor) <- src (an array of exactly its shape)."""
  src = np.array(src, np.float32)  # a writable copy
  if tuple(dst.shape) != src.shape:
    raise ValueError(f"{what}: torch shape {tuple(dst.shape)}, dl_jax shape {src.shape}")
  with torch.no_grad():
    dst.copy_(torch.from_numpy(src))


def _load_conv(conv, p, what: str) -> None:
  """Conv kernel HWIO -> OIHW (and the bias, which both must have or both lack)."""
  _copy(conv.weight, np.transpose(np.asarray(p["kernel"]), (3, 2, 0, 1)), f"{what}.kernel")
  if (conv.bias is None) != ("bias" not in p):
    raise ValueError(f"{what}: bias in torch {conv.bias is not None}, in dl_jax {'bias' in p}")
  if conv.bias is not None:
    _copy(conv.bias, p["bias"], f"{what}.bias")


def _load_dense(fc, p, what: str) -> None:
  """Dense kernel (in, out) -> Linear weight (out, in)."""
  _copy(fc.weight, np.asarray(p["kernel"]).T, f"{what}.kernel")
  _copy(fc.bias, p["bias"], f"{what}.bias")


def _load_bn(bn, p, stats, what: str) -> None:
  _copy(bn.weight, p["scale"], f"{what}.scale")
  _copy(bn.bias, p["bias"], f"{what}.bias")
  _copy(bn.running_mean, stats["mean"], f"{what}.mean")
  _copy(bn.running_var, stats["var"], f"{what}.var")


def _bn(channels: int, eps: float):
  # flax's momentum 0.9 (ra <- 0.9 ra + 0.1 batch) is torch's 0.1. Training normalizes with the
  # biased batch variance in both; torch's running_var takes the unbiased one, flax's the biased
  # one (a factor n / (n - 1) in the update only, n = batch x height x width).
  return torch.nn.BatchNorm2d(channels, eps=eps, momentum=0.1)


def _conv2d(cin: int, cout: int, kernel: int, stride: int = 1, bias: bool = False):
  # dl_jax pads k // 2 on every side, explicitly (not "SAME"): torch's padding=k // 2.
  return torch.nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=bias)


class TorchMLP(_Module):
  def __init__(self):
    super().__init__()
    self.fc = torch.nn.ModuleList([torch.nn.Linear(784, 256), torch.nn.Linear(256, 256),
                                   torch.nn.Linear(256, 10)])

  def forward(self, x):  # x: NHWC, as dl_jax gets it
    x = x.reshape(x.shape[0], -1)
    x = torch.relu(self.fc[0](x))
    x = torch.relu(self.fc[1](x))
    return self.fc[2](x)

  def load(self, variables):
    for i, layer in enumerate(self.fc):
      _load_dense(layer, variables["params"][f"Dense_{i}"], f"Dense_{i}")


class TorchCNN(_Module):
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

  def load(self, variables):
    params = variables["params"]
    for i, layer in enumerate(self.convs):
      _load_conv(layer, params[f"Conv_{i}"], f"Conv_{i}")
    for i, layer in enumerate(self.fc):
      _load_dense(layer, params[f"Dense_{i}"], f"Dense_{i}")


class TorchBasicBlock(_Module):
  """`dl_jax.models.resnet.ResidualBlock`, basic, v1: relu(BN(conv(relu(BN(conv x)))) + shortcut);
  shortcut conv 1x1/s + BN where the shape changes."""

  def __init__(self, cin: int, cout: int, stride: int):
    super().__init__()
    self.conv1, self.bn1 = _conv2d(cin, cout, 3, stride), _bn(cout, 1e-5)
    self.conv2, self.bn2 = _conv2d(cout, cout, 3), _bn(cout, 1e-5)
    self.project = stride != 1 or cin != cout
    if self.project:
      self.downsample_conv, self.downsample_bn = _conv2d(cin, cout, 1, stride), _bn(cout, 1e-5)

  def forward(self, x):
    shortcut = self.downsample_bn(self.downsample_conv(x)) if self.project else x
    y = torch.relu(self.bn1(self.conv1(x)))
    return torch.relu(self.bn2(self.conv2(y)) + shortcut)

  def load(self, p, s, what):
    pairs = [("conv1", "bn1"), ("conv2", "bn2")]
    if self.project:
      pairs.append(("downsample_conv", "downsample_bn"))
    for conv, bn in pairs:
      _load_conv(getattr(self, conv), p[conv], f"{what}/{conv}")
      _load_bn(getattr(self, bn), p[bn], s[bn], f"{what}/{bn}")


class TorchResNet(_Module):
  """`dl_jax.models.resnet.ResNet` with basic blocks, v1 (post-activation), in PyTorch (NCHW):
  stem conv 3x3/1 (small) or 7x7/2 + max-pool 3x3/2 pad 1 (imagenet), BN, ReLU; the stages;
  global average pool; dense. `hp`: the registry's hyper-parameters."""

  def __init__(self, hp: dict, in_channels: int = 1):
    super().__init__()
    if hp["block"] != "basic" or hp["preactivation"]:
      raise ValueError("TorchResNet is the basic-block v1 ResNet; got block="
                       f"{hp['block']!r}, preactivation={hp['preactivation']}")
    kernel, stride = (7, 2) if hp["stem"] == "imagenet" else (3, 1)
    stem = hp["stem_features"]
    self.conv1, self.bn1 = _conv2d(in_channels, stem, kernel, stride), _bn(stem, 1e-5)
    self.maxpool = torch.nn.MaxPool2d(3, 2, 1) if hp["stem"] == "imagenet" else None
    self.blocks = torch.nn.ModuleDict()
    cin = stem
    for stage, count in enumerate(hp["stage_sizes"]):
      for i in range(count):
        cout = hp["widths"][stage]
        self.blocks[f"layer{stage + 1}_{i}"] = TorchBasicBlock(
            cin, cout, 2 if stage > 0 and i == 0 else 1)
        cin = cout
    self.fc = torch.nn.Linear(cin, hp["num_classes"])

  def forward(self, x):  # x: NCHW
    x = torch.relu(self.bn1(self.conv1(x)))
    if self.maxpool is not None:
      x = self.maxpool(x)
    for block in self.blocks.values():
      x = block(x)
    return self.fc(x.mean(dim=(2, 3)))

  def load(self, variables):
    p, s = variables["params"], variables["batch_stats"]
    _load_conv(self.conv1, p["conv1"], "conv1")
    _load_bn(self.bn1, p["bn1"], s["bn1"], "bn1")
    for name, block in self.blocks.items():
      block.load(p[name], s[name], name)
    _load_dense(self.fc, p["fc"], "fc")


class TorchConvBlock(_Module):
  """`dl_jax.models.googlenet.ConvBlock`: conv (bias unless BN), [BN eps 1e-3], ReLU."""

  def __init__(self, cin: int, cout: int, kernel: int = 1, batch_norm: bool = True):
    super().__init__()
    self.conv = _conv2d(cin, cout, kernel, bias=not batch_norm)
    self.bn = _bn(cout, 1e-3) if batch_norm else None

  def forward(self, x):
    x = self.conv(x)
    return torch.relu(self.bn(x) if self.bn is not None else x)

  def load(self, p, s, what):
    _load_conv(self.conv, p["Conv_0"], f"{what}/Conv_0")
    if self.bn is not None:
      _load_bn(self.bn, p["BatchNorm_0"], s["BatchNorm_0"], f"{what}/BatchNorm_0")


class TorchInception(_Module):
  """Figure 5.28: 1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | max-pool 3x3/1 pad 1 -> 1x1, concatenated."""
  BRANCHES = ("branch1", "branch2_reduce", "branch2", "branch3_reduce", "branch3", "branch4")

  def __init__(self, cin, c1, c3r, c3, c5r, c5, pool_proj, k5: int, batch_norm: bool):
    super().__init__()
    block = lambda i, o, k=1: TorchConvBlock(i, o, k, batch_norm)
    self.branch1 = block(cin, c1)
    self.branch2_reduce, self.branch2 = block(cin, c3r), block(c3r, c3, 3)
    self.branch3_reduce, self.branch3 = block(cin, c5r), block(c5r, c5, k5)
    self.pool, self.branch4 = torch.nn.MaxPool2d(3, 1, 1), block(cin, pool_proj)

  def forward(self, x):
    return torch.cat([self.branch1(x), self.branch2(self.branch2_reduce(x)),
                      self.branch3(self.branch3_reduce(x)), self.branch4(self.pool(x))], dim=1)

  def load(self, p, s, what):
    for name in self.BRANCHES:
      getattr(self, name).load(p[name], (s or {}).get(name), f"{what}/{name}")


class TorchAuxClassifier(_Module):
  """Auxiliary head: avg-pool 5x5/3, conv 1x1 128, flatten in dl_jax's (h, w, c) order,
  dense 1024 + ReLU, dropout 0.7, dense."""

  def __init__(self, cin: int, num_classes: int, batch_norm: bool, pooled: int = 4):
    super().__init__()
    self.pool = torch.nn.AvgPool2d(5, 3)
    self.conv = TorchConvBlock(cin, 128, 1, batch_norm)
    self.fc1 = torch.nn.Linear(pooled * pooled * 128, 1024)
    self.dropout = torch.nn.Dropout(0.7)
    self.fc2 = torch.nn.Linear(1024, num_classes)

  def forward(self, x):
    x = self.conv(self.pool(x))
    x = x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
    return self.fc2(self.dropout(torch.relu(self.fc1(x))))

  def load(self, p, s, what):
    self.conv.load(p["conv"], (s or {}).get("conv"), f"{what}/conv")
    _load_dense(self.fc1, p["fc1"], f"{what}/fc1")
    _load_dense(self.fc2, p["fc2"], f"{what}/fc2")


class TorchGoogLeNet(_Module):
  """`dl_jax.models.googlenet.GoogLeNet` with the small stem (conv 3x3/1 192) in PyTorch (NCHW);
  max-pools 3x3/2 before 4a and pool4_kernel/2 before 5a with ceil_mode=True (dl_jax's
  `max_pool_ceil`). In training it returns (logits, aux1, aux2), else the logits."""

  def __init__(self, hp: dict, in_channels: int = 1):
    super().__init__()
    if hp["stem"] != "small" or hp["local_response_norm"]:
      raise ValueError("TorchGoogLeNet is the small-stem GoogLeNet without LRN; got stem="
                       f"{hp['stem']!r}, local_response_norm={hp['local_response_norm']}")
    bn, classes = hp["batch_norm"], hp["num_classes"]
    self.conv1 = TorchConvBlock(in_channels, 192, 3, bn)
    self.pool4 = torch.nn.MaxPool2d(3, 2, ceil_mode=True)
    self.pool5 = torch.nn.MaxPool2d(hp["pool4_kernel"], 2, ceil_mode=True)
    self.inceptions = torch.nn.ModuleDict()
    self.aux = torch.nn.ModuleDict()
    cin = 192
    for name, channels in INCEPTION.items():
      self.inceptions[name] = TorchInception(cin, *channels, hp["branch5x5_kernel"], bn)
      c1, _, c3, _, c5, pool_proj = channels
      cin = c1 + c3 + c5 + pool_proj
      if hp["aux_logits"] and name in ("4a", "4d"):
        self.aux["aux1" if name == "4a" else "aux2"] = TorchAuxClassifier(cin, classes, bn)
    self.dropout = torch.nn.Dropout(hp["dropout_rate"])
    self.fc = torch.nn.Linear(cin, classes)

  def forward(self, x):  # x: NCHW
    x = self.conv1(x)
    aux = []
    for name, inception in self.inceptions.items():
      if name in ("4a", "5a"):
        x = (self.pool4 if name == "4a" else self.pool5)(x)
      x = inception(x)
      head = {"4a": "aux1", "4d": "aux2"}.get(name)
      if self.training and head in self.aux:
        aux.append(self.aux[head](x))
    logits = self.fc(self.dropout(x.mean(dim=(2, 3))))
    return (logits, *aux) if aux else logits

  def load(self, variables):
    p, s = variables["params"], variables["batch_stats"]
    self.conv1.load(p["conv1"], s.get("conv1"), "conv1")
    for name, inception in self.inceptions.items():
      inception.load(p[f"inception{name}"], s.get(f"inception{name}"), f"inception{name}")
    for name, head in self.aux.items():
      head.load(p[f"{name}_head"], s.get(f"{name}_head"), f"{name}_head")
    _load_dense(self.fc, p["fc"], "fc")


class TorchSequenceClassifier(_Module):
  """`torch.nn.LSTM` or `torch.nn.GRU` (batch first) and a Linear head on the last output.

  torch adds a recurrent bias b_hh to every gate's b_ih; dl_jax has one bias per gate (and the
  GRU's b_hn, inside the reset gate's product). The other recurrent biases (the LSTM's 4H, the
  GRU's 2H) start at 0 and only duplicate b_ih: `redundant_parameters` counts them."""

  def __init__(self, cell: str, hidden: int):
    super().__init__()
    self.rnn = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](1, hidden, batch_first=True)
    self.classifier = torch.nn.Linear(hidden, 10)
    self.redundant_parameters = (4 if cell == "lstm" else 2) * hidden

  def forward(self, x):  # x: [batch, T, 1]
    out, _ = self.rnn(x)
    return self.classifier(out[:, -1])

  def load(self, variables):
    p = variables["params"]
    layer, what = p["encoder"]["layer0"], "encoder.layer0"
    _copy(self.rnn.weight_ih_l0, np.asarray(layer["input_kernel"]).T, f"{what}.input_kernel")
    _copy(self.rnn.weight_hh_l0, np.asarray(layer["recurrent_kernel"]).T,
          f"{what}.recurrent_kernel")
    _copy(self.rnn.bias_ih_l0, layer["bias"], f"{what}.bias")
    recurrent_bias = np.zeros(self.rnn.bias_hh_l0.shape, np.float32)
    if "recurrent_bias" in layer:
      recurrent_bias[-len(layer["recurrent_bias"]):] = layer["recurrent_bias"]
    _copy(self.rnn.bias_hh_l0, recurrent_bias, f"{what}.recurrent_bias")
    _load_dense(self.classifier, p["classifier"], "classifier")


def make_twin(name: str, in_channels: int = 1):
  """The PyTorch twin of dl_jax model `name` (randomly initialized; `.load(variables)` next)."""
  if name == "mlp":
    return TorchMLP()
  if name == "cnn":
    return TorchCNN()
  hp = registry.get(name).hyperparameters()
  if name in SEQUENCE:
    return TorchSequenceClassifier(name.split("_")[0], hp["hidden"])
  if name.startswith("resnet"):
    return TorchResNet(hp, in_channels)
  if name.startswith("googlenet"):
    return TorchGoogLeNet(hp, in_channels)
  raise ValueError(f"no PyTorch twin for {name!r}; accepted: {', '.join(MODELS)}")


def torch_loss(out, y):
  """Cross-entropy of the logits, plus AUX_LOSS_WEIGHT x that of each auxiliary output (as
  `train_step`); returns (loss to minimize, main cross-entropy)."""
  ce = torch.nn.functional.cross_entropy
  if isinstance(out, tuple):
    main = ce(out[0], y)
    return main + AUX_LOSS_WEIGHT * sum(ce(aux, y) for aux in out[1:]), main
  loss = ce(out, y)
  return loss, loss


def _nchw(name: str, images: np.ndarray):
  if name == "mlp" or name in SEQUENCE:
    return torch.tensor(images)
  return torch.tensor(np.transpose(images, (0, 3, 1, 2)).copy())


def build_torch(name: str, variables, images: np.ndarray, labels: np.ndarray,
                compiled: bool = False):
  """(twin with the dl_jax variables, step closure) in train mode; `compiled`: the step calls
  `torch.compile(twin)` (compiles on its first call)."""
  model = make_twin(name)
  model.load(variables)
  model.train()
  net = torch.compile(model) if compiled else model
  x, y = _nchw(name, images), torch.tensor(labels, dtype=torch.long)
  opt = torch.optim.Adam(model.parameters(), lr=1e-3)

  def run():
    opt.zero_grad(set_to_none=True)
    loss, main = torch_loss(net(x), y)
    loss.backward()
    opt.step()
    return float(main.detach())

  return model, run


def _max_diff(a, b) -> float:
  return float(np.max(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32))))


def check_twin(name: str, model, twin, variables, images: np.ndarray, seed: int) -> list[str]:
  """Prints max |logits dl_jax - logits torch| on `images`, eval mode, and for batch-norm
  models train mode (batch statistics; dropout off in both); returns the failures."""
  failures = []
  n_jax = sum(int(np.size(v)) for v in jax.tree.leaves(variables["params"]))
  n_torch = (sum(p.numel() for p in twin.parameters())
             - getattr(twin, "redundant_parameters", 0))
  if n_jax != n_torch:
    failures.append(f"{name}: {n_jax} parameters in dl_jax, {n_torch} in the torch twin")
  jax_vars = {k: v for k, v in variables.items() if v}
  x = _nchw(name, images)
  twin.eval()
  with torch.no_grad():
    want = twin(x).numpy()
  twin.train()
  got = jax.jit(lambda v, x: model.apply(v, x, train=False))(jax_vars, images)
  checks = [("eval", _max_diff(got, want))]
  if variables["batch_stats"]:
    no_dropout = registry.build(name, dropout_rate=0.0) if "dropout_rate" in (
        registry.get(name).defaults) else model
    train_twin = copy.deepcopy(twin)  # train mode moves the running statistics
    for module in train_twin.modules():
      if isinstance(module, torch.nn.Dropout):
        module.p = 0.0
    with torch.no_grad():
      out = train_twin(x)
    want = (out[0] if isinstance(out, tuple) else out).numpy()
    got, _ = jax.jit(lambda v, x: no_dropout.apply(
        v, x, train=True, rngs={"dropout": jax.random.key(seed)}, mutable=True))(jax_vars, images)
    checks.append(("train, batch statistics", _max_diff(got, want)))
  for mode, diff in checks:
    verdict = "ok" if diff <= TOLERANCE else f"FAIL (> {TOLERANCE:g})"
    print(f"{name}: {mode} logits, max |dl_jax - torch| = {diff:.2e} on {len(images)} "
          f"images, {n_jax:,} parameters: {verdict}")
    if diff > TOLERANCE:
      failures.append(f"{name}: {mode} logits differ by {diff:.3g} > {TOLERANCE:g}")
  return failures


def _first_line(e: BaseException) -> str:
  text = str(e).strip().splitlines()
  return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "cpu"


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
  impls = ("xla", "im2col", "custom_vjp", "folded")
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

  pools = ("xla", "slices", "reshape")
  print(f"\n{'max-pool 2x2':<20}" + "".join(f"{n:>24}" for n in (*pools, "torch")))
  for label, size in (("pool1 20x20x12", 20), ("pool2 6x6x12", 6)):
    x = rng.standard_normal((batch_size, size, size, 12), dtype=np.float32)
    g = rng.standard_normal((batch_size, size // 2, size // 2, 12), dtype=np.float32)
    xj, gj = jnp.asarray(x), jnp.asarray(g)
    fns = {}
    for impl in pools:
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
    cells = [f"{ms[(impl, 0)]:.2f} / {ms[(impl, 1)]:.2f}" for impl in (*pools, "torch")]
    print(f"{label:<20}" + "".join(f"{c:>24}" for c in cells))
  print()


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--models", default="mlp,cnn",
                      help=f"comma-separated, of {', '.join(MODELS)}")
  parser.add_argument("--steps", type=int, default=100, help="timed steps per variant")
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds")
  parser.add_argument("--warmup", type=int, default=10,
                      help="untimed steps per variant (after the compiling first step)")
  parser.add_argument("--variants", default=DEFAULT_VARIANTS,
                      help="CNN variants conv_impl/pool_impl, comma-separated")
  parser.add_argument("--conv_impls", default="auto,xla",
                      help="conv_impl of resnet18_small and googlenet_small, comma-separated: "
                      "a row each ('auto': dl_jax.nn.conv's Eigen convolutions on the CPU)")
  parser.add_argument("--no_compile", action="store_true", help="no torch.compile column")
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
  models = [m for m in args.models.split(",") if m]
  unknown = [m for m in models if m not in MODELS]
  if unknown or not models:
    print(f"--models: unknown {unknown[0] if unknown else 'empty'}; accepted: "
          f"{', '.join(MODELS)}", file=sys.stderr)
    return 2

  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  torch.set_num_threads(cores)  # XLA's CPU client uses one thread per allowed core
  if os.getloadavg()[0] > 0.5 * cores:
    print(f"warning: load average {os.getloadavg()[0]:.2f} on {cores} cores: other processes "
          "are running, timings will be noisy (PyTorch's threads suffer most)", file=sys.stderr)
  if args.layers:
    profile_layers(args.batch_size, args.rounds, args.seed)

  # (label, who, describe, run); who: "dl_jax", "torch" or "compile". The rows alternate in
  # every round. first_s: (label, who) -> seconds of the first (compiling) step, not timed.
  entries, first_s, compile_errors = [], {}, {}
  for model_name in models:
    rng = np.random.default_rng(args.seed)  # the same batch for every model of one shape
    images = rng.random((args.batch_size, *input_shape(model_name)), dtype=np.float32)
    labels = rng.integers(0, 10, args.batch_size).astype(np.int32)
    batch = {"image": jnp.asarray(images), "label": jnp.asarray(labels)}
    variants = {"cnn": args.variants.split(","),
                **{name: args.conv_impls.split(",") for name in REGISTERED}}.get(model_name,
                                                                                  [None])
    for j, variant in enumerate(variants):
      model, desc, run, variables = build_jax(model_name, variant, batch, args.seed)
      label = model_name if variant is None else f"{model_name} {variant}"
      start = time.perf_counter()
      loss_jax = run()
      first_s[(label, "dl_jax")] = time.perf_counter() - start
      entries.append((label, "dl_jax", desc, run))
      if j:
        continue
      twin, torch_run = build_torch(model_name, variables, images, labels)
      failures = check_twin(model_name, model, twin, variables, images, args.seed)
      if failures:
        print("error: the PyTorch twin is not the dl_jax model; not timing:\n  "
              + "\n  ".join(failures), file=sys.stderr)
        return 1
      loss_torch = torch_run()  # first step, same weights and data
      note = " (dropout masks differ)" if model_name.startswith("googlenet") else ""
      print(f"{model_name}: first-step loss dl_jax {loss_jax:.6f}, torch {loss_torch:.6f}{note}")
      entries.append((model_name, "torch", "eager", torch_run))
      if args.no_compile:
        continue
      try:
        if not hasattr(torch, "compile"):
          raise RuntimeError(f"torch {torch.__version__} has no torch.compile")
        _, compiled_run = build_torch(model_name, variables, images, labels, compiled=True)
        start = time.perf_counter()
        compiled_run()
        first_s[(model_name, "compile")] = time.perf_counter() - start
        compiled_run()  # untimed too, in case it compiles again
      except Exception as e:  # pylint: disable=broad-except  # inductor: no compiler, ...
        compile_errors[model_name] = _first_line(e)
        torch._dynamo.reset()  # pylint: disable=protected-access  # drop what it half-built
        print(f"{model_name}: torch.compile failed, no compile column: "
              f"{compile_errors[model_name]}", file=sys.stderr)
        continue
      entries.append((model_name, "compile", "torch.compile", compiled_run))

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
        f"({jax.default_backend()}), torch {torch.__version__}; CPU: {cpu_model()}")
  print(f"threads: torch.get_num_threads()={torch.get_num_threads()}, "
        f"cores visible to XLA={cores}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}; "
        f"batch {args.batch_size}, "
        f"{per_round * args.rounds} timed steps per row in {args.rounds} interleaved rounds "
        f"after {args.warmup} warm-up steps, load average {load_before[0]:.2f} -> "
        f"{load_after[0]:.2f}")
  print()
  cols = (("dl_jax", "dl_jax"), ("torch", "torch eager"), ("compile", "torch.compile"))
  header = (f"{'model':<22}" + "".join(f" {title + ' ms':>17} {'img/s':>7}" for _, title in cols)
            + f" {'jax/eager':>9} {'jax/compile':>11}")
  print(header)
  print("-" * len(header))
  img_s = lambda ms: f"{1e3 * args.batch_size / ms:>7.0f}"
  for label, who, desc, _ in entries:
    if who != "dl_jax":
      continue
    model_name = label.split()[0]
    jax_ms = med[(label, "dl_jax")]
    row = f"{label:<22}"
    for key, _ in cols:
      ms = med.get((label if key == "dl_jax" else model_name, key))
      row += f" {ms:>17.2f} {img_s(ms)}" if ms else f" {'-':>17} {'-':>7}"
    for key, width in (("torch", 9), ("compile", 11)):
      ms = med.get((model_name, key))
      row += f" {jax_ms / ms:>{width}.2f}" if ms else f" {'-':>{width}}"
    print(row)
  print("\nratios = dl_jax ms / torch ms (< 1: dl_jax faster); img/s = batch / median step time. "
        "The first (compiling) step of each row is excluded; it took, in s:")
  for (label, who), seconds in first_s.items():
    what = "dl_jax jit" if who == "dl_jax" else "torch.compile"
    print(f"  {label:<22} {what:<14} {seconds:7.1f}")
  for model_name, why in compile_errors.items():
    print(f"  {model_name:<22} torch.compile unavailable: {why}")
  if any(label.startswith("cnn") for label, *_ in entries):
    print("CNN variants are conv_impl/pool_impl:")
    for label, who, desc, _ in entries:
      if who == "dl_jax" and label.startswith("cnn"):
        print(f"  {label.split()[1]:<18} {desc}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
