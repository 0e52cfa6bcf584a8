"""Graph models (section 6.5): node classifiers and graph classifiers on `jraph.GraphsTuple`.

    model = registry.build("gcn", num_classes=7)           # node classification (Cora-like)
    logits = model.apply(variables, graph, deterministic=False, rngs={"dropout": key})  # [N, 7]
    # "sage_lstm" also reads rngs["neighbours"] (its neighbour order; a fixed seed without it)
    model = registry.build("graph_gin", num_classes=2)     # graph classification (MUTAG-like)
    logits = model.apply(variables, padded_batch)          # [n_graph, 2]; mask the padding graphs

Both are pure functions of (variables, graph[, rngs]); the loss over a padded batch belongs to
the caller, with `dl_jax.graph.graphs.masked_mean` and the node or graph mask. The layers are
`dl_jax.graph.layers`. Every node model has the hyper-parameters of `NodeClassifier` (`heads`
is read by "gat" only, `max_neighbours` by "sage_lstm"), every graph model those of
`GraphClassifier`, so one config's `model_kwargs` serves every model of its family.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph

from dl_jax.errors import ConfigError
from dl_jax.graph import layers as gl
from dl_jax.graph import message_passing as mp
from dl_jax.models.spec import GRAPH_FEATURES, ModelSpec
from dl_jax.symmetry import vocabulary as sym

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
  - "gcn": GCN(hidden) x (num_layers - 1), GCN(num_classes) (section 6.5.4);
  - "gat": GAT with `heads` heads of hidden // heads features (concatenated), then one head
    of num_classes features (section 6.5.3);
  - "sage_mean", "sage_maxpool", "sage_lstm": GraphSAGE with that aggregator (section 6.5.1);
  - "gin": GIN layers (MLP width hidden);
  - "mlp": Dense layers on each node, no edges (the baseline);
  - "ggnn": Dense(hidden) embedding, GatedGNN(hidden) with num_layers steps, Dense head
    (section 6.5.2).
  """
  kind: str
  num_classes: int
  hidden: int = 64
  num_layers: int = 2
  dropout: float = 0.5
  heads: int = 8
  max_neighbours: int = 16  # sage_lstm
  dtype: Any = None  # compute dtype (None: from inputs and parameters); parameters float32

  def _layer(self, width: int, last: bool) -> nn.Module:
    kind, precision = self.kind, {"dtype": self.dtype, "param_dtype": jnp.float32}
    if kind == "gcn":
      return gl.GCN(width, **precision)
    if kind == "gat":
      if last:
        return gl.GAT(width, num_heads=1, concat=False, attention_dropout=self.dropout,
                      **precision)
      if self.hidden % self.heads:
        raise ConfigError(f"gat: hidden={self.hidden} must be a multiple of heads={self.heads}")
      return gl.GAT(width // self.heads, num_heads=self.heads, attention_dropout=self.dropout,
                    **precision)
    if kind.startswith("sage_"):
      return gl.GraphSAGE(width, kind[len("sage_"):], max_neighbours=self.max_neighbours,
                          **precision)
    if kind == "gin":
      return gl.GIN(width, hidden=self.hidden, **precision)
    return gl.MLPLayer(width, **precision)

  @nn.compact
  def __call__(self, graph: GraphsTuple, deterministic: bool = True,
               return_hidden: bool = False) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Logits [N, num_classes]; with `return_hidden`, (logits, hidden): hidden [N, F] is the
    input of the last layer before its dropout (after the activation; for "ggnn" the GatedGNN
    state; with num_layers=1 the input features)."""
    _check_kind(self.kind, NODE_MODELS, "node model")
    if self.num_layers < 1:
      raise ConfigError(f"num_layers={self.num_layers} must be >= 1")
    dense = lambda width, name: nn.Dense(width, dtype=self.dtype, param_dtype=jnp.float32,
                                         name=name)
    drop = lambda g: g._replace(nodes=nn.Dropout(self.dropout)(g.nodes, deterministic))
    if self.kind == "ggnn":
      graph = drop(graph)
      graph = graph._replace(nodes=dense(self.hidden, "embed")(graph.nodes))
      graph = gl.GatedGNN(self.hidden, num_steps=self.num_layers, dtype=self.dtype,
                          param_dtype=jnp.float32)(graph)
      hidden = graph.nodes
      logits = dense(self.num_classes, "head")(drop(graph).nodes)
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
  `message_passing.graph_readout` (an invariant global pooling A, section 4.4), so padding nodes
  never reach a real graph. The head is Dense(hidden) - ReLU - dropout - Dense(num_classes);
  returns logits [n_graph, num_classes].
  """
  kind: str
  num_classes: int
  hidden: int = 64
  num_layers: int = 3
  readout: str = "sum"
  dropout: float = 0.0
  dtype: Any = None  # compute dtype (None: from inputs and parameters); parameters float32

  @nn.compact
  def __call__(self, graph: GraphsTuple, deterministic: bool = True) -> jax.Array:
    _check_kind(self.kind, GRAPH_LAYERS, "graph model layer")
    make = {"gin": gl.GIN, "gcn": gl.GCN, "deepsets": gl.DeepSetsEquivariant}[self.kind]
    dense = lambda width, name: nn.Dense(width, dtype=self.dtype, param_dtype=jnp.float32,
                                         name=name)
    for _ in range(self.num_layers):
      graph = make(self.hidden, dtype=self.dtype, param_dtype=jnp.float32)(graph)
      graph = graph._replace(nodes=nn.relu(graph.nodes))
    pooled = mp.graph_readout(graph, self.readout)
    pooled = nn.relu(dense(self.hidden, "head_0")(pooled))
    pooled = nn.Dropout(self.dropout)(pooled, deterministic)
    return dense(self.num_classes, "head_1")(pooled)


