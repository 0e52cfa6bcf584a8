"""Skip-gram and CBOW training (section 3.3.2, eq. 3.6-3.13).

How skip-gram and CBOW train fast on a CPU. The corpus of an epoch is one stream of token ids
(after word2vec's subsampling of frequent words, pure in (seed, epoch)). A step takes the next N
centers and the slice of N + 2L stream tokens around them; the window of each center is a static
shifted slice of that slice, so the rows of E are gathered once per token, not once per pair
(`models.stream_*_ns_loss`). In this XLA body, its k noise words are drawn in JAX from an alias table of
unigram^0.75, once per center and shared by the center's up to 2L pairs (per-pair noise words
would gather 2L times as many rows). Gradients with respect to the gathered rows come from
`jax.grad` and are applied as sparse SGD, `E.at[ids].add(-lr * g)`, on donated tables, with
word2vec's linear learning-rate decay (0.025 -> 0.0001 over the run). One jitted call runs
`steps_per_call` steps with `lax.scan`; per-step randomness is `fold_in(key, step)`, so a run
resumed from any checkpoint ends with the same bits as an uninterrupted one. CBOW passes the error
of the averaged context to every context word undivided, as word2vec does.

On a CPU, engine "native" (the default "auto" picks it when it builds) replaces the step's XLA
body by word2vec's own sequential SGD in C++ (`dl_jax.text.native`, called through XLA's FFI in
the same `lax.scan`, tables updated in place). The kernel draws the window widths and the noise
words itself, with a counter-based generator (splitmix64 of the step's seed, the key data of
fold_in(key, step), and the center's index) and the alias table of unigram^0.75; skip-gram gets
fresh noise words for every (center, context) pair, as word2vec.c and gensim. A step's draws
depend on nothing else, so the engine is as deterministic and resumable as the XLA one. Its steps
are 32768 centers (batch_size 0; the XLA engine's 1024); `native_threads` 2 trains the two halves
of a step on two threads from the same starting tables and merges them (deterministic).
Measured (`./launch.sh bench word2vec --seeds 1,2,3`, 5 epochs, 2 AMD EPYC cores, gensim 4.4.0
workers=2 in the same process, means): skip-gram 13.1 s / 6.60 % analogies against gensim's
23.9 s / 6.48 %; CBOW 4.1 s / 6.22 % against 5.7 s / 4.35 %; 50-80 s with the XLA body.

Options measured in bench/word2vec.py: `noise_group` / `noise_pool` let groups of consecutive
centers share k' noise words, weighted k / k' so that the expected loss is unchanged (fewer rows to
gather and scatter, larger batched products); `row_scale` "sqrt" divides the summed update of a row
by sqrt(m), m its occurrences in the step (word2vec applies the m updates one after the other; the
plain sum, "none", trained better in our runs at N = 1024).
"""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from dl_jax.engine.task import jit_step
from dl_jax.errors import ConfigError
from dl_jax.text import models
from dl_jax.text.corpus import Corpus, epoch_stream

ROW_SCALES = ("sqrt", "none")
ENGINES = ("auto", "xla", "native")
# Centers per step when batch_size is 0: the native kernel's sequential loop gains from long steps
# (fewer calls), the XLA body's summed sparse updates from short ones.
DEFAULT_BATCH = {"native": 32768, "xla": 1024}


@dataclasses.dataclass(frozen=True)
class StreamSpec:
  """Static shape of the jitted word2vec call."""
  model: str  # skipgram | cbow
  loss: str  # negative_sampling | softmax
  window: int  # L
  negative: int  # k
  batch: int  # N centers per step (0: DEFAULT_BATCH of the engine that runs)
  steps_per_call: int  # S steps per jitted call
  row_scale: str = "none"
  noise_group: int = 1  # consecutive centers sharing noise words (1: each its own k)
  noise_pool: int = 0  # noise words per group (0: k)
  engine: str = "auto"  # auto | xla | native (see `resolve_engine`)
  native_threads: int = 1  # native engine: 1 (word2vec's sequential loop) or 2 (see native)


def _stream_loss(spec: StreamSpec, x, out, mask):
  """Summed loss of a step; `out` is (C rows of centers, C rows of noise) or the full C."""
  if spec.loss == "negative_sampling":
    weight = spec.negative / (spec.noise_pool or spec.negative)
    if spec.model == "skipgram":
      return models.stream_skipgram_ns_loss(x, out[0], out[1], mask, spec.window,
                                            negative_weight=weight)
    return models.stream_cbow_ns_loss(x, out[0], out[1], mask, spec.window, word2vec_grad=True,
                                      negative_weight=weight)
  c, centers = out
  return _stream_softmax_loss(spec, x, c, centers, mask)


