"""Graph and set layers (sections 6.4-6.5, and DeepSets of section 4.4) as `flax.linen` modules.

Convention: a layer is called as `layer(graph, deterministic=True)` on a `jraph.GraphsTuple`
with node features `nodes` [N, F] and returns the same GraphsTuple with new `nodes` [N, F'];
senders, receivers, edges, globals and the counts pass through unchanged. The graph may be a
batch and may be padded (`dl_jax.graph.graphs`): every layer only mixes a node with the nodes
that send edges to it (or, for DeepSets, with the nodes of its own graph), so padding never
reaches real nodes. Exceptions, which return arrays: `DeepSetsInvariant` (one row per graph or
set), and the DeepSets layers also take sets as arrays [B, n, F].

Randomness is explicit: dropout draws from the "dropout" rng collection when `deterministic`
is False; the GraphSAGE-LSTM neighbour order draws from the "neighbours" collection when given,
otherwise from its fixed `seed`. With the same variables, input and rngs the output is the same.

Edge direction: an edge j -> i carries a message from sender j to receiver i (see
`dl_jax.graph.graphs`); store an undirected graph with both directions.

Precision: every layer keeps its parameters in `param_dtype` (float32) and computes in `dtype`
(None: from the inputs and parameters, flax's rule); sums over edges and nodes accumulate in at
least float32 (`message_passing.segment_sum`).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph

from dl_jax.errors import ConfigError
from dl_jax.graph import message_passing as mp
from dl_jax.symmetry import blueprint as bp

GraphsTuple = jraph.GraphsTuple
SAGE_AGGREGATORS = ("mean", "maxpool", "lstm")


def _dense(layer: nn.Module, features: int, **kwargs) -> nn.Dense:
  """A dense layer with the precision of `layer` (its `dtype` and `param_dtype`)."""
  return nn.Dense(features, dtype=layer.dtype, param_dtype=layer.param_dtype, **kwargs)


def _inputs(layer: nn.Module, x: jax.Array) -> jax.Array:
  """Node features in the compute dtype of `layer` (unchanged when it is None)."""
  return x if layer.dtype is None else x.astype(layer.dtype)


class GCN(nn.Module):
  """Graph convolution of Kipf & Welling (2017), the first-order spectral GNN of section 6.5.4:

      X' = D^-1/2 (A + I) D^-1/2 X W + b.

  Implemented per edge: the message of edge j -> i is (X W)_j / sqrt(d_out(j) d_in(i)), plus the
  self term (X W)_i / sqrt(d_out(i) d_in(i)), with d_in / d_out = in- / out-degree + 1 (the
  self-loop). On an undirected graph (both directions stored) d_in = d_out = D and this is the
  formula above exactly. On a directed graph it is D_in^-1/2 (A + I) D_out^-1/2 with
  D_in = diag(row sums of A + I) and D_out = diag(column sums), as `jraph.GraphConvolution`
  normalizes. Multi-edges count with their multiplicity; do not store self-loops (A + I adds
  them; a stored one would count twice).
  """
  features: int
  use_bias: bool = True
  dtype: Any = None  # compute dtype; None: from inputs and parameters
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, graph: GraphsTuple, deterministic: bool = True) -> GraphsTuple:
    del deterministic
    h = _dense(self, self.features, use_bias=False, name="W")(graph.nodes)
    d_in, d_out = mp.degrees(graph, mp.accumulation_dtype(h.dtype))
    d_in, d_out = d_in + 1, d_out + 1
    s, r = graph.senders, graph.receivers
    coefficient = jax.lax.rsqrt(d_out[s] * d_in[r]).astype(h.dtype)
    out = mp.segment_sum(coefficient[:, None] * h[s], r, h.shape[0])
    out = out + jax.lax.rsqrt(d_out * d_in).astype(h.dtype)[:, None] * h
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
      out = out + bias.astype(h.dtype)
    return graph._replace(nodes=out)


class _MaskedLSTMStep(nn.Module):
  """One LSTM step over a batch of sequences; rows whose step is not `valid` keep their state."""
  width: int
  dtype: Any = None
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, carry, inputs):
    x, valid = inputs
    new, _ = nn.OptimizedLSTMCell(self.width, dtype=self.dtype, param_dtype=self.param_dtype,
                                  name="cell")(carry, x)
    return jax.tree.map(lambda a, b: jnp.where(valid[:, None], a, b), new, carry), None


class GraphSAGE(nn.Module):
  """GraphSAGE (Hamilton et al. 2017, section 6.5.1): x_i' = W_1 x_i + W_2 AGG_{j in N(i)} x_j + b.

  Aggregators (with mean, the update of section 6.5.1 with a learned W_2):
  - "mean": the mean of the neighbours (0 without neighbours);
  - "maxpool": max_j ReLU(W_pool x_j + b_pool), element-wise (0 without neighbours);
  - "lstm": an LSTM run over the neighbours in a random order; its last hidden state. The order
    is a random ranking of the node ids drawn from a PRNG key (the "neighbours" rng collection,
    else `jax.random.PRNGKey(seed)`); each node's neighbours are sorted by their rank. This is
    order-dependent by design: relabeling the nodes changes the ranks, hence the output (it is
    not permutation-equivariant; the tests use it as the negative control). The order does
    not depend on how the edges are stored, and padding leaves it unchanged. Only the first
    `max_neighbours` of each ordered neighbourhood are read, GraphSAGE's fixed-size sample.
  """
  features: int
  aggregator: str = "mean"
  pool_features: int | None = None  # W_pool width ("maxpool") or LSTM size; default features
  max_neighbours: int = 16
  seed: int = 0
  dtype: Any = None  # compute dtype; None: from inputs and parameters
  param_dtype: Any = jnp.float32

  def _lstm(self, x: jax.Array, graph: GraphsTuple, width: int) -> jax.Array:
    x, n, e = jnp.asarray(x), x.shape[0], graph.senders.shape[0]
    s, r = jnp.asarray(graph.senders), jnp.asarray(graph.receivers)
    key = (self.make_rng("neighbours") if self.has_rng("neighbours")
           else jax.random.PRNGKey(self.seed))
    # A random rank per node id, the same for id i whatever the number of nodes (so padding
    # does not reorder real neighbourhoods); ties broken by the id.
    rank = jax.vmap(lambda i: jax.random.bits(jax.random.fold_in(key, i)))(jnp.arange(n))
    order = jnp.lexsort((s, rank[s], r))  # by receiver, then by the sender's rank
    s, r = s[order], r[order]
    degree = jax.ops.segment_sum(jnp.ones((e,), jnp.int32), r, n)
    position = jnp.arange(e, dtype=jnp.int32) - (jnp.cumsum(degree) - degree)[r]
    k = self.max_neighbours
    sequence = jnp.zeros((n, k, x.shape[-1]), x.dtype).at[r, position].set(x[s], mode="drop")
    valid = jnp.arange(k)[None, :] < jnp.minimum(degree, k)[:, None]  # [N, k]
    scan = nn.scan(_MaskedLSTMStep, variable_broadcast="params", split_rngs={"params": False},
                   in_axes=1)  # one cell (parameters) for every step
    dtype = self.dtype or jnp.promote_types(x.dtype, self.param_dtype)  # of the carried state
    zeros = jnp.zeros((n, width), dtype)
    (_, h), _ = scan(width, dtype, self.param_dtype, name="lstm")((zeros, zeros),
                                                                 (sequence, valid))
    return h

  @nn.compact
  def __call__(self, graph: GraphsTuple, deterministic: bool = True) -> GraphsTuple:
    del deterministic
    if self.aggregator not in SAGE_AGGREGATORS:
      raise ConfigError(f"unknown GraphSAGE aggregator {self.aggregator!r}; accepted: "
                        f"{', '.join(SAGE_AGGREGATORS)}")
    x = _inputs(self, graph.nodes)
    n = x.shape[0]
    width = self.pool_features or self.features
    if self.aggregator == "mean":
      neighbours = mp.aggregate(x[graph.senders], graph.receivers, n, "mean")
    elif self.aggregator == "maxpool":
      pooled = nn.relu(_dense(self, width, name="pool")(x))
      neighbours = mp.aggregate(pooled[graph.senders], graph.receivers, n, "max")
    else:
      neighbours = self._lstm(x, graph, width)
    out = (_dense(self, self.features, name="self")(x)
           + _dense(self, self.features, use_bias=False, name="neighbours")(neighbours))
    return graph._replace(nodes=out)


class GatedGNN(nn.Module):
  """Gated graph neural network (Li et al. 2016, section 6.5.2), `num_steps` steps of

      x_i^(k) = GRU(x_i^(k-1), sum_{j in N(i)} e_ji W x_j^(k-1)),

  one GRU and one W shared by all steps. The state has `features` entries: inputs with fewer
  features are zero-padded (as in the paper), more are refused. Edge weights, per edge type or
  per edge:
  - `num_edge_types` = T: `graph.edges` holds each edge's type (int [E], in [0, T)) and W is
    one matrix per type;
  - `edge_weights` = True: `graph.edges` [E] or [E, 1] holds the scalars e_ji;
  - otherwise e_ji = 1 and edge features are ignored.
  """
  features: int
  num_steps: int = 3
  num_edge_types: int | None = None
  edge_weights: bool = False
  dtype: Any = None  # compute dtype; None: from inputs and parameters
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, graph: GraphsTuple, deterministic: bool = True) -> GraphsTuple:
    del deterministic
    h = _inputs(self, graph.nodes)
    if h.shape[-1] > self.features:
      raise ConfigError(f"GatedGNN state size features={self.features} is smaller than the "
                        f"{h.shape[-1]} input features; use features >= {h.shape[-1]}")
    h = jnp.pad(h, ((0, 0), (0, self.features - h.shape[-1])))
    n, s, r = h.shape[0], graph.senders, graph.receivers
    if self.num_edge_types:
      w = self.param("W", nn.initializers.lecun_normal(batch_axis=(0,)),
                     (self.num_edge_types, self.features, self.features), self.param_dtype)
      h, w = nn.dtypes.promote_dtype(h, w, dtype=self.dtype)
      types = graph.edges.reshape(-1).astype(jnp.int32)
      transfer = lambda h: jnp.einsum("nf,tfg->ntg", h, w)[s, types]  # W_type(e) x_j
    else:
      dense = _dense(self, self.features, use_bias=False, name="W")
      transfer = lambda h: dense(h)[s]
    weight = graph.edges.reshape(-1).astype(h.dtype)[:, None] if self.edge_weights else None
    cell = nn.GRUCell(self.features, dtype=self.dtype, param_dtype=self.param_dtype, name="gru")
    for _ in range(self.num_steps):
      messages = transfer(h)
      if weight is not None:
        messages = weight * messages
      h, _ = cell(h, mp.segment_sum(messages, r, n))
    return graph._replace(nodes=h)


class GAT(nn.Module):
  """Graph attention layer (Velickovic et al. 2018, section 6.5.3), `num_heads` heads:

      x_i' = ||_heads sum_{j in N(i) + {i}} alpha_ij W x_j,
      alpha_ij = softmax_j LeakyReLU_0.2(a_r . W x_i + a_s . W x_j)

  (a . [W x_i, W x_j] split into its receiver and sender halves). The softmax runs over the
  incoming edges plus the node itself: the layer adds the self-loop, so do not store one.
  Heads are concatenated (`concat`, [N, heads * features]) or averaged ([N, features]).
  `attention_dropout` drops attention coefficients when not `deterministic`.
  """
  features: int  # per head
  num_heads: int = 1
  concat: bool = True
  negative_slope: float = 0.2
  attention_dropout: float = 0.0
  use_bias: bool = True
  dtype: Any = None  # compute dtype; None: from inputs and parameters
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, graph: GraphsTuple, deterministic: bool = True) -> GraphsTuple:
    x = graph.nodes
    n, heads, f = x.shape[0], self.num_heads, self.features
    h = _dense(self, heads * f, use_bias=False, name="W")(x).reshape(n, heads, f)
    init = nn.initializers.variance_scaling(1.0, "fan_in", "normal", in_axis=-1, out_axis=-2)
    a_sender = self.param("a_sender", init, (heads, f), self.param_dtype).astype(h.dtype)
    a_receiver = self.param("a_receiver", init, (heads, f), self.param_dtype).astype(h.dtype)
    loops = jnp.arange(n, dtype=jnp.int32)
    s = jnp.concatenate([jnp.asarray(graph.senders, jnp.int32), loops])
    r = jnp.concatenate([jnp.asarray(graph.receivers, jnp.int32), loops])
    logits = nn.leaky_relu(jnp.sum(h * a_receiver, -1)[r] + jnp.sum(h * a_sender, -1)[s],
                           self.negative_slope)  # [E + N, heads]
    alpha = mp.attention_weights(logits, r, n)
    alpha = nn.Dropout(self.attention_dropout)(alpha, deterministic=deterministic)
    out = mp.segment_sum(alpha[..., None] * h[s], r, n)  # [N, heads, f]
    out = out.reshape(n, heads * f) if self.concat else jnp.mean(out, axis=1)
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros, (out.shape[-1],), self.param_dtype)
      out = out + bias.astype(h.dtype)
    return graph._replace(nodes=out)


class GIN(nn.Module):
  """Graph isomorphism network layer (Xu et al. 2019): x_i' = MLP((1 + eps) x_i + sum_j x_j),
  sum aggregation (eq. 6.3 with phi = identity), eps learnable (or fixed at `eps_init`), MLP =
  Dense(hidden) - ReLU - Dense(features)."""
  features: int
  hidden: int | None = None
  learn_eps: bool = True
  eps_init: float = 0.0
  dtype: Any = None  # compute dtype; None: from inputs and parameters
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, graph: GraphsTuple, deterministic: bool = True) -> GraphsTuple:
    del deterministic
    x = graph.nodes
    if self.learn_eps:
      eps = self.param("eps", nn.initializers.constant(self.eps_init), (), self.param_dtype)
      x, eps = nn.dtypes.promote_dtype(x, eps, dtype=self.dtype)
    else:
      x, eps = _inputs(self, x), self.eps_init
    z = (1 + eps) * x + mp.aggregate(x[graph.senders], graph.receivers, x.shape[0], "sum")
    z = nn.relu(_dense(self, self.hidden or self.features, name="mlp_0")(z))
    return graph._replace(nodes=_dense(self, self.features, name="mlp_1")(z))


class MLPLayer(nn.Module):
  """The baseline that ignores the edges: x_i' = W x_i + b on every node."""
  features: int
  dtype: Any = None  # compute dtype; None: from inputs and parameters
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, graph: GraphsTuple, deterministic: bool = True) -> GraphsTuple:
    del deterministic
    return graph._replace(nodes=_dense(self, self.features, name="W")(graph.nodes))


