"""word2vec's sequential SGD as a native CPU kernel, called from JAX through XLA's FFI.

XLA:CPU runs the many tiny per-pair dot products of skip-gram and CBOW (section 3.3) one fused op
at a time; `word2vec_kernel.cc` runs word2vec.c's inner loop over a step's centers instead (see
its header for the exact update). The source is compiled on first use with the system C++
compiler into `<data dir>/native/word2vec_<hash>.so`, the hash covering the source, the jaxlib
version, the compiler and the flags (the instruction set is picked from this CPU's flags, so a
cached library is never run on a CPU without them), built under a temporary name and renamed
atomically, then registered as the FFI targets `dl_jax_word2vec_step` (window widths and noise
words given) and `dl_jax_word2vec_step_rng` (drawn in the kernel by a counter-based generator,
`draws` is its numpy twin) for the CPU platform.
"""

import ctypes
import hashlib
import os
import pathlib
import platform
import shutil
import subprocess
import tempfile
import threading

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
from absl import logging

from dl_jax.errors import DlJaxError

TARGET = "dl_jax_word2vec_step"
TARGET_RNG = "dl_jax_word2vec_step_rng"
SOURCE = pathlib.Path(__file__).with_name("word2vec_kernel.cc")

_X86_64_V4 = {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"}
_X86_64_V3 = {"avx", "avx2", "bmi1", "bmi2", "f16c", "fma", "abm", "movbe", "xsave"}
_X86_64_V2 = {"cx16", "lahf_lm", "popcnt", "sse4_1", "sse4_2", "ssse3"}

_lock = threading.Lock()
_state = {"library": None, "error": None}


class NativeBuildError(DlJaxError):
  """The native kernel could not be compiled or loaded."""


def _cpu_flags() -> set[str]:
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("flags"):
        return set(line.split(":", 1)[1].split())
  except OSError:
    pass
  return set()


# x86-64 micro-architecture levels the kernel can be built for, each with the CPU flags it needs.
_X86_64_LEVELS = {"x86-64": set(), "x86-64-v2": _X86_64_V2, "x86-64-v3": _X86_64_V2 | _X86_64_V3,
                  "x86-64-v4": _X86_64_V2 | _X86_64_V3 | _X86_64_V4}
MARCH_ENV_VAR = "DL_JAX_NATIVE_MARCH"


def arch_flags() -> list[str]:
  """-march for this CPU: x86-64-v3 (AVX2, FMA) or v2 where the CPU has them, else the default.

  Not v4 on CPUs with AVX-512: with rows of 100 floats its 16-lane vectors trained skip-gram
  20-25 % slower than 8 lanes on an AMD EPYC (Zen 4). $DL_JAX_NATIVE_MARCH picks a level
  (x86-64, x86-64-v2, x86-64-v3, x86-64-v4) that this CPU has, e.g. to build and test the kernel
  as an older CPU would run it.
  """
  if platform.machine() not in ("x86_64", "AMD64"):
    return []
  flags = _cpu_flags()
  level = os.environ.get(MARCH_ENV_VAR, "")
  if level:
    if level not in _X86_64_LEVELS:
      raise NativeBuildError(f"{MARCH_ENV_VAR}={level!r} is not a level the kernel is built "
                             f"for; accepted: {', '.join(_X86_64_LEVELS)}")
    missing = sorted(_X86_64_LEVELS[level] - flags)
    if missing:
      raise NativeBuildError(f"{MARCH_ENV_VAR}={level!r} needs CPU flags this CPU lacks: "
                             f"{', '.join(missing)}")
    return [f"-march={level}"]
  if _X86_64_V3 <= flags:
    return ["-march=x86-64-v3"]
  if _X86_64_V2 <= flags:
    return ["-march=x86-64-v2"]
  return []


def compiler() -> str | None:
  """The C++ compiler: $CXX, else g++, else c++, else clang++ (None if there is none)."""
  for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
    if name and shutil.which(name):
      return shutil.which(name)
  return None


def _compile_flags() -> list[str]:
  return ["-O3", "-shared", "-fPIC", "-std=c++17", "-fopenmp-simd", "-fno-math-errno",
          *arch_flags(), f"-I{jax.ffi.include_dir()}"]


def library_path(data_dir: str | None = None) -> pathlib.Path:
  """Builds the kernel if no library for (source, jaxlib, compiler, flags) is cached yet."""
  from dl_jax.data import fetch  # pylint: disable=g-import-not-at-top
  cxx = compiler()
  if cxx is None:
    raise NativeBuildError("no C++ compiler found ($CXX, g++, c++ or clang++) to build the "
                           "native word2vec kernel; install one (e.g. apt-get install g++) or set "
                           "config.engine='xla'")
  flags = _compile_flags()
  try:
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True,
                             timeout=60).stdout.splitlines()[:1]
  except (OSError, subprocess.SubprocessError) as e:
    raise NativeBuildError(f"C++ compiler {cxx} does not run ({e}); set config.engine='xla'")
  digest = hashlib.sha256()
  for part in (SOURCE.read_bytes(), jaxlib.__version__.encode(), "\n".join(version).encode(),
               " ".join(flags).encode()):
    digest.update(part)
    digest.update(b"\0")
  out_dir = fetch.data_dir(data_dir) / "native"
  out_dir.mkdir(parents=True, exist_ok=True)
  path = out_dir / f"word2vec_{digest.hexdigest()[:16]}.so"
  if path.exists():
    return path
  fd, tmp = tempfile.mkstemp(suffix=".so", prefix=".word2vec_", dir=out_dir)
  os.close(fd)
  cmd = [cxx, *flags, str(SOURCE), "-o", tmp]
  logging.info("building the native word2vec kernel: %s", " ".join(cmd))
  try:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
      raise NativeBuildError(f"building the native word2vec kernel failed ({' '.join(cmd)}): "
                             f"{result.stderr.strip()[-1500:]}; set config.engine='xla'")
    os.replace(tmp, path)
  except subprocess.TimeoutExpired as e:
    raise NativeBuildError(f"building the native word2vec kernel timed out ({e}); "
                           "set config.engine='xla'") from e
  finally:
    if os.path.exists(tmp):
      os.unlink(tmp)
  return path


