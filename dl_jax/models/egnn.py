"""Point-cloud dynamics models for the charged N-body task (`dl_jax.tasks.nbody`): the E(n)
equivariant graph network of Satorras, Hoogeboom and Welling (2021), and its two baselines.

Every model takes a point cloud {"positions" [B, n, 3], "velocities" [B, n, 3], "charges"
[B, n, 1]} and returns predicted positions [B, n, 3]; messages run over the complete graph of
each system's n points (all pairs i != j, computed densely).

- `EGNN` (eq. 3-7 of the paper, the velocity variant used for N-body): node features h_i start
  as an embedding of |v_i|; edge attributes a_ij = (q_i q_j, |x_i - x_j|^2 at the input). Each
  layer computes
      m_ij = phi_e(h_i, h_j, |x_i - x_j|^2, a_ij)
      x_i <- x_i + 1/(n-1) sum_{j != i} (x_i - x_j) phi_x(m_ij) + phi_v(h_i) v_i
      h_i <- h_i + phi_h(h_i, sum_{j != i} m_ij)
  Only distances, differences of positions and the input velocities enter: the map is
  equivariant under rotations, reflections, translations and relabellings of the particles.
- `NBodyGNN`: the paper's GNN baseline, message passing on raw coordinates: h_i = W [x_i, v_i],
  m_ij = phi_e(h_i, h_j, q_i q_j), h_i <- h_i + phi_h(h_i, sum_j m_ij), x_i' = phi_out(h_i).
  Permutation-equivariant only: it sees absolute coordinates, so it is not E(3)-equivariant.
- `NBodyLinear`: x_i' = x_i + t v_i with one learned t (the paper's "Linear").

phi_e, phi_h are two-layer SiLU MLPs of width `hidden` (as the reference implementation);
phi_x's last layer has no bias and starts small (Xavier uniform with gain 0.001), so the first
updates of the positions are gentle. Every other layer starts as the reference's (PyTorch's
`nn.Linear`): kernel and bias uniform in +-1/sqrt(fan_in). Flax's default (LeCun normal, three
times that variance) makes the EGNN diverge within 50 epochs: the squared distances it reads
reach several hundred, and each layer's position update feeds the next layer's distances.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from dl_jax.models.spec import ModelSpec
from dl_jax.symmetry import vocabulary as sym


def _pairs(h: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(h_i, h_j) broadcast to [B, n, n, F]: receiver i on axis 1, sender j on axis 2."""
  n = h.shape[1]
  return (jnp.broadcast_to(h[:, :, None], (h.shape[0], n, n, h.shape[-1])),
          jnp.broadcast_to(h[:, None, :], (h.shape[0], n, n, h.shape[-1])))


def _unpack(cloud: dict, dtype):
  """(positions, velocities, q_i q_j [B, n, n, 1]) of a point cloud, in `dtype`."""
  q_i, q_j = _pairs(cloud["charges"].astype(dtype))
  return cloud["positions"].astype(dtype), cloud["velocities"].astype(dtype), q_i * q_j


def _uniform(bound: float):
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)
  return init


class Linear(nn.Module):
  """`nn.Dense` initialised as PyTorch's `nn.Linear` (the EGNN reference): kernel and bias
  uniform in +-1/sqrt(fan_in)."""
  features: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    bound = x.shape[-1] ** -0.5
    kernel = self.param("kernel", _uniform(bound), (x.shape[-1], self.features))
    bias = self.param("bias", _uniform(bound), (self.features,))
    return x.astype(self.dtype) @ kernel.astype(self.dtype) + bias.astype(self.dtype)


def _off_diagonal(n: int, dtype) -> jax.Array:
  return (1.0 - jnp.eye(n, dtype=dtype))[None, :, :, None]


class PairDense(nn.Module):
  """`Linear(features)` applied to the concatenation [h_i, h_j, e_ij] of every pair (i, j), with
  the kernel of that layer ([2 F + A, features]), computed as W_i h_i + W_j h_j + W_e e_ij + b:
  the node terms once per node, not once per pair."""
  features: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, h, e):
    f, a = h.shape[-1], e.shape[-1]
    bound = (2 * f + a) ** -0.5
    kernel = self.param("kernel", _uniform(bound), (2 * f + a, self.features))
    bias = self.param("bias", _uniform(bound), (self.features,))
    kernel, bias = kernel.astype(self.dtype), bias.astype(self.dtype)
    h, e = h.astype(self.dtype), e.astype(self.dtype)
    return ((h @ kernel[:f])[:, :, None] + (h @ kernel[f:2 * f])[:, None, :]
            + e @ kernel[2 * f:] + bias)


