"""A word vocabulary: counts, ids, subsampling and the negative-sampling noise.

The vocabulary maps the V kept words to ids 0..V-1 in order of decreasing
count (ties broken alphabetically), the order gensim and word2vec use, so id 0
is the most frequent word. It is the index of the one-hot vectors that the
embedding matrix E of section 3.2 (figure 3.6) maps to dense vectors.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
from collections.abc import Iterable, Sequence

import numpy as np

from dl_jax.errors import ConfigError, DataError


@dataclasses.dataclass(frozen=True, eq=False)
class Vocabulary:
  """Words sorted by count (descending, ties by word) and their counts.

  Attributes:
    words: the V words; word i has id i.
    counts: int64[V], how often each word occurs in the documents it was
      built from.
  """
  words: tuple[str, ...]
  counts: np.ndarray

  def __post_init__(self):
    counts = np.asarray(self.counts, np.int64)
    object.__setattr__(self, "words", tuple(self.words))
    object.__setattr__(self, "counts", counts)
    counts.flags.writeable = False
    if counts.shape != (len(self.words),):
      raise DataError(f"Vocabulary has {len(self.words)} words but counts of "
                      f"shape {counts.shape}; give one count per word.")
    if len(set(self.words)) != len(self.words):
      raise DataError("Vocabulary words repeat; give each word once.")
    if counts.size and (counts.min() < 1 or np.any(np.diff(counts) > 0)):
      raise DataError("Vocabulary counts must be positive and in decreasing "
                      "order (words sorted by count).")

  @classmethod
  def from_documents(cls, docs: Iterable[Sequence[str]], min_count: int = 5,
                     max_size: int | None = None) -> "Vocabulary":
    """Counts the words of `docs` and keeps the frequent ones.

    Args:
      docs: documents as sequences of tokens.
      min_count: words occurring fewer times are dropped (gensim's default 5).
      max_size: if given, keep at most this many of the most frequent words.
    """
    if not isinstance(min_count, (int, np.integer)) or min_count < 1:
      raise ConfigError(f"min_count={min_count!r}; use an integer >= 1.")
    if max_size is not None and (not isinstance(max_size, (int, np.integer))
                                 or max_size < 1):
      raise ConfigError(f"max_size={max_size!r}; use a positive integer or "
                        "None.")
    if isinstance(docs, str):
      raise ConfigError("docs is a string; give a list of token lists.")
    counter = collections.Counter(itertools.chain.from_iterable(docs))
    kept = sorted(((-c, w) for w, c in counter.items() if c >= min_count))
    if max_size is not None:
      kept = kept[:max_size]
    return cls(tuple(w for _, w in kept),
               np.array([-c for c, _ in kept], np.int64))

  def __len__(self) -> int:
    return len(self.words)

  @property
  def size(self) -> int:
    return len(self.words)

  @property
  def total(self) -> int:
    """Number of in-vocabulary tokens of the documents it was built from."""
    return int(self.counts.sum())

  @functools.cached_property
  def index(self) -> dict[str, int]:
    """word -> id."""
    return {w: i for i, w in enumerate(self.words)}

  def lookup(self, word: str) -> int:
    """The id of `word`, or -1 if it is not in the vocabulary."""
    return self.index.get(word, -1)

  def __contains__(self, word: str) -> bool:
    return word in self.index

  def encode(self, docs: Iterable[Sequence[str]]
             ) -> tuple[np.ndarray, np.ndarray]:
    """Maps documents to ids, dropping out-of-vocabulary tokens.

    Returns:
      (ids int32[T], offsets int64[D+1]): document d is
      ids[offsets[d]:offsets[d+1]] (possibly empty).
    """
    if isinstance(docs, str):
      raise ConfigError("docs is a string; give a list of token lists.")
    index = self.index
    chunks, lengths = [], []
    for doc in docs:
      ids = np.fromiter((index.get(w, -1) for w in doc), np.int32)
      ids = ids[ids >= 0]
      chunks.append(ids)
      lengths.append(ids.size)
    ids = np.concatenate(chunks) if chunks else np.zeros(0, np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
    return ids.astype(np.int32), offsets.astype(np.int64)

  def decode(self, ids: Sequence[int] | np.ndarray) -> list[str]:
    """Maps ids back to words."""
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() >= len(self.words)):
      raise DataError(f"ids range over [{ids.min()}, {ids.max()}]; accepted: "
                      f"0..{len(self.words) - 1}.")
    return [self.words[i] for i in ids.ravel().tolist()]

  def keep_probabilities(self, sample: float = 1e-3) -> np.ndarray:
    """Probability of keeping each occurrence of a word when subsampling.

    word2vec's subsampling of frequent words (Mikolov et al. 2013b) as the C
    tool and gensim 4 (`Word2Vec.prepare_vocab`) implement it: with t =
    sample * total the kept probability is

      p_keep(w) = min(1, (sqrt(count(w) / t) + 1) * t / count(w)),

    (not the paper's 1 - sqrt(t / count)). sample = 0 keeps everything.

    Returns:
      float32[V].
    """
    if not np.isfinite(sample) or sample < 0 or sample >= 1:
      raise ConfigError(f"sample={sample!r}; use a number in [0, 1) (0 keeps "
                        "every word; word2vec uses 1e-3 to 1e-5).")
    counts = self.counts.astype(np.float64)
    if sample == 0 or not counts.size:
      return np.ones(counts.shape, np.float32)
    threshold = sample * counts.sum()
    keep = (np.sqrt(counts / threshold) + 1) * threshold / counts
    return np.minimum(keep, 1.0).astype(np.float32)

  def noise_distribution(self, power: float = 0.75) -> np.ndarray:
    """The negative-sampling distribution P_n(w) ~ count(w)**power.

    power 0.75 is word2vec's (and gensim's `ns_exponent`); 1 is the unigram
    distribution, 0 the uniform one.

    Returns:
      float64[V], summing to 1.
    """
    if not np.isfinite(power):
      raise ConfigError(f"power={power!r}; use a finite number (word2vec: "
                        "0.75).")
    if not self.counts.size:
      raise DataError("The vocabulary is empty: no noise distribution.")
    weights = self.counts.astype(np.float64) ** power
    return weights / weights.sum()