def _stream_softmax_loss(spec, x, c, centers, mask):
  """Full-softmax version (eq. 3.10, 3.13) over a stream slice: O(|V|) per pair."""
  n, L = centers.shape[0], spec.window
  offsets = [o for o in range(-L, L + 1) if o != 0]
  if spec.model == "cbow":
    total = sum(x[L + o:L + o + n] * mask[:, j:j + 1] for j, o in enumerate(offsets))
    count = jnp.sum(mask, axis=1)
    u = total / jnp.maximum(count, 1)[:, None]
    return jnp.sum(models.softmax_cross_entropy(u @ c.T, centers) * (count > 0))
  loss = 0.0
  for j, o in enumerate(offsets):
    loss += jnp.sum(models.softmax_cross_entropy(x[L + o:L + o + n] @ c.T, centers) * mask[:, j])
  return loss


def _native_unsupported(spec: StreamSpec) -> str | None:
  """Why the native kernel cannot run `spec` (None if it can)."""
  if spec.model not in ("skipgram", "cbow") or spec.loss != "negative_sampling":
    return f"model={spec.model!r} with loss={spec.loss!r} (it runs skip-gram and CBOW with " \
           "negative sampling)"
  if spec.noise_group != 1 or spec.noise_pool or spec.row_scale != "none":
    return (f"noise_group={spec.noise_group}, noise_pool={spec.noise_pool}, "
            f"row_scale={spec.row_scale!r} (it applies word2vec's per-center updates: "
            "noise_group=1, noise_pool=0, row_scale='none')")
  if jax.default_backend() != "cpu":
    return f"the {jax.default_backend()} backend (it runs on the CPU)"
  return None


def resolve_engine(spec: StreamSpec, data_dir: str | None = None) -> str:
  """"xla" or "native" for `spec.engine`.

  "native" (word2vec's sequential SGD in C++, `dl_jax.text.native`) fails with a clear error if
  the spec or the platform does not allow it or the kernel does not build; "auto" takes it on a
  CPU when it can and falls back to the XLA engine otherwise (with a warning if the build failed).
  """
  if spec.engine not in ENGINES:
    raise ConfigError(f"unknown engine {spec.engine!r}; accepted: {', '.join(ENGINES)}")
  if spec.engine == "xla":
    return "xla"
  from dl_jax.text import native  # pylint: disable=g-import-not-at-top
  why = _native_unsupported(spec)
  if spec.engine == "native":
    if why is not None:
      raise ConfigError(f"engine='native' does not support {why}; use engine='xla' or 'auto'")
    native.load(data_dir)
    return "native"
  if why is not None:
    logging.info("engine 'auto': XLA engine for %s", why)
    return "xla"
  return "native" if native.available(data_dir) else "xla"


