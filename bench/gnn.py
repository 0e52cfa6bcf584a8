"""GCN and GAT on the WordNet "cora" subgraph: dl_jax against PyTorch Geometric, same process.

The setting of Kipf & Welling (GCN) and Velickovic et al. (GAT) as in `experiments/configs/
gnn_wordnet.py`: 2 layers, GCN hidden 64, GAT 8 heads x 8 features (ELU), dropout 0.5 on the input
of both layers, Adam lr 0.01 with L2 weight decay 5e-4 on every parameter (PyTorch's Adam
`weight_decay`, `optax.add_decayed_weights` before Adam), 200 full-batch epochs, cross-entropy on
the 300 training nodes; reported: the test accuracy at the best-validation epoch (ties: lower
validation loss), mean +- std over the seeds, and the final-epoch one.

Identical starting points: for each seed the PyG model is initialised by PyG (Glorot-uniform
weights, zero biases, Glorot attention vectors) and its weights are copied into the dl_jax
parameters, so the two sides start from the same numbers. What still differs: the dropout masks
(different generators), the order of floating-point sums in the scatter-adds, and PyG's
`GCNConv` / `GATConv` internals (dl_jax's GCN normalises per edge, as PyG's gcn_norm does; both
add the self loops inside the layer and recompute the normalisation every step, PyG `cached`
left at False). GAT attention dropout is 0 on both sides.

Timing: one full-batch training step (forward, backward, Adam) per epoch; dl_jax runs one jitted
step with the state donated, PyG runs eagerly; the two alternate epoch by epoch, so that load
from other processes hits both alike; the median over the epochs after `--warmup` is reported.
Features are dense binary bags of words (3,006 x 1,433 float32) on both sides: PyG multiplies
them densely too.

Usage: python bench/gnn.py [--quick] [--seeds 3] [--epochs 200] [--models gcn,gat]
  [--torch_threads N]
Needs PyTorch Geometric: pip install -e .[bench]
"""

import argparse
import functools
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from torch_geometric.nn import GATConv, GCNConv

from dl_jax.data import graphs as graph_data
from dl_jax.models import registry
from dl_jax.tasks import node_classification as node_train

LR, WEIGHT_DECAY, DROPOUT, HIDDEN, HEADS = 0.01, 5e-4, 0.5, 64, 8
RNG_IMPL = "rbg"


class TorchGCN(torch.nn.Module):

  def __init__(self, num_features, num_classes):
    super().__init__()
    self.conv1, self.conv2 = GCNConv(num_features, HIDDEN), GCNConv(HIDDEN, num_classes)

  def forward(self, x, edge_index):
    x = F.dropout(x, DROPOUT, self.training)
    x = F.relu(self.conv1(x, edge_index))
    x = F.dropout(x, DROPOUT, self.training)
    return self.conv2(x, edge_index)


