"""Training examples for the word-embedding models of chapter 3.

A corpus is (ids int32[T], offsets int64[D+1]) as `Vocabulary.encode` returns
it: document d is ids[offsets[d]:offsets[d+1]]. No example ever mixes words of
two documents.

* `ngram_examples`: the n-gram model of eq. 3.3 (NPLM, section 3.2): the n-1
  previous words and the next one.
* `cbow_examples`: CBOW (section 3.3.1, eq. 3.6): a window around each word
  and the word.
* `skipgram_pairs`: skip-gram (section 3.3.2): (center, context) pairs.

CBOW and skip-gram draw, for each word, a window size 1 <= L <= L_max
uniformly at random (section 3.3.2, step 1; word2vec's "reduced window").
`subsample` drops frequent words first (word2vec's subsampling). Everything is
vectorised numpy and a pure function of (seed, epoch): the same pair gives the
same arrays, another epoch another draw and order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dl_jax.errors import ConfigError, DataError

# Distinct random streams for the different generators of one (seed, epoch).
_SUBSAMPLE, _SKIPGRAM, _CBOW, _SPLIT = 1, 2, 3, 4


def _rng(seed: int, epoch: int, stream: int) -> np.random.Generator:
  for name, value in (("seed", seed), ("epoch", epoch)):
    if not isinstance(value, (int, np.integer)) or value < 0:
      raise ConfigError(f"{name}={value!r}; use a non-negative integer.")
  return np.random.default_rng(
      np.random.SeedSequence([int(seed), int(epoch), stream]))


def _check_corpus(ids, offsets) -> tuple[np.ndarray, np.ndarray]:
  ids = np.asarray(ids)
  offsets = np.asarray(offsets)
  if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
    raise DataError(f"ids has dtype {ids.dtype} and shape {ids.shape}; "
                    "expected a 1-D integer array.")
  if (offsets.ndim != 1 or offsets.size < 1 or
      not np.issubdtype(offsets.dtype, np.integer) or offsets[0] != 0 or
      offsets[-1] != ids.size or np.any(np.diff(offsets) < 0)):
    raise DataError(
        f"offsets (shape {offsets.shape}) must be non-decreasing integers from "
        f"0 to len(ids)={ids.size}, as Vocabulary.encode returns.")
  return ids.astype(np.int32, copy=False), offsets.astype(np.int64, copy=False)


def _check_window(name: str, value) -> int:
  if not isinstance(value, (int, np.integer)) or value < 1:
    raise ConfigError(f"{name}={value!r}; use a positive integer.")
  return int(value)


def _document_bounds(offsets: np.ndarray, num_tokens: int
                     ) -> tuple[np.ndarray, np.ndarray]:
  """Per token: the start and end (exclusive) of its document."""
  lengths = np.diff(offsets)
  return (np.repeat(offsets[:-1], lengths)[:num_tokens],
          np.repeat(offsets[1:], lengths)[:num_tokens])


def subsample(ids, offsets, keep_probs, seed: int, epoch: int
              ) -> tuple[np.ndarray, np.ndarray]:
  """Drops each token independently with probability 1 - keep_probs[id].

  Use `Vocabulary.keep_probabilities` (word2vec's formula); run this before
  `skipgram_pairs`/`cbow_examples` each epoch, as word2vec does, so windows
  reach over the dropped frequent words.

  Returns:
    (ids int32[T'], offsets int64[D+1]) of the kept tokens, same documents.
  """
  ids, offsets = _check_corpus(ids, offsets)
  keep_probs = np.asarray(keep_probs, np.float64)
  if keep_probs.ndim != 1 or (ids.size and ids.max() >= keep_probs.size):
    raise DataError(f"keep_probs has shape {keep_probs.shape}; expected one "
                    "probability per vocabulary word.")
  keep = _rng(seed, epoch, _SUBSAMPLE).random(ids.size) < keep_probs[ids]
  kept_before = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
  return ids[keep], kept_before[offsets]


def draw_windows(num_tokens: int, max_window: int,
                 rng: np.random.Generator) -> np.ndarray:
  """Window sizes L uniform in 1..max_window, one per token (int32)."""
  return rng.integers(1, max_window + 1, size=num_tokens, dtype=np.int32)


def skipgram_pairs(ids, offsets, max_window: int, seed: int, epoch: int
                   ) -> tuple[np.ndarray, np.ndarray]:
  """Skip-gram training pairs, section 3.3.2.

  For every word w_t a window size 1 <= L <= max_window is drawn and the pairs
  (w_t, w_{t-L}), ..., (w_t, w_{t-1}), (w_t, w_{t+1}), ..., (w_t, w_{t+L})
  that stay inside w_t's document are emitted.

  Returns:
    (centers int32[P], contexts int32[P]), shuffled.
  """
  ids, offsets = _check_corpus(ids, offsets)
  max_window = _check_window("max_window", max_window)
  rng = _rng(seed, epoch, _SKIPGRAM)
  windows = draw_windows(ids.size, max_window, rng)
  start, end = _document_bounds(offsets, ids.size)
  pos = np.arange(ids.size, dtype=np.int64)
  centers, contexts = [], []
  for k in range(1, max_window + 1):
    in_window = windows >= k
    for other in (pos - k, pos + k):
      valid = in_window & (other >= start) & (other < end)
      centers.append(ids[valid])
      contexts.append(ids[other[valid]])
  centers = np.concatenate(centers)
  contexts = np.concatenate(contexts)
  order = rng.permutation(centers.size)
  return centers[order], contexts[order]


def cbow_examples(ids, offsets, max_window: int, seed: int, epoch: int
                  ) -> tuple[np.ndarray, np.ndarray]:
  """CBOW examples, section 3.3.1 (eq. 3.6) with the windows of 3.3.2.

  For every word w_t with at least one neighbour in its document, a window
  size 1 <= L <= max_window is drawn; the context is w_{t-L}..w_{t-1},
  w_{t+1}..w_{t+L} clipped to the document.

  Returns:
    (contexts int32[N, 2 * max_window], targets int32[N]), rows shuffled.
    Column j < max_window holds w_{t-max_window+j}, column max_window + j
    holds w_{t+1+j}; positions outside the window or the document are -1, so
    the mean of eq. 3.8 is over the entries >= 0.
  """
  ids, offsets = _check_corpus(ids, offsets)
  max_window = _check_window("max_window", max_window)
  rng = _rng(seed, epoch, _CBOW)
  windows = draw_windows(ids.size, max_window, rng)
  start, end = _document_bounds(offsets, ids.size)
  pos = np.arange(ids.size, dtype=np.int64)
  shifts = np.concatenate([np.arange(-max_window, 0),
                           np.arange(1, max_window + 1)])
  other = pos[:, None] + shifts[None, :]
  valid = ((np.abs(shifts)[None, :] <= windows[:, None]) &
           (other >= start[:, None]) & (other < end[:, None]))
  contexts = np.where(valid, ids[np.clip(other, 0, max(ids.size - 1, 0))]
                      if ids.size else -1, -1).astype(np.int32)
  has_context = valid.any(axis=1)
  contexts, targets = contexts[has_context], ids[has_context]
  order = rng.permutation(targets.size)
  return contexts[order], targets[order]


def ngram_examples(ids, offsets, context_size: int
                   ) -> tuple[np.ndarray, np.ndarray]:
  """n-gram examples for the NPLM, eqs. 3.2-3.3: the n-1 previous words.

  Every word w_t with context_size = n-1 predecessors in its own document
  gives one example (w_{t-n+1}, ..., w_{t-1}) -> w_t; the first n-1 words of
  a document are only context. In corpus order (deterministic).

  Returns:
    (contexts int32[N, context_size], targets int32[N]).
  """
  ids, offsets = _check_corpus(ids, offsets)
  context_size = _check_window("context_size", context_size)
  if ids.size <= context_size:
    return (np.zeros((0, context_size), np.int32), np.zeros(0, np.int32))
  grams = np.lib.stride_tricks.sliding_window_view(ids, context_size + 1)
  first = np.arange(grams.shape[0], dtype=np.int64)
  start, _ = _document_bounds(offsets, ids.size)
  last = first + context_size
  valid = start[last] <= first
  grams = grams[valid]
  return (np.ascontiguousarray(grams[:, :-1], np.int32),
          np.ascontiguousarray(grams[:, -1], np.int32))


def split_documents(offsets, fractions: Sequence[float] = (0.9, 0.05, 0.05),
                    seed: int = 0) -> list[np.ndarray]:
  """Randomly splits the documents, e.g. into train/validation/test.

  Whole documents go to one part, so no n-gram of a held-out part was seen in
  training (for the NPLM's held-out perplexity).

  Returns:
    One sorted int64 array of document indices per fraction; together a
    partition of range(D). Part sizes are the fractions (normalised) of D,
    rounded.
  """
  offsets = np.asarray(offsets)
  fractions = np.asarray(fractions, np.float64)
  if (fractions.ndim != 1 or fractions.size < 1 or
      not np.all(np.isfinite(fractions)) or np.any(fractions < 0) or
      fractions.sum() <= 0):
    raise ConfigError(f"fractions={tuple(fractions.tolist())}; use "
                      "non-negative numbers with a positive sum.")
  num_docs = offsets.size - 1
  bounds = np.rint(np.cumsum(fractions) / fractions.sum() * num_docs)
  bounds = np.concatenate([[0], bounds]).astype(np.int64)
  order = _rng(seed, 0, _SPLIT).permutation(num_docs)
  return [np.sort(order[a:b]).astype(np.int64)
          for a, b in zip(bounds[:-1], bounds[1:])]


def select_documents(ids, offsets, documents
                     ) -> tuple[np.ndarray, np.ndarray]:
  """The sub-corpus made of the given documents (in the order given)."""
  ids, offsets = _check_corpus(ids, offsets)
  documents = np.asarray(documents, np.int64).ravel()
  if documents.size and (documents.min() < 0 or
                         documents.max() >= offsets.size - 1):
    raise DataError(f"document indices range over [{documents.min()}, "
                    f"{documents.max()}]; accepted: 0..{offsets.size - 2}.")
  starts, ends = offsets[documents], offsets[documents + 1]
  lengths = ends - starts
  new_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
  # Position of every kept token in the old corpus.
  within = np.arange(new_offsets[-1]) - np.repeat(new_offsets[:-1], lengths)
  return ids[np.repeat(starts, lengths) + within], new_offsets