def make_word2vec_call(spec: StreamSpec, vocab_size: int):
  """The jitted call: S steps of sparse SGD on (E, C), donated.

  call(E, C, tokens, docs, first, limit, step0, total_steps, key, lr0, lr_min, accept, alias)
    tokens, docs: the epoch stream padded with L entries in front and L + N S behind (docs -1 on
      padding); first: the step within the epoch where this call starts; limit: steps of this
      call at index >= limit are no-ops; step0: the global step of `first`.
  Returns (E, C, losses float32[S] (summed over the step's pairs), pairs float32[S], the norm of
  the call's update over lr0 float32[]).
  """
  L, S, N = spec.window, spec.steps_per_call, spec.batch
  k, G = spec.noise_pool or spec.negative, N // spec.noise_group
  if spec.engine not in ("xla", "native"):
    raise ValueError(f"engine={spec.engine!r}: resolve it with `resolve_engine` first")
  if N % spec.noise_group:
    raise ConfigError(f"batch_size={N} is not a multiple of noise_group={spec.noise_group}; use "
                      "a divisor of batch_size")

  def step(carry, s, tokens, docs, first, limit, step0, total_steps, key, lr0, lr_min,
           accept, alias):
    E, C = carry
    start = (first + s) * N
    toks = jax.lax.dynamic_slice(tokens, (start,), (N + 2 * L,))
    doc = jax.lax.dynamic_slice(docs, (start,), (N + 2 * L,))
    g = step0 + s  # global step (0-based) of this step
    progress = g.astype(jnp.float32) / total_steps
    if spec.engine == "native":
      # Widths and noise words are drawn in the kernel from (seed of this step, center index):
      # the same global step draws the same numbers whatever the call boundaries.
      from dl_jax.text import native  # pylint: disable=g-import-not-at-top
      lr = jnp.maximum(lr0 - (lr0 - lr_min) * progress, lr_min)
      seed = jax.random.fold_in(key, g)
      if jnp.issubdtype(seed.dtype, jax.dtypes.prng_key):
        seed = jax.random.key_data(seed)
      E, C, loss, pairs = native.word2vec_step_rng(
          E, C, toks, doc, seed, accept, alias, lr, jnp.where(s < limit, N, 0),
          cbow=spec.model == "cbow", window=L, negative=spec.negative,
          threads=spec.native_threads)
      return (E, C), (loss, pairs)
    kw, kn = jax.random.split(jax.random.fold_in(key, g))
    widths = models.window_widths(kw, N, L)
    mask = models.stream_window_mask(doc, doc >= 0, widths, L)
    lr = jnp.maximum(lr0 - (lr0 - lr_min) * progress, lr_min) * (s < limit)
    centers = toks[L:L + N]
    x = E[toks]
    if spec.loss == "negative_sampling":
      negs = models.sample_alias(kn, accept, alias, (G, k))
      out_ids = jnp.concatenate([centers, negs.reshape(-1)])
      # Materialize the gathered rows once (XLA:CPU would otherwise fuse the gathers into each of
      # their many consumers); ~15 % faster per step.
      x, rows, mask = jax.lax.optimization_barrier((x, C[out_ids], mask))
      loss, (gx, grows) = jax.value_and_grad(
          lambda x, r: _stream_loss(spec, x, (r[:N], r[N:].reshape(G, k, -1)), mask),
          argnums=(0, 1))(x, rows)
      E = E.at[toks].add(_scaled(-lr, toks, vocab_size, spec.row_scale) * gx)
      C = C.at[out_ids].add(_scaled(-lr, out_ids, vocab_size, spec.row_scale) * grows)
    else:
      loss, (gx, gc) = jax.value_and_grad(
          lambda x, c: _stream_loss(spec, x, (c, centers), mask), argnums=(0, 1))(x, C)
      E = E.at[toks].add(_scaled(-lr, toks, vocab_size, spec.row_scale) * gx)
      C = C - lr * gc
    pairs = jnp.sum(mask) if spec.model == "skipgram" else jnp.sum(jnp.any(mask, axis=1))
    return (E, C), (loss, pairs.astype(jnp.float32))

  def run(E, C, *args):
    body = functools.partial(step, **dict(zip(_ARGS, args)))
    return jax.lax.scan(body, (E, C), jnp.arange(S))

  def call(E, C, *args):
    (E1, C1), (losses, pairs) = run(E, C, *args)
    # The non-finite guard's gradient norm: the norm of the call's summed SGD updates over the
    # initial learning rate (the sequential kernel has no per-step gradient to report).
    lr0 = dict(zip(_ARGS, args))["lr0"]
    grad_norm = jnp.sqrt(jnp.sum(jnp.square(E1 - E)) + jnp.sum(jnp.square(C1 - C))) / lr0
    return E1, C1, losses, pairs, grad_norm

  return jit_step(call, donate_argnums=(0, 1))


_ARGS = ("tokens", "docs", "first", "limit", "step0", "total_steps", "key", "lr0", "lr_min",
         "accept", "alias")


def _scaled(lr, ids, vocab_size, how):
  """lr per gathered row, (R, 1); with row_scale "sqrt" divided by sqrt(occurrences in the step)."""
  if how == "none":
    return jnp.full((ids.shape[0], 1), lr, jnp.float32)
  counts = jnp.zeros((vocab_size,), jnp.float32).at[ids].add(1.0)
  return (lr * jax.lax.rsqrt(counts[ids]))[:, None]


def pad_stream(tokens: np.ndarray, docs: np.ndarray, spec: StreamSpec, length: int = 0):
  """Pads an epoch stream for `make_word2vec_call` (padding: token 0, document -1), to
  L + max(len(tokens), length) + L + N S entries: with `length` the unsubsampled corpus length,
  every epoch has the same shape and the call compiles once."""
  L = spec.window
  tail = max(length - len(tokens), 0) + spec.window + spec.batch * spec.steps_per_call
  t = np.concatenate([np.zeros(L, np.int32), tokens, np.zeros(tail, np.int32)])
  d = np.concatenate([np.full(L, -1, np.int32), docs, np.full(tail, -1, np.int32)])
  return t, d


