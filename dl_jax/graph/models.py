"""Graph models (section 6.5): a node classifier and a graph classifier, built by name.

    model = build("gcn", num_classes=7)                    # node classification (Cora-like)
    logits = model.apply(variables, graph, deterministic=False, rngs={"dropout": key})  # [N, 7]
    # "sage_lstm" also reads rngs["neighbours"] (its neighbour order; a fixed seed without it)
    model = build("graph_gin", num_classes=2)              # graph classification (MUTAG-like)
    logits = model.apply(variables, padded_batch)          # [n_graph, 2]; mask the padding graphs

Both are pure functions of (variables, graph[, rngs]); the loss over a padded batch belongs to
the caller, with `dl_jax.graph.graphs.masked_mean` and the node or graph mask.
"""

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jraph

from dl_jax.errors import ConfigError
from dl_jax.graph import layers as gl
from dl_jax.graph import message_passing as mp

GraphsTuple = jraph.GraphsTuple

NODE_MODELS = ("gcn", "gat", "sage_mean", "sage_maxpool", "sage_lstm", "ggnn", "gin", "mlp")
GRAPH_LAYERS = ("gin", "gcn", "deepsets")
GRAPH_MODELS = tuple(f"graph_{kind}" for kind in GRAPH_LAYERS)


def _check_kind(kind: str, accepted: tuple[str, ...], what: str) -> None:
  if kind not in accepted:
    raise ConfigError(f"unknown {what} {kind!r}; accepted: {', '.join(accepted)}")


