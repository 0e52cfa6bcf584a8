"""`train_and_evaluate` for the word-embedding experiments of chapter 3 (config.trainer "word2vec").

Sections: config checks, data, the word2vec engine (skip-gram and CBOW, eq. 3.6-3.13), the NPLM
engine (eq. 3.2-3.5), the run (resume, progress, checkpoints, preemption) and the evaluation
(analogies of section 3.4, word similarity, neighbours, projection, vectors.txt).

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
are 8192 centers (batch_size 0; the XLA engine's 1024); `native_threads` 2 trains the two halves
of a step on two threads from the same starting tables and adds both changes (deterministic).
Measured (bench/word2vec.py defaults, 5 epochs, 2 cores shared with other processes, load average
2-3, gensim 4.4.0 workers=2 in the same process): skip-gram 16.1 s / 6.39 % analogies (2 threads;
6.73 % and 6.67 % with seeds 2 and 3) against gensim's 36.1 s / 6.69 %; CBOW 5.8 s / 6.86 %
(1 thread) against 5.3 s / 4.66 %; 50-80 s with the XLA body.

Options measured in bench/word2vec.py: `noise_group` / `noise_pool` let groups of consecutive
centers share k' noise words, weighted k / k' so that the expected loss is unchanged (fewer rows to
gather and scatter, larger batched products); `row_scale` "sqrt" divides the summed update of a row
by sqrt(m), m its occurrences in the step (word2vec applies the m updates one after the other; the
plain sum, "none", trained better in our runs at N = 1024).
"""

import dataclasses
import functools
import json
import math
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from absl import logging

from dl_jax.errors import ConfigError, DlJaxError, require_positive_int
from dl_jax.text import models
from dl_jax.train import checkpoint, metrics
from dl_jax.train.loop import StopRequest, close_preempted, versions


class NonFiniteError(DlJaxError):
  """The loss stopped being finite."""
  exit_code = 1


ROW_SCALES = ("sqrt", "none")
ENGINES = ("auto", "xla", "native")
# Centers per step when batch_size is 0: the native kernel's sequential loop gains from long steps
# (fewer calls), the XLA body's summed sparse updates from short ones.
DEFAULT_BATCH = {"native": 8192, "xla": 1024}


# ---------------------------------------------------------------------------------------------
# Config checks

def validate_config(config: ml_collections.ConfigDict) -> None:
  """Fails on the first bad value with a message naming it and what is accepted."""
  if config.model not in models.MODELS:
    raise ConfigError(f"unknown model {config.model!r}; accepted: {', '.join(models.MODELS)}")
  if config.loss not in models.LOSSES:
    raise ConfigError(f"unknown loss {config.loss!r}; accepted: {', '.join(models.LOSSES)}")
  for key in ("dim", "window", "negative", "min_count", "epochs", "steps_per_call",
              "log_every_steps", "checkpoint_every_steps", "keep_checkpoints"):
    require_positive_int(config, key)
  if config.model == "nplm":
    require_positive_int(config, "batch_size")
  elif (not isinstance(config.batch_size, int) or isinstance(config.batch_size, bool)
        or config.batch_size < 0):
    raise ConfigError(f"batch_size={config.batch_size!r} must be a positive integer or 0 (the "
                      f"engine's default: {DEFAULT_BATCH['native']} native, "
                      f"{DEFAULT_BATCH['xla']} xla)")
  require_positive_int(config, "noise_group")
  if config.batch_size % config.noise_group:
    raise ConfigError(f"noise_group={config.noise_group} must divide batch_size="
                      f"{config.batch_size}")
  for key in ("max_steps", "max_vocab", "max_tokens", "noise_pool"):
    if not isinstance(config[key], int) or config[key] < 0:
      raise ConfigError(f"{key}={config[key]!r} must be 0 (no limit) or a positive integer")
  if not isinstance(config.sample, (int, float)) or not 0 <= config.sample < 1:
    raise ConfigError(f"sample={config.sample!r} must be a number in [0, 1) (0: no subsampling)")
  if not config.learning_rate > 0 or not 0 <= config.min_learning_rate <= config.learning_rate:
    raise ConfigError(f"learning_rate={config.learning_rate!r} and min_learning_rate="
                      f"{config.min_learning_rate!r} must satisfy 0 <= min <= learning_rate, "
                      "learning_rate > 0")
  if config.row_scale not in ROW_SCALES:
    raise ConfigError(f"unknown row_scale {config.row_scale!r}; accepted: {', '.join(ROW_SCALES)}")
  if config.get("engine", "auto") not in ENGINES:
    raise ConfigError(f"unknown engine {config.engine!r}; accepted: {', '.join(ENGINES)}")
  if config.get("native_threads", 1) not in (1, 2):
    raise ConfigError(f"native_threads={config.native_threads!r} must be 1 or 2")
  if config.model == "nplm":
    require_positive_int(config, "hidden")
  if not config.corpus or isinstance(config.corpus, str):
    raise ConfigError(f"corpus={config.corpus!r} must be a non-empty tuple of corpus names")