class DeepSetsEquivariant(nn.Module):
  """The permutation-equivariant linear layer of DeepSets (Zaheer et al. 2017, section 4.4):
  x_i' = Lambda x_i + Gamma mean_{j in set} x_j + b.

  On arrays [B, n, F] it is `dl_jax.symmetry.blueprint.DeepSetsLinear`; on a GraphsTuple each
  graph is a set (the edges are ignored) and the mean runs over the graph's own nodes.
  """
  features: int
  dtype: Any = None  # compute dtype; None: from inputs and parameters
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: GraphsTuple | jax.Array, deterministic: bool = True):
    del deterministic
    if not isinstance(x, GraphsTuple):
      return bp.DeepSetsLinear(self.features, self.dtype, self.param_dtype)(x)
    mean = mp.broadcast_to_nodes(x, mp.graph_readout(x, "mean"))
    own = _dense(self, self.features, name="Lambda")(x.nodes)
    return x._replace(nodes=own + _dense(self, self.features, use_bias=False, name="Gamma")(mean))


class DeepSetsInvariant(nn.Module):
  """The invariant DeepSets map rho(POOL_i phi(x_i)) (Zaheer et al. 2017; eq. 4.1 with A =
  `pool`): phi = Dense-ReLU per width of `phi`, rho = Dense(features). Returns one row per set:
  [B, features] for arrays [B, n, F], [n_graph, features] for a GraphsTuple (edges ignored)."""
  features: int
  phi: Sequence[int] = (64,)
  pool: str = "sum"
  dtype: Any = None  # compute dtype; None: from inputs and parameters
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: GraphsTuple | jax.Array, deterministic: bool = True) -> jax.Array:
    del deterministic
    values = x.nodes if isinstance(x, GraphsTuple) else x
    for width in self.phi:
      values = nn.relu(_dense(self, width)(values))
    if isinstance(x, GraphsTuple):
      pooled = mp.graph_readout(x, self.pool, values)
    else:
      pooled = bp.global_pool(values, self.pool, (-2,))
    return _dense(self, self.features, name="rho")(pooled)