def load(data_dir: str | None = None) -> None:
  """Builds (once) and registers the FFI target; raises NativeBuildError if it cannot."""
  with _lock:
    if _state["library"] is not None:
      return
    if _state["error"] is not None:
      raise NativeBuildError(_state["error"])
    try:
      path = library_path(data_dir)
      try:
        lib = ctypes.CDLL(str(path))
        handlers = {TARGET: lib.DlJaxWord2VecStep, TARGET_RNG: lib.DlJaxWord2VecStepRng}
      except (OSError, AttributeError) as e:
        raise NativeBuildError(f"cannot load the native word2vec kernel {path}: {e}; delete it "
                               "to rebuild, or set config.engine='xla'") from e
      for name, handler in handlers.items():
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(handler), platform="cpu")
    except NativeBuildError as e:
      _state["error"] = str(e)
      raise
    _state["library"] = lib


def cpu_model() -> str:
  """This CPU's model name as the kernel reports it (/proc/cpuinfo), else the platform's."""
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def build_description(data_dir: str | None = None) -> str:
  """What the kernel was built for, e.g. '-march=x86-64-v3, 8 float lanes' (builds it if needed)."""
  load(data_dir)
  lanes = _state["library"].DlJaxWord2VecLanes()
  return f"{' '.join(arch_flags()) or 'default target'}, {lanes} float lanes"


def available(data_dir: str | None = None) -> bool:
  """True if the kernel builds and loads here (a failure is logged once as a warning)."""
  try:
    load(data_dir)
    return True
  except NativeBuildError as e:
    logging.warning("native word2vec kernel unavailable, using the XLA engine: %s", e)
    return False


def word2vec_step(E: jax.Array, C: jax.Array, tokens: jax.Array, docs: jax.Array,
                  widths: jax.Array, negatives: jax.Array, lr: jax.Array, count: jax.Array, *,
                  cbow: bool, window: int, threads: int = 1):
  """One step of word2vec's sequential SGD (CPU only; call `load` first).

  Args:
    E, C: (V, D) float32 input and output embeddings; updated in place where XLA can (aliased).
    tokens, docs: (N + 2L,) int32 stream slice, the N centers at [L, L + N); docs < 0 on padding.
    widths: (N,) int32 window widths in [1, L] (`models.window_widths`).
    negatives: (N, k) noise words per center (shared by its pairs), or (N, 2L, k) per context
      slot (skip-gram; CBOW uses slot 0).
    lr: float32 scalar learning rate; count: int32 scalar, centers to train (0: no-op step).
    threads: 1 (word2vec's sequential loop) or 2: each thread runs it on half of the centers from
      the tables as they were at the start of the step; then a row one thread touched gets that
      thread's row, a row both touched the first half's row plus the second half's change. As
      deterministic as 1 thread, but not the same numbers.
  Returns:
    (E, C, loss, pairs): the updated tables, the summed loss of the step's pairs (skip-gram) or
    windows (CBOW) before their updates, and their number, float32.
  """
  n = widths.shape[0]
  negatives = negatives.reshape(n, -1 if negatives.ndim == 3 else 1, negatives.shape[-1])
  scalar = jax.ShapeDtypeStruct((), jnp.float32)
  call = jax.ffi.ffi_call(TARGET, (jax.ShapeDtypeStruct(E.shape, jnp.float32),
                                   jax.ShapeDtypeStruct(C.shape, jnp.float32), scalar, scalar),
                          input_output_aliases={0: 0, 1: 1})
  return call(E, C, tokens.astype(jnp.int32), docs.astype(jnp.int32), widths.astype(jnp.int32),
              negatives.astype(jnp.int32), jnp.asarray(lr, jnp.float32),
              jnp.asarray(count, jnp.int32), cbow=np.int64(bool(cbow)),
              window=np.int64(window), threads=np.int64(threads))