class Word2Vec:
  """Skip-gram / CBOW training over epochs of subsampled streams, step by step resumable.

  `run(E, C, start_step, stop_step, on_call)` advances from global step `start_step` to
  `stop_step`; the epoch layout (steps per epoch) is fixed by (corpus, seed, sample, batch).
  """

  def __init__(self, corpus: Corpus, spec: StreamSpec, *, dim: int, sample: float, epochs: int,
               seed: int, learning_rate: float, min_learning_rate: float,
               data_dir: str | None = None):
    spec = dataclasses.replace(spec, engine=resolve_engine(spec, data_dir))
    if spec.batch == 0:
      spec = dataclasses.replace(spec, batch=DEFAULT_BATCH[spec.engine])
    self.engine = spec.engine  # the engine that runs: "xla" or "native"
    self.corpus, self.spec, self.dim, self.epochs, self.seed = corpus, spec, dim, epochs, seed
    self.vocab_size = len(corpus.vocab)
    self.keep = corpus.vocab.keep_probabilities(sample)
    self._call = make_word2vec_call(spec, self.vocab_size)
    accept, alias = models.alias_table(corpus.vocab.noise_distribution(0.75))
    self.accept, self.alias = jnp.asarray(accept), jnp.asarray(alias)
    self.lr0, self.lr_min = np.float32(learning_rate), np.float32(min_learning_rate)
    self.key = jax.random.PRNGKey(seed)
    self._stream_cache = {}
    self._padded_epoch, self._padded = None, None
    self.epoch_lengths = [len(self.stream(e)[0]) for e in range(epochs)]
    self.steps_per_epoch = [max(1, math.ceil(n / spec.batch)) for n in self.epoch_lengths]
    self.epoch_starts = np.concatenate([[0], np.cumsum(self.steps_per_epoch)]).astype(int)
    self.total_steps = int(self.epoch_starts[-1])

  def stream(self, epoch: int):
    if epoch not in self._stream_cache:
      self._stream_cache = {epoch: epoch_stream(self.corpus.ids, self.corpus.offsets, self.keep,
                                                self.seed, epoch)}
    return self._stream_cache[epoch]

  def init(self, key=None) -> tuple[jax.Array, jax.Array]:
    """(E, C) from fold_in(key, 2^31 - 1); `key` defaults to PRNGKey(seed), the run's key."""
    key = self.key if key is None else key
    p = models.init_word2vec(jax.random.fold_in(key, -1 & 0x7fffffff), self.vocab_size, self.dim)
    return p["E"], p["C"]

  def call(self, E, C, step: int, stop_step: int):
    """One jitted call from global step `step`: up to `steps_per_call` steps, never past
    `stop_step` or the epoch's end. Returns (E, C, losses [n], pairs [n], grad_norm, step + n)."""
    epoch = int(np.searchsorted(self.epoch_starts, step, side="right") - 1)
    if self._padded_epoch != epoch:
      self._padded = [jnp.asarray(a) for a in pad_stream(*self.stream(epoch), self.spec,
                                                         len(self.corpus.ids))]
      self._padded_epoch = epoch
    first = step - self.epoch_starts[epoch]
    count = int(min(self.spec.steps_per_call, stop_step - step,
                    self.epoch_starts[epoch + 1] - step))
    E, C, losses, pairs, grad_norm = self._call(
        E, C, self._padded[0], self._padded[1], np.int32(first), np.int32(count), np.int32(step),
        np.float32(self.total_steps), self.key, self.lr0, self.lr_min, self.accept, self.alias)
    return E, C, losses[:count], pairs[:count], grad_norm, step + count

  def run(self, E, C, start_step: int, stop_step: int, on_call=None):
    """Steps [start_step, stop_step); `on_call(step_after, (E, C), losses, pairs)` after a call.

    on_call may return True to stop early (at a call boundary). Returns ((E, C), step reached).
    """
    step = start_step
    while step < stop_step:
      E, C, losses, pairs, _, step = self.call(E, C, step, stop_step)
      if on_call is not None and on_call(step, (E, C), losses, pairs):
        break
    return (E, C), step