# ---------------------------------------------------------------------------------------------
# Data

@dataclasses.dataclass(frozen=True)
class Corpus:
  """The encoded corpus: vocabulary, ids int32[T] and document offsets int64[D+1]."""
  vocab: object
  ids: np.ndarray
  offsets: np.ndarray


def load_encoded(corpus_names, min_count: int, max_vocab: int = 0, max_tokens: int = 0,
                 data_dir: str | None = None, docs=None) -> Corpus:
  """Loads (or takes) the documents, builds the vocabulary and encodes them.

  `max_tokens` > 0 keeps the first documents up to that many tokens (short runs and tests).
  """
  from dl_jax.data import text  # pylint: disable=g-import-not-at-top
  from dl_jax.text import vocab as vocab_lib  # pylint: disable=g-import-not-at-top
  if docs is None:
    docs = text.load_corpus(tuple(corpus_names), data_dir)
  if max_tokens:
    kept, total = [], 0
    for d in docs:
      if total >= max_tokens:
        break
      kept.append(d)
      total += len(d)
    docs = kept
  vocab = vocab_lib.Vocabulary.from_documents(docs, min_count, max_vocab or None)
  if len(vocab) < 2:
    raise ConfigError(f"min_count={min_count} leaves {len(vocab)} word(s) in the vocabulary; "
                      "lower min_count or use more text")
  ids, offsets = vocab.encode(docs)
  return Corpus(vocab, ids, offsets)


def epoch_stream(ids: np.ndarray, offsets: np.ndarray, keep: np.ndarray, seed: int,
                 epoch: int) -> tuple[np.ndarray, np.ndarray]:
  """Subsampled stream of an epoch: (tokens int32[n], document index int32[n]).

  Token i is kept with probability keep[ids[i]] (word2vec's subsampling), with a generator seeded
  by (seed, epoch) only, so the stream of an epoch never depends on where a run was resumed.
  """
  from dl_jax.text import pairs  # pylint: disable=g-import-not-at-top
  if not np.all(keep >= 1):
    ids, offsets = pairs.subsample(ids, offsets, keep, seed, epoch)
  return ids, np.repeat(np.arange(len(offsets) - 1, dtype=np.int32), np.diff(offsets))


# ---------------------------------------------------------------------------------------------
# The word2vec engine

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