class TorchGAT(torch.nn.Module):

  def __init__(self, num_features, num_classes):
    super().__init__()
    self.conv1 = GATConv(num_features, HIDDEN // HEADS, heads=HEADS)
    self.conv2 = GATConv(HIDDEN, num_classes, heads=1, concat=False)

  def forward(self, x, edge_index):
    x = F.dropout(x, DROPOUT, self.training)
    x = F.elu(self.conv1(x, edge_index))
    x = F.dropout(x, DROPOUT, self.training)
    return self.conv2(x, edge_index)


def torch_to_params(name: str, module: torch.nn.Module) -> dict:
  """The PyG weights as a dl_jax parameter tree (kernels transposed to [in, out])."""
  t = lambda p: jnp.asarray(p.detach().numpy())
  params = {}
  for i, conv in enumerate((module.conv1, module.conv2)):
    layer = {"W": {"kernel": t(conv.lin.weight).T}, "bias": t(conv.bias)}
    if name == "gat":
      layer["a_sender"], layer["a_receiver"] = t(conv.att_src)[0], t(conv.att_dst)[0]
    params[f"{name.upper()}_{i}"] = layer
  return params


def accuracy_and_loss(logits: np.ndarray, labels: np.ndarray, mask: np.ndarray):
  logits = logits[mask] - logits[mask].max(-1, keepdims=True)
  log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  loss = -log_p[np.arange(mask.sum()), labels[mask]].mean()
  return float((logits.argmax(-1) == labels[mask]).mean()), float(loss)


class Selection:
  """Test accuracy at the best-validation epoch (ties: lower validation loss)."""

  def __init__(self, data):
    self.data, self.best = data, (-1.0, np.inf, 0.0)
    self.final = 0.0

  def update(self, logits):
    d = self.data
    val = accuracy_and_loss(logits, d.labels, d.val_mask)
    test, _ = accuracy_and_loss(logits, d.labels, d.test_mask)
    if val[0] > self.best[0] or (val[0] == self.best[0] and val[1] < self.best[1]):
      self.best = (val[0], val[1], test)
    self.final = test


def run_seed(name: str, data, seed: int, epochs: int, warmup: int):
  torch.manual_seed(seed)
  module = (TorchGCN if name == "gcn" else TorchGAT)(data.num_features, data.num_classes)
  optimizer = torch.optim.Adam(module.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
  x = torch.from_numpy(data.features)
  edge_index = torch.from_numpy(np.stack([data.senders, data.receivers]).astype(np.int64))
  y = torch.from_numpy(data.labels.astype(np.int64))
  train_mask = torch.from_numpy(data.train_mask)

  model = registry.build(name, num_classes=data.num_classes, hidden=HIDDEN, num_layers=2,
                       dropout=DROPOUT, heads=HEADS)
  config = type("C", (), {"optimizer": "adam", "learning_rate": LR,
                          "weight_decay": WEIGHT_DECAY})
  tx = node_train.make_optimizer(config)
  graph = jax.device_put(data.graph())
  params = torch_to_params(name, module)
  reference = jax.tree.map(np.shape, model.init(jax.random.PRNGKey(0), graph)["params"])
  assert jax.tree.map(np.shape, params) == reference, "parameter trees differ"
  key = jax.random.key_data(jax.random.key(seed, impl=RNG_IMPL))
  batch = {"graph": graph, "labels": jnp.asarray(data.labels), "mask": jnp.asarray(data.train_mask)}

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def jax_step(params, opt_state, step, batch):
    return node_train.train_step_one(model, tx, RNG_IMPL, params, opt_state, key, step, batch)

  jax_logits = jax.jit(lambda p, g: model.apply({"params": p}, g, deterministic=True))
  state = (params, tx.init(params))
  sel_jax, sel_torch = Selection(data), Selection(data)
  times = {"dl_jax": [], "pyg": []}
  for epoch in range(1, epochs + 1):
    t0 = time.perf_counter()
    p, o, _ = jax_step(*state, epoch, batch)
    jax.block_until_ready(p)
    times["dl_jax"].append(time.perf_counter() - t0)
    state = (p, o)

    t0 = time.perf_counter()
    module.train()
    optimizer.zero_grad()
    out = module(x, edge_index)
    loss = F.cross_entropy(out[train_mask], y[train_mask])
    loss.backward()
    optimizer.step()
    times["pyg"].append(time.perf_counter() - t0)

    sel_jax.update(np.asarray(jax_logits(state[0], graph)))
    module.eval()
    with torch.no_grad():
      sel_torch.update(module(x, edge_index).numpy())
  median = {k: float(np.median(v[warmup:])) for k, v in times.items()}
  return ({"dl_jax": sel_jax.best[2], "pyg": sel_torch.best[2]},
          {"dl_jax": sel_jax.final, "pyg": sel_torch.final}, median)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true", help="2 seeds x 50 epochs")
  parser.add_argument("--seeds", type=int, default=3)
  parser.add_argument("--epochs", type=int, default=200)
  parser.add_argument("--warmup", type=int, default=10)
  parser.add_argument("--models", default="gcn,gat")
  parser.add_argument("--torch_threads", type=int, default=0,
                      help="torch intra-op threads (0: torch's default)")
  args = parser.parse_args()
  if args.torch_threads:
    torch.set_num_threads(args.torch_threads)
  if args.quick:
    args.seeds, args.epochs = 2, 50
  data = graph_data.load_wordnet("cora", split_seed=0)
  print(f"WordNet cora: {data.num_nodes} nodes, {data.num_edges} directed edges, "
        f"{data.num_features} features, {data.num_classes} classes, "
        f"{data.train_mask.sum()}/{data.val_mask.sum()}/{data.test_mask.sum()} train/val/test")
  print(f"{platform.processor() or platform.machine()}, jax {jax.__version__} "
        f"({jax.devices()[0].device_kind}), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); {args.seeds} seeds x {args.epochs} epochs")
  header = (f"{'model':5} {'side':7} {'test acc @best val':>19} {'final test acc':>15} "
            f"{'ms/epoch':>9}")
  print(header)
  for name in args.models.split(","):
    best, final, ms = {"dl_jax": [], "pyg": []}, {"dl_jax": [], "pyg": []}, {"dl_jax": [],
                                                                            "pyg": []}
    for seed in range(args.seeds):
      b, f, t = run_seed(name, data, seed, args.epochs, args.warmup)
      for side in best:
        best[side].append(b[side])
        final[side].append(f[side])
        ms[side].append(1000 * t[side])
    for side in ("dl_jax", "pyg"):
      print(f"{name:5} {side:7} {100 * np.mean(best[side]):11.1f} +- "
            f"{100 * np.std(best[side]):3.1f}"
            f" {100 * np.mean(final[side]):8.1f} +- {100 * np.std(final[side]):3.1f}"
            f" {np.median(ms[side]):9.2f}")
    gap = 100 * (np.mean(best["dl_jax"]) - np.mean(best["pyg"]))
    ratio = np.median(ms["dl_jax"]) / np.median(ms["pyg"])
    print(f"{name:5} accuracy gap dl_jax - PyG: {gap:+.1f} points; time ratio dl_jax / PyG: "
          f"{ratio:.2f}x")


if __name__ == "__main__":
  main()