class MLP(nn.Module):
  """Linear-SiLU-Linear(-SiLU); `pairs=True`: the first layer is a `PairDense` on (h, e)."""
  hidden: int
  out: int
  final_activation: bool = False
  pairs: bool = False
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, *inputs):
    first = (PairDense(self.hidden, self.dtype, name="Dense_0") if self.pairs
             else Linear(self.hidden, self.dtype, name="Dense_0"))
    x = nn.silu(first(*inputs))
    x = Linear(self.out, self.dtype, name="Dense_1")(x)
    return nn.silu(x) if self.final_activation else x


class EquivariantLayer(nn.Module):
  """One E(n)-equivariant graph convolution with velocities (eq. 3-7 of Satorras et al.)."""
  hidden: int = 64
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, h, x, v, edge_attr):
    n = x.shape[1]
    mask = _off_diagonal(n, self.dtype)
    diff = x[:, :, None, :] - x[:, None, :, :]  # x_i - x_j
    radial = jnp.sum(diff ** 2, axis=-1, keepdims=True)
    m = MLP(self.hidden, self.hidden, final_activation=True, pairs=True, dtype=self.dtype,
            name="phi_e")(h, jnp.concatenate([radial, edge_attr], axis=-1)) * mask
    phi_x = nn.Dense(1, use_bias=False, dtype=self.dtype, name="phi_x_out",
                     kernel_init=nn.initializers.variance_scaling(
                         0.001 ** 2, "fan_avg", "uniform"))(
        nn.silu(Linear(self.hidden, self.dtype, name="phi_x")(m)))
    x = x + jnp.sum(diff * phi_x * mask, axis=2) / (n - 1)
    x = x + MLP(self.hidden, 1, dtype=self.dtype, name="phi_v")(h) * v
    h = h + MLP(self.hidden, self.hidden, dtype=self.dtype, name="phi_h")(
        jnp.concatenate([h, jnp.sum(m, axis=2)], axis=-1))
    return h, x


class EGNN(nn.Module):
  """The E(n)-equivariant graph network for N-body dynamics (Satorras et al. 2021, sec. 5.1)."""
  hidden: int = 64
  num_layers: int = 4
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, cloud: dict, train: bool = False):
    del train
    x, v, charge_products = _unpack(cloud, self.dtype)
    distance = jnp.sum((x[:, :, None] - x[:, None]) ** 2, axis=-1, keepdims=True)
    edge_attr = jnp.concatenate([charge_products, distance], axis=-1)
    h = Linear(self.hidden, self.dtype, name="embed")(jnp.linalg.norm(v, axis=-1, keepdims=True))
    for i in range(self.num_layers):
      h, x = EquivariantLayer(self.hidden, self.dtype, name=f"layer_{i}")(h, x, v, edge_attr)
    return x


class NBodyGNN(nn.Module):
  """The paper's GNN baseline: message passing with raw coordinates as node inputs."""
  hidden: int = 64
  num_layers: int = 4
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, cloud: dict, train: bool = False):
    del train
    x, v, charge_products = _unpack(cloud, self.dtype)
    mask = _off_diagonal(x.shape[1], self.dtype)
    h = Linear(self.hidden, self.dtype, name="embed")(jnp.concatenate([x, v], -1))
    for i in range(self.num_layers):
      m = MLP(self.hidden, self.hidden, final_activation=True, pairs=True, dtype=self.dtype,
              name=f"phi_e_{i}")(h, charge_products) * mask
      h = h + MLP(self.hidden, self.hidden, dtype=self.dtype, name=f"phi_h_{i}")(
          jnp.concatenate([h, jnp.sum(m, axis=2)], axis=-1))
    return MLP(self.hidden, x.shape[-1], dtype=self.dtype, name="decode")(h)


class NBodyLinear(nn.Module):
  """The paper's "Linear" (its `Linear_dynamics`): x_i' = x_i + t v_i with one learned time t,
  starting at 1. E(3)-equivariant, as positions plus a multiple of the velocities."""
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, cloud: dict, train: bool = False):
    del train
    time = self.param("time", nn.initializers.ones, ()).astype(self.dtype)
    return cloud["positions"].astype(self.dtype) + time * cloud["velocities"].astype(self.dtype)


SPECS = (
    ModelSpec("egnn", "point_cloud", EGNN, {"hidden": 64, "num_layers": 4, "dtype": "float32"},
              param_count=134_020, symmetries=(sym.E3_EQUIVARIANT,),
              description="E(n)-equivariant graph network, N-body (Satorras et al. 2021)"),
    ModelSpec("nbody_gnn", "point_cloud", NBodyGNN,
              {"hidden": 64, "num_layers": 4, "dtype": "float32"}, param_count=104_387,
              symmetries=(sym.POINT_PERMUTATION_EQUIVARIANT,),
              description="message passing on raw coordinates (the EGNN paper's GNN baseline)"),
    ModelSpec("nbody_linear", "point_cloud", NBodyLinear, {"dtype": "float32"}, param_count=1,
              symmetries=(sym.E3_EQUIVARIANT,),
              description="x + t v with a learned time t (the EGNN paper's Linear)"),
)
