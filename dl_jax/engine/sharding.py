"""Data parallelism over every device: one Mesh with a 'data' axis, the batch split on it, the
state replicated. The same code runs on 1 CPU, 8 simulated CPU devices, a GPU or a TPU pod slice."""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from dl_jax.errors import ConfigError


def make_mesh() -> Mesh:
  return Mesh(np.asarray(jax.devices()), ("data",))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P("data"))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_batch_size(batch_size: int, mesh: Mesh, key: str = "batch_size") -> None:
  """`batch_size` (config key `key`) splits evenly over the mesh."""
  n = mesh.devices.size
  if batch_size <= 0 or batch_size % n:
    raise ConfigError(f"{key}={batch_size} cannot be split evenly over {n} devices; "
                      f"use a positive multiple of {n}")


def shard_batch(batch: dict, mesh: Mesh) -> dict:
  """This process's slice of the global batch -> one global array split over the 'data' axis."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items()}


def replicate(tree, mesh: Mesh):
  return jax.device_put(tree, replicated(mesh))