@functools.lru_cache(maxsize=8)
def make_word2vec_call(spec: StreamSpec, vocab_size: int):
  """The jitted call: S steps of sparse SGD on (E, C), donated.

  call(E, C, tokens, docs, first, limit, step0, total_steps, key, lr0, lr_min, accept, alias)
    tokens, docs: the epoch stream padded with L entries in front and L + N S behind (docs -1 on
      padding); first: the step within the epoch where this call starts; limit: steps of this
      call at index >= limit are no-ops; step0: the global step of `first`.
  Returns (E, C, losses float32[S] (summed over the step's pairs), pairs float32[S]).
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

  @functools.partial(jax.jit, donate_argnums=(0, 1))
  def call(E, C, *args):
    (E, C), (losses, pairs) = run(E, C, *args)
    return E, C, losses, pairs

  return call


_ARGS = ("tokens", "docs", "first", "limit", "step0", "total_steps", "key", "lr0", "lr_min",
         "accept", "alias")


def _scaled(lr, ids, vocab_size, how):
  """lr per gathered row, (R, 1); with row_scale "sqrt" divided by sqrt(occurrences in the step)."""
  if how == "none":
    return jnp.full((ids.shape[0], 1), lr, jnp.float32)
  counts = jnp.zeros((vocab_size,), jnp.float32).at[ids].add(1.0)
  return (lr * jax.lax.rsqrt(counts[ids]))[:, None]


def pad_stream(tokens: np.ndarray, docs: np.ndarray, spec: StreamSpec):
  """Pads an epoch stream for `make_word2vec_call` (padding: token 0, document -1)."""
  L, tail = spec.window, spec.window + spec.batch * spec.steps_per_call
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
    self.epoch_lengths = [len(self.stream(e)[0]) for e in range(epochs)]
    self.steps_per_epoch = [max(1, math.ceil(n / spec.batch)) for n in self.epoch_lengths]
    self.epoch_starts = np.concatenate([[0], np.cumsum(self.steps_per_epoch)]).astype(int)
    self.total_steps = int(self.epoch_starts[-1])

  def stream(self, epoch: int):
    if epoch not in self._stream_cache:
      self._stream_cache = {epoch: epoch_stream(self.corpus.ids, self.corpus.offsets, self.keep,
                                                self.seed, epoch)}
    return self._stream_cache[epoch]

  def init(self) -> tuple[jax.Array, jax.Array]:
    p = models.init_word2vec(jax.random.fold_in(self.key, -1 & 0x7fffffff), self.vocab_size,
                             self.dim)
    return p["E"], p["C"]

  def run(self, E, C, start_step: int, stop_step: int, on_call=None):
    """Steps [start_step, stop_step); `on_call(step_after, (E, C), losses, pairs)` after a call.

    on_call may return True to stop early (at a call boundary). Returns ((E, C), step reached).
    """
    S = self.spec.steps_per_call
    step = start_step
    padded_epoch, padded = None, None
    while step < stop_step:
      epoch = int(np.searchsorted(self.epoch_starts, step, side="right") - 1)
      if padded_epoch != epoch:
        padded = [jnp.asarray(a) for a in pad_stream(*self.stream(epoch), self.spec)]
        padded_epoch = epoch
      first = step - self.epoch_starts[epoch]
      count = min(S, stop_step - step, self.epoch_starts[epoch + 1] - step)
      E, C, losses, pairs = self._call(
          E, C, padded[0], padded[1], np.int32(first), np.int32(count), np.int32(step),
          np.float32(self.total_steps), self.key, self.lr0, self.lr_min, self.accept, self.alias)
      step += count
      if on_call is not None and on_call(step, (E, C), losses[:count], pairs[:count]):
        break
    return (E, C), step


# ---------------------------------------------------------------------------------------------
# The NPLM engine (eq. 3.2-3.5): minibatches of n-gram examples, dense optax updates

class NPLM:
  """Trains the NPLM on the training documents; perplexities on held-out documents."""

  def __init__(self, corpus: Corpus, config: ml_collections.ConfigDict):
    from dl_jax.text import pairs  # pylint: disable=g-import-not-at-top
    self.config, self.vocab_size = config, len(corpus.vocab)
    train_docs, val_docs, test_docs = pairs.split_documents(
        corpus.offsets, (0.9, 0.05, 0.05), config.split_seed)
    self.parts = {name: pairs.select_documents(corpus.ids, corpus.offsets, docs)
                  for name, docs in (("train", train_docs), ("val", val_docs),
                                     ("test", test_docs))}
    n = config.context_size
    self.examples = {k: pairs.ngram_examples(*v, n) for k, v in self.parts.items()}
    self.steps_per_epoch = len(self.examples["train"][1]) // config.batch_size
    if self.steps_per_epoch == 0:
      raise ConfigError(f"batch_size={config.batch_size} exceeds the "
                        f"{len(self.examples['train'][1])} training n-grams")
    self.total_steps = config.epochs * self.steps_per_epoch
    self.key = jax.random.PRNGKey(config.seed)
    self.tx = optax.adam(optax.linear_schedule(config.learning_rate, config.min_learning_rate,
                                               self.total_steps))
    counts = np.bincount(self.parts["train"][0], minlength=self.vocab_size)
    accept, alias = models.alias_table((counts + 1.0) ** 0.75)
    self.accept, self.alias = jnp.asarray(accept), jnp.asarray(alias)
    self.train_counts = counts
    self._step = jax.jit(self._train_step, donate_argnums=(0, 1))
    self._eval = jax.jit(lambda p, c, t: jnp.sum(models.softmax_cross_entropy(
        models.nplm_logits(p, c), t)))

  def init(self):
    c = self.config
    params = models.init_nplm(jax.random.fold_in(self.key, -1 & 0x7fffffff), self.vocab_size,
                              c.dim, c.context_size, c.hidden)
    return params, self.tx.init(params)

  def _train_step(self, params, opt_state, contexts, targets, step):
    key = jax.random.fold_in(self.key, step)
    if self.config.loss == "softmax":
      loss_fn = lambda p: models.nplm_softmax_loss(p, contexts, targets)
    else:
      negs = models.sample_alias(key, self.accept, self.alias,
                                 (targets.shape[0], self.config.negative))
      loss_fn = lambda p: models.nplm_ns_loss(p, contexts, targets, negs)
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = self.tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  def batch(self, step: int):
    """Examples of global step `step` (0-based); the epoch's order is pure in (seed, epoch)."""
    epoch, i = divmod(step, self.steps_per_epoch)
    order = np.random.default_rng([self.config.seed, epoch, 0x9a]).permutation(
        len(self.examples["train"][1]))
    take = order[i * self.config.batch_size:(i + 1) * self.config.batch_size]
    contexts, targets = self.examples["train"]
    return contexts[take], targets[take]

  def run(self, params, opt_state, start_step, stop_step, on_call=None):
    step = start_step
    losses = []
    while step < stop_step:
      contexts, targets = self.batch(step)
      params, opt_state, loss = self._step(params, opt_state, contexts, targets, np.int32(step))
      losses.append(loss)
      step += 1
      if on_call is not None and (step % self.config.steps_per_call == 0 or step == stop_step):
        stacked = jnp.stack(losses)
        losses = []
        if on_call(step, (params, opt_state), stacked * targets.shape[0],
                   jnp.full(stacked.shape, float(targets.shape[0]))):
          break
    return (params, opt_state), step

  def perplexity(self, params, split: str) -> float:
    contexts, targets = self.examples[split]
    total = 0.0
    for i in range(0, len(targets), 4096):
      total += float(self._eval(params, contexts[i:i + 4096], targets[i:i + 4096]))
    return math.exp(total / max(len(targets), 1))

  def baselines(self) -> dict:
    """Held-out perplexities of the add-one unigram and an interpolated bigram (lambda on val)."""
    V = self.vocab_size
    uni = (self.train_counts + 1.0) / (self.train_counts.sum() + V)
    ids, offsets = self.parts["train"]
    starts = np.zeros(len(ids), bool)
    starts[offsets[:-1][offsets[:-1] < len(ids)]] = True
    prev, nxt = ids[:-1][~starts[1:]], ids[1:][~starts[1:]]
    pair_counts = {}
    keys, counts = np.unique(prev.astype(np.int64) * V + nxt, return_counts=True)
    pair_counts = dict(zip(keys.tolist(), counts.tolist()))
    ctx_counts = np.bincount(prev, minlength=V).astype(np.float64)

    def bigram_nll(split, lam):
      contexts, targets = self.examples[split]
      p, w = contexts[:, -1].astype(np.int64), targets.astype(np.int64)
      c = np.array([pair_counts.get(k, 0) for k in (p * V + w).tolist()], np.float64)
      ml = np.where(ctx_counts[p] > 0, c / np.maximum(ctx_counts[p], 1), uni[w])
      return float(np.mean(-np.log(lam * ml + (1 - lam) * uni[w])))

    lams = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9)
    best = min(lams, key=lambda lam: bigram_nll("val", lam))
    test_targets = self.examples["test"][1]
    return {"unigram_add_one_test_perplexity": float(np.exp(-np.mean(np.log(uni[test_targets])))),
            "bigram_interpolated_test_perplexity": math.exp(bigram_nll("test", best)),
            "bigram_lambda": best}