def word2vec_step_rng(E: jax.Array, C: jax.Array, tokens: jax.Array, docs: jax.Array,
                      seed: jax.Array, accept: jax.Array, alias: jax.Array, lr: jax.Array,
                      count: jax.Array, *, cbow: bool, window: int, negative: int,
                      threads: int = 1):
  """`word2vec_step` with the window widths and noise words drawn in the kernel.

  The draws of center t are `draws(seed, ...)[:, t]`: a pure function of (seed, t), so a step
  with the same seed gives the same bits whatever the threads' split or the call boundaries.
  Skip-gram draws k fresh noise words for every (center, context) pair, as word2vec.c and gensim;
  CBOW k per center.

  Args:
    seed: uint32[2] (e.g. the key data of `jax.random.fold_in(key, step)`).
    accept, alias: (V,) float32 and int32 alias table of the noise distribution
      (`models.alias_table`).
    negative: k, noise words per pair (skip-gram) or per center (CBOW).
    Others as `word2vec_step`.
  """
  scalar = jax.ShapeDtypeStruct((), jnp.float32)
  call = jax.ffi.ffi_call(TARGET_RNG, (jax.ShapeDtypeStruct(E.shape, jnp.float32),
                                       jax.ShapeDtypeStruct(C.shape, jnp.float32), scalar,
                                       scalar),
                          input_output_aliases={0: 0, 1: 1})
  return call(E, C, tokens.astype(jnp.int32), docs.astype(jnp.int32),
              jnp.asarray(seed).astype(jnp.uint32).reshape(2),
              jnp.asarray(accept, jnp.float32), jnp.asarray(alias, jnp.int32),
              jnp.asarray(lr, jnp.float32), jnp.asarray(count, jnp.int32),
              cbow=np.int64(bool(cbow)), window=np.int64(window), negative=np.int64(negative),
              threads=np.int64(threads))


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _splitmix64(z: np.ndarray) -> np.ndarray:
  z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
  z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  return z ^ (z >> np.uint64(31))


def draws(seed, n: int, *, cbow: bool, window: int, negative: int, accept: np.ndarray,
          alias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """The numpy twin of the kernel's generator: (widths int32[n], negatives int32[n, P, k]).

  P = 1 for CBOW, 2L for skip-gram (`word2vec_step` takes both as given draws and then trains
  the same bits as `word2vec_step_rng` with this seed). Draw j of center t is
  splitmix64(s + (t (1 + P k) + j + 1) golden), s = seed[0] 2^32 + seed[1]: j = 0 the width
  1 + (hi32 L) >> 32, j = 1 + p k + i the noise word i of slot p by the alias method (slot
  (hi32 V) >> 32, kept when its 24-bit coin (lo32 & 0xffffff) 2^-24 < accept[slot]).
  """
  seed = np.asarray(seed, np.uint64).reshape(2)
  s = (seed[0] << np.uint64(32)) | seed[1]
  P, K, V = 1 if cbow else 2 * window, negative, len(accept)
  stride = 1 + P * K
  counter = np.arange(n, dtype=np.uint64)[:, None] * np.uint64(stride) + np.arange(
      stride, dtype=np.uint64)[None] + np.uint64(1)
  with np.errstate(over="ignore"):
    bits = _splitmix64(s + counter * _GOLDEN)
  hi, lo = bits >> np.uint64(32), bits & np.uint64(0xffffffff)
  widths = (np.uint64(1) + ((hi[:, 0] * np.uint64(window)) >> np.uint64(32))).astype(np.int32)
  slot = ((hi[:, 1:] * np.uint64(V)) >> np.uint64(32)).astype(np.int64)
  coin = (lo[:, 1:] & np.uint64(0xffffff)).astype(np.float32) * np.float32(1.0 / (1 << 24))
  negs = np.where(coin < np.asarray(accept, np.float32)[slot], slot,
                  np.asarray(alias, np.int64)[slot]).astype(np.int32)
  return widths, negs.reshape(n, P, K)