def _node_params(F: int, H: int, C: int) -> dict[str, int]:
  """Parameters of the 2-layer node models: F input features, H hidden, C classes."""
  return {
      "gcn": F * H + H + H * C + C,
      "gat": F * H + 2 * H + H + H * C + 2 * C + C,
      "sage_mean": 2 * F * H + H + 2 * H * C + C,
      "sage_maxpool": 2 * (F * H + H) + H * H + 2 * (H * C + C) + C * C,
      "sage_lstm": (4 * F * H + 4 * (H * H + H) + F * H + H + H * H)
      + (4 * H * C + 4 * (C * C + C) + H * C + C + C * C),
      "ggnn": F * H + H + H * H + (6 * H * H + 4 * H) + H * C + C,
      "gin": F * H + H + H * H + H + H * H + H + H * C + C + 2,
      "mlp": F * H + H + H * C + C,
  }


def _graph_params(F: int, H: int, C: int) -> dict[str, int]:
  """Parameters of the 3-layer graph models (layer kinds): F input features, H hidden, C
  classes."""
  head = H * H + H + H * C + C  # head_0, head_1
  return {
      "gin": (F * H + H + H * H + H + 1) + 2 * (2 * (H * H + H) + 1) + head,
      "gcn": (F * H + H) + 2 * (H * H + H) + head,
      "deepsets": (2 * F * H + H) + 2 * (2 * H * H + H) + head,
  }


_NODE_PARAMS = _node_params(GRAPH_FEATURES, 64, 7)  # with the defaults on the example graphs
_GRAPH_PARAMS = _graph_params(GRAPH_FEATURES, 64, 2)
_NODE_DEFAULTS = {"num_classes": 7, "hidden": 64, "num_layers": 2, "dropout": 0.5,
                  "heads": 8, "max_neighbours": 16, "dtype": "float32"}
_GRAPH_DEFAULTS = {"num_classes": 2, "hidden": 64, "num_layers": 3, "readout": "sum",
                   "dropout": 0.0, "dtype": "float32"}
_NODE_DESCRIPTIONS = {
    "gcn": "GCN node classifier (Kipf & Welling 2017, section 6.5.4)",
    "gat": "GAT node classifier, 8 heads (Velickovic et al. 2018, section 6.5.3)",
    "sage_mean": "GraphSAGE node classifier, mean aggregator (section 6.5.1)",
    "sage_maxpool": "GraphSAGE node classifier, max-pool aggregator (section 6.5.1)",
    "sage_lstm": "GraphSAGE node classifier, LSTM over a random neighbour order (section 6.5.1;"
                 " not permutation-equivariant)",
    "ggnn": "Gated GNN node classifier, one GRU shared by the steps (section 6.5.2)",
    "gin": "GIN node classifier (Xu et al. 2019; eq. 6.3 with sum aggregation)",
    "mlp": "per-node MLP that ignores the edges (the baseline)",
}

SPECS = tuple(
    ModelSpec(
        name=name, family="node", factory=functools.partial(NodeClassifier, kind=name),
        defaults=_NODE_DEFAULTS, param_count=_NODE_PARAMS[name],
        symmetries=() if name == "sage_lstm" else (sym.PERMUTATION_EQUIVARIANT,),
        description=_NODE_DESCRIPTIONS[name])
    for name in NODE_MODELS
) + tuple(
    ModelSpec(
        name=f"graph_{kind}", family="graph",
        factory=functools.partial(GraphClassifier, kind=kind), defaults=_GRAPH_DEFAULTS,
        param_count=_GRAPH_PARAMS[kind], symmetries=(sym.PERMUTATION_INVARIANT,),
        description=f"graph classifier: 3 {kind.upper() if kind != 'deepsets' else 'DeepSets'} "
                    "layers, sum read-out, MLP head (section 6.5)")
    for kind in GRAPH_LAYERS
)