def _plot_loss(metrics_path, out_path, title: str) -> None:
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  rows = [r for r in metrics.read_metrics(metrics_path) if r["split"] == "train"]
  fig, ax = plt.subplots(figsize=(6, 4))
  ax.plot([r["step"] for r in rows], [r["loss"] for r in rows])
  ax.set_xlabel("step")
  ax.set_ylabel("training loss per example")
  ax.grid(alpha=0.3)
  ax.set_title(title)
  fig.tight_layout()
  fig.savefig(out_path, dpi=120)
  plt.close(fig)


NEIGHBOUR_WORDS = ("king", "war", "whale", "president", "money", "france", "sea", "good")


def evaluate_embeddings(vectors: np.ndarray, words, data_dir=None, run_dir=None) -> dict:
  """Analogies (eq. 3.14, restrict 30k), WordSim-353 / SimLex-999, neighbours, projection."""
  from dl_jax.data import text  # pylint: disable=g-import-not-at-top
  from dl_jax.text import evaluate  # pylint: disable=g-import-not-at-top
  analogy = evaluate.analogy_accuracy(vectors, words, text.load_analogies(data_dir), 30000)
  analogy.pop("predicted", None)
  out = {"analogy": analogy}
  for name in text.SIMILARITY_SETS:
    rho, coverage = evaluate.similarity_spearman(vectors, words,
                                                 text.load_word_similarity(name, data_dir))
    out[name] = {"spearman": None if math.isnan(rho) else rho, "coverage": coverage}
  vocab = set(words)
  out["neighbours"] = {w: [[n, float(c)] for n, c in evaluate.nearest_neighbours(vectors, words,
                                                                                 w, 8)]
                       for w in NEIGHBOUR_WORDS if w in vocab}
  if run_dir is not None:
    evaluate.plot_projection(vectors, words, None, run_dir / "projection.png")
  return out


