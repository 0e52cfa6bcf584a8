"""The charged N-body system of Kipf et al. (2018), in 3-D as Fuchs et al. (2020) and Satorras,
Hoogeboom and Welling (2021, "E(n) equivariant graph neural networks", section 5.1) use it.

Five particles of charge +1 or -1 (each with probability 1/2) interact by Coulomb forces,
F_i = sum_{j != i} q_i q_j (x_i - x_j) / |x_i - x_j|^3 (unit masses, no walls: the EGNN setting),
each force component clipped to +-100 as in the reference generator. Initial positions are
N(0, 1) per coordinate, initial velocities point in a uniform random direction with norm 0.5.
The integrator is the reference's kick-drift scheme with step dt = 0.001,

    v <- v + dt F(x)   (once, at the start)
    repeat: x <- x + dt v;  (record every 100th step);  v <- v + dt F(x)

i.e. symplectic Euler, first order in dt: with unclipped forces its energy and position errors
after one time unit halve when dt halves (tested). Frame k is step 100 (k + 1), as in the reference generator,
whose first recording overwrites the initial state. The task (EGNN paper): from the positions,
velocities and charges at frame 30 (step 3100), predict the positions at frame 40 (step 4100),
one time unit later.

Dataset sizes are the paper's: 3000 training, 2000 validation and 2000 test systems, each split
drawn from its own seed (`SPLITS`), so they share no system. The simulation is numpy float64,
vectorized over systems: a pure function of the seed. `load()` caches the frames as
`<data_dir>/nbody_charged5.npz` (with a sha256 sidecar, `dl_jax.data.cache`), verified on every
later load.
"""

from __future__ import annotations

import numpy as np

from dl_jax.data import cache, fetch

NUM_PARTICLES = 5
DIM = 3
DT = 0.001
MAX_FORCE = 0.1 / DT  # per-component clip of the reference generator
SAMPLE_EVERY = 100  # integration steps between recorded frames
POSITION_STD = 1.0
SPEED = 0.5
FRAME_INPUT, FRAME_TARGET = 30, 40  # recorded frames: input and target (EGNN's nbody_small)
SPLITS = {"train": (3000, 1), "val": (2000, 2), "test": (2000, 3)}  # split -> (systems, seed)
FILE = "nbody_charged5.npz"


def initial_conditions(rng: np.random.Generator, num_systems: int,
                       num_particles: int = NUM_PARTICLES):
  """(positions, velocities, charges): float64 [S, n, 3], [S, n, 3], [S, n, 1]."""
  charges = rng.choice(np.array([-1.0, 1.0]), size=(num_systems, num_particles, 1))
  positions = rng.standard_normal((num_systems, num_particles, DIM)) * POSITION_STD
  velocities = rng.standard_normal((num_systems, num_particles, DIM))
  velocities *= SPEED / np.linalg.norm(velocities, axis=-1, keepdims=True)
  return positions, velocities, charges


def _forces(x: np.ndarray, q: np.ndarray, max_force: float | None) -> np.ndarray:
  """Forces in particle-major layout: x [n, S, 3], q [n, S] -> [n, S, 3]. Each pair is
  computed once and added with opposite signs (Newton's third law holds to rounding before the
  clip)."""
  f = np.zeros_like(x)
  n = x.shape[0]
  for i in range(n):
    for j in range(i + 1, n):
      d = x[i] - x[j]
      r2 = np.einsum("sk,sk->s", d, d)
      pair = (q[i] * q[j] / (r2 * np.sqrt(r2)))[:, None] * d
      f[i] += pair
      f[j] -= pair
  if max_force is not None:
    np.clip(f, -max_force, max_force, out=f)
  return f


def _particle_major(a: np.ndarray) -> np.ndarray:
  return np.ascontiguousarray(np.swapaxes(np.asarray(a, np.float64), 0, 1))