class NodeClassifier(nn.Module):
  """`num_layers` graph layers of one `kind`, logits per node [N, num_classes].

  Dropout (rate `dropout`) on the input of every layer (and, for GAT, on the attention
  coefficients, as in Velickovic et al.); ReLU between layers (ELU for GAT). The last layer
  maps to the classes, as in the GCN and GAT papers:
  - "gcn": GCN(hidden) x (num_layers - 1), GCN(num_classes);
  - "gat": GAT with `heads` heads of hidden // heads features (concatenated), then one head
    of num_classes features;
  - "sage_mean", "sage_maxpool", "sage_lstm": GraphSAGE with that aggregator;
  - "gin": GIN layers (MLP width hidden);
  - "mlp": Dense layers on each node, no edges (the baseline);
  - "ggnn": Dense(hidden) embedding, GatedGNN(hidden) with num_layers steps, Dense head.
  """
  kind: str
  num_classes: int
  hidden: int = 64
  num_layers: int = 2
  dropout: float = 0.5
  heads: int = 8
  max_neighbours: int = 16  # sage_lstm

  def _layer(self, width: int, last: bool) -> nn.Module:
    kind = self.kind
    if kind == "gcn":
      return gl.GCN(width)
    if kind == "gat":
      if last:
        return gl.GAT(width, num_heads=1, concat=False, attention_dropout=self.dropout)
      if self.hidden % self.heads:
        raise ConfigError(f"gat: hidden={self.hidden} must be a multiple of heads={self.heads}")
      return gl.GAT(width // self.heads, num_heads=self.heads, attention_dropout=self.dropout)
    if kind.startswith("sage_"):
      return gl.GraphSAGE(width, kind[len("sage_"):], max_neighbours=self.max_neighbours)
    if kind == "gin":
      return gl.GIN(width, hidden=self.hidden)
    return gl.MLPLayer(width)

  @nn.compact
  def __call__(self, graph: GraphsTuple, deterministic: bool = True,
               return_hidden: bool = False) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Logits [N, num_classes]; with `return_hidden`, (logits, hidden): hidden [N, F] is the
    input of the last layer before its dropout (after the activation; for "ggnn" the GatedGNN
    state; with num_layers=1 the input features)."""
    _check_kind(self.kind, NODE_MODELS, "node model")
    if self.num_layers < 1:
      raise ConfigError(f"num_layers={self.num_layers} must be >= 1")
    drop = lambda g: g._replace(nodes=nn.Dropout(self.dropout)(g.nodes, deterministic))
    if self.kind == "ggnn":
      graph = drop(graph)
      graph = graph._replace(nodes=nn.Dense(self.hidden, name="embed")(graph.nodes))
      graph = gl.GatedGNN(self.hidden, num_steps=self.num_layers)(graph)
      hidden = graph.nodes
      logits = nn.Dense(self.num_classes, name="head")(drop(graph).nodes)
      return (logits, hidden) if return_hidden else logits
    activation = nn.elu if self.kind == "gat" else nn.relu
    for i in range(self.num_layers):
      last = i == self.num_layers - 1
      hidden = graph.nodes
      graph = self._layer(self.num_classes if last else self.hidden, last)(drop(graph),
                                                                          deterministic)
      if not last:
        graph = graph._replace(nodes=activation(graph.nodes))
    return (graph.nodes, hidden) if return_hidden else graph.nodes


class GraphClassifier(nn.Module):
  """Graph classification: `num_layers` x (layer, ReLU), a read-out per graph, an MLP head.

  `kind`: "gin" (GIN layers, Xu et al.), "gcn", or "deepsets" (DeepSetsEquivariant layers: each
  graph as the set of its nodes, edges ignored). The read-out (`readout`: sum, mean, max) is
  `message_passing.graph_readout`, so padding nodes never reach a real graph. The head is
  Dense(hidden) - ReLU - dropout - Dense(num_classes); returns logits [n_graph, num_classes].
  """
  kind: str
  num_classes: int
  hidden: int = 64
  num_layers: int = 3
  readout: str = "sum"
  dropout: float = 0.0

  @nn.compact
  def __call__(self, graph: GraphsTuple, deterministic: bool = True) -> jax.Array:
    _check_kind(self.kind, GRAPH_LAYERS, "graph model layer")
    make = {"gin": gl.GIN, "gcn": gl.GCN, "deepsets": gl.DeepSetsEquivariant}[self.kind]
    for _ in range(self.num_layers):
      graph = make(self.hidden)(graph)
      graph = graph._replace(nodes=nn.relu(graph.nodes))
    pooled = mp.graph_readout(graph, self.readout)
    pooled = nn.relu(nn.Dense(self.hidden, name="head_0")(pooled))
    pooled = nn.Dropout(self.dropout)(pooled, deterministic)
    return nn.Dense(self.num_classes, name="head_1")(pooled)


def build(name: str, **kwargs: Any) -> nn.Module:
  """The model called `name`: one of NODE_MODELS (a `NodeClassifier` of that kind) or
  GRAPH_MODELS ("graph_gin", "graph_gcn", "graph_deepsets": a `GraphClassifier`).

  Raises:
    ConfigError: for an unknown name or keyword argument, naming it and the accepted ones.
  """
  if name in NODE_MODELS:
    cls, fixed = NodeClassifier, {"kind": name}
  elif name in GRAPH_MODELS:
    cls, fixed = GraphClassifier, {"kind": name[len("graph_"):]}
  else:
    raise ConfigError(f"unknown graph model {name!r}; accepted: "
                      f"{', '.join(NODE_MODELS + GRAPH_MODELS)}")
  accepted = [f.name for f in dataclasses.fields(cls)
              if f.name not in ("kind", "parent", "name")]
  unknown = sorted(set(kwargs) - set(accepted))
  if unknown:
    raise ConfigError(f"unknown argument {unknown[0]!r} for graph model {name!r}; accepted: "
                      f"{', '.join(accepted)}")
  if "num_classes" not in kwargs:
    raise ConfigError(f"graph model {name!r} needs num_classes (a positive int)")
  return cls(**fixed, **kwargs)


def count_params(variables) -> int:
  """The number of scalars in `variables` (e.g. `variables["params"]`)."""
  return sum(int(x.size) for x in jax.tree.leaves(variables))
