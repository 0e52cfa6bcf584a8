"""The encoded corpus of the chapter-3 experiments: vocabulary, token ids, document offsets, and
the subsampled stream of an epoch."""

import dataclasses

import numpy as np

from dl_jax.errors import ConfigError


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