def forces(positions: np.ndarray, charges: np.ndarray, max_force: float | None = MAX_FORCE
           ) -> np.ndarray:
  """Coulomb forces [S, n, 3] on unit masses, each component clipped to +-max_force."""
  f = _forces(_particle_major(positions), _particle_major(charges)[..., 0], max_force)
  return np.swapaxes(f, 0, 1)


def energy(positions: np.ndarray, velocities: np.ndarray, charges: np.ndarray) -> np.ndarray:
  """Kinetic plus Coulomb energy of each system: float64 [S]."""
  diff = positions[:, :, None, :] - positions[:, None, :, :]
  r = np.sqrt(np.sum(diff ** 2, axis=-1))
  n = positions.shape[1]
  r[:, np.arange(n), np.arange(n)] = np.inf
  potential = 0.5 * np.sum(charges * np.swapaxes(charges, 1, 2) / r, axis=(1, 2))
  return 0.5 * np.sum(velocities ** 2, axis=(1, 2)) + potential


def simulate(positions, velocities, charges, num_frames: int, sample_every: int = SAMPLE_EVERY,
             dt: float = DT, max_force: float | None = MAX_FORCE):
  """Integrates the systems; returns the recorded (positions, velocities), float64
  [S, num_frames, n, 3] each: frame k is step (k + 1) * sample_every of the kick-drift scheme."""
  x, q = _particle_major(positions), _particle_major(charges)[..., 0]
  v = _particle_major(velocities) + dt * _forces(x, q, max_force)
  frames_x, frames_v = [], []
  for step in range(1, num_frames * sample_every + 1):
    x += dt * v
    if step % sample_every == 0:
      frames_x.append(np.swapaxes(x, 0, 1).copy())
      frames_v.append(np.swapaxes(v, 0, 1).copy())
    v += dt * _forces(x, q, max_force)
  return np.stack(frames_x, axis=1), np.stack(frames_v, axis=1)


def generate(num_systems: int, seed: int, frames=(FRAME_INPUT, FRAME_TARGET)) -> dict:
  """One split: inputs at frames[0] and target positions at frames[1], float32, plus charges."""
  positions, velocities, charges = initial_conditions(np.random.default_rng(seed), num_systems)
  xs, vs = simulate(positions, velocities, charges, num_frames=max(frames) + 1)
  first, last = frames
  return {"positions": xs[:, first].astype(np.float32),
          "velocities": vs[:, first].astype(np.float32),
          "charges": charges.astype(np.float32),
          "target": xs[:, last].astype(np.float32)}


def _spec() -> dict:
  spec = {}
  for split, (size, _) in SPLITS.items():
    for key, width in (("positions", DIM), ("velocities", DIM), ("charges", 1), ("target", DIM)):
      spec[f"{split}_{key}"] = ((size, NUM_PARTICLES, width), np.float32)
  return spec


def _check(arrays: dict) -> str | None:
  problem = cache.check_arrays(arrays, _spec(), num_classes=0)
  if problem:
    return problem
  for split in SPLITS:
    if not np.all(np.abs(arrays[f"{split}_charges"]) == 1.0):
      return f"{split}_charges holds values other than +-1"
  return None


def _build() -> dict:
  arrays = {}
  for split, (size, seed) in SPLITS.items():
    arrays.update({f"{split}_{k}": v for k, v in generate(size, seed).items()})
  return arrays


def load(data_dir: str | None = None) -> dict[str, dict[str, np.ndarray]]:
  """The three splits, simulated on first use and cached: {split: {"positions", "velocities",
  "charges", "target"}}, float32 [systems, 5, 3] (charges [systems, 5, 1])."""
  arrays = cache.cached(fetch.data_dir(data_dir) / FILE, _build, _check,
                        what="N-body simulation")
  return {split: {key: arrays[f"{split}_{key}"] for key in
                  ("positions", "velocities", "charges", "target")} for split in SPLITS}