# ---------------------------------------------------------------------------------------------
# The run

def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict | None:
  """Trains `config.model` (skipgram, cbow or nplm), resuming from `workdir` if it can.

  Returns the final results (also `<workdir>/results.json`), or None when a SIGTERM stopped the
  run after saving a checkpoint.
  """
  # ------------------------------------------------------------------ config and data
  validate_config(config)
  run_dir = checkpoint.prepare_workdir(workdir, config.to_dict())
  data_dir = config.data_dir or None
  corpus = load_encoded(config.corpus, config.min_count, config.max_vocab, config.max_tokens,
                        data_dir)
  if config.model == "nplm":
    engine = NPLM(corpus, config)
    params, opt_state = engine.init()
    state = {"params": params, "opt_state": opt_state}
  else:
    spec = StreamSpec(config.model, config.loss, config.window, config.negative,
                      config.batch_size, config.steps_per_call, config.row_scale,
                      config.noise_group, config.noise_pool, config.get("engine", "auto"),
                      config.get("native_threads", 1))
    engine = Word2Vec(corpus, spec, dim=config.dim, sample=config.sample, epochs=config.epochs,
                      seed=config.seed, learning_rate=config.learning_rate,
                      min_learning_rate=config.min_learning_rate, data_dir=data_dir)
    logging.info("word2vec engine: %s", engine.engine)
    E, C = engine.init()
    state = {"E": E, "C": C}
  # centers (word2vec) or n-grams (NPLM) per step
  examples_per_step = config.batch_size if config.model == "nplm" else engine.spec.batch
  schedule_steps = engine.total_steps
  total_steps = min(schedule_steps, config.max_steps) if config.max_steps else schedule_steps
  steps_per_epoch = schedule_steps / config.epochs

  # ------------------------------------------------------------------ resume or init
  keys = list(state)  # the engine's argument order (a restored dict may order them otherwise)
  ckpt = checkpoint.Checkpointer(run_dir, config.keep_checkpoints)
  train_time = 0.0
  start_step = 0
  latest = ckpt.latest_step()
  if latest is not None:
    restored = ckpt.restore(latest, {"state": state, "train_time_s": np.zeros((), np.float64)})
    state, train_time, start_step = restored["state"], float(restored["train_time_s"]), latest
    logging.info("resumed from %s at step %d", ckpt.directory / str(latest), latest)
  logging.info("%s (%s): vocabulary %d, %d tokens, %d steps (%.0f per epoch), workdir %s",
               config.model, config.loss, len(corpus.vocab), len(corpus.ids), total_steps,
               steps_per_epoch, run_dir)

  # ------------------------------------------------------------------ training loop
  writer = metrics.MetricWriter(run_dir, start_step)
  progress = metrics.Progress(start_step, total_steps, max(1, round(steps_per_epoch)),
                              examples_per_step)
  seg_start = time.perf_counter()
  last = {"step": start_step, "saved": start_step}

  def save(step):
    ckpt.save(step, {"state": state,
                     "train_time_s": np.asarray(train_time + time.perf_counter() - seg_start)})
    last["saved"] = step

  with StopRequest() as stop:
    def on_call(step, arrays, losses, pairs):
      nonlocal state
      state = dict(zip(keys, arrays))
      loss = float(jnp.sum(losses) / jnp.maximum(jnp.sum(pairs), 1))
      if not math.isfinite(loss):
        ckpt.wait()
        raise NonFiniteError(
            f"non-finite loss at step {step}; training stopped. The last good checkpoint (step "
            f"{ckpt.latest_step()}) is kept in {ckpt.directory}; lower learning_rate="
            f"{config.learning_rate}")
      crossed_log = step // config.log_every_steps > last["step"] // config.log_every_steps
      crossed_ckpt = (step // config.checkpoint_every_steps
                      > last["saved"] // config.checkpoint_every_steps)
      last["step"] = step
      if crossed_log or step == total_steps or stop.requested:
        rate = progress.rate(step)
        writer.write(step, "train", {"loss": loss, "examples_per_s": rate})
        logging.info(progress.line(step, loss, 0.0, rate).replace("  acc 0.00%", ""))
      if crossed_ckpt or step == total_steps or stop.requested:
        save(step)
      return stop.requested

    arrays, step = engine.run(*[state[k] for k in keys], start_step, total_steps, on_call)
    state = dict(zip(keys, arrays))
    if stop.requested:
      close_preempted(step, ckpt, writer)
      return None
  train_time += time.perf_counter() - seg_start
  ckpt.wait()
  writer.close()
  ckpt.close()

  # ------------------------------------------------------------------ evaluation and outputs
  from dl_jax.text import evaluate  # pylint: disable=g-import-not-at-top
  words = corpus.vocab.words
  results = {"experiment": config.experiment, "model": config.model, "loss": config.loss,
             "vocab_size": len(words), "tokens": int(len(corpus.ids)), "steps": step,
             "epochs": step / steps_per_epoch, "train_time_s": train_time,
             "train_time_per_epoch_s": train_time / max(step / steps_per_epoch, 1e-9),
             "engine": getattr(engine, "engine", "xla")}
  if config.model == "nplm":
    params = state["params"]
    vectors = np.asarray(params["E"])
    results.update({"val_perplexity": engine.perplexity(params, "val"),
                    "test_perplexity": engine.perplexity(params, "test"),
                    "test_ngrams": int(len(engine.examples["test"][1])), **engine.baselines()})
  else:
    vectors = np.asarray(state["E"])
  results.update(evaluate_embeddings(vectors, words, data_dir, run_dir))
  evaluate.save_word2vec_text(run_dir / "vectors.txt", words, vectors)
  results.update({"seed": config.seed, "platform": jax.default_backend(),
                  "device_kind": jax.devices()[0].device_kind, "versions": versions(),
                  "config": config.to_dict()})
  (run_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))
  _plot_loss(run_dir / "metrics.jsonl", run_dir / "learning_curves.png",
             f"{config.experiment}: analogy accuracy "
             f"{100 * results['analogy']['accuracy']:.2f}%")
  logging.info("analogy accuracy %.2f%% (coverage %.1f%%)%s  (%s)",
               100 * results["analogy"]["accuracy"], 100 * results["analogy"]["coverage"],
               f"  test perplexity {results['test_perplexity']:.1f}"
               if "test_perplexity" in results else "", run_dir / "results.json")
  return results
