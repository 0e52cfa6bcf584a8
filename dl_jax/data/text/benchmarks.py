"""Word-embedding benchmarks for chapter 3: the Google analogy questions
(section 3.4) and the WordSim-353 / SimLex-999 word similarity sets, read from
the gensim wheel of `corpora` (never imported)."""

from __future__ import annotations

from dl_jax.data import fetch
from dl_jax.data.text.corpora import _TEST_DATA, _decode, _gensim_wheel
from dl_jax.errors import ConfigError, DataError

SIMILARITY_SETS = ("wordsim353", "simlex999")
# Analogy sections 0-4 are semantic, 5-13 syntactic (Mikolov et al. 2013).
SEMANTIC_SECTIONS = ("capital-common-countries", "capital-world", "currency",
                     "city-in-state", "family")
ANALOGY_MEMBER = f"{_TEST_DATA}/questions-words.txt"
SIMILARITY_MEMBERS = {"wordsim353": f"{_TEST_DATA}/wordsim353.tsv",
                      "simlex999": f"{_TEST_DATA}/simlex999.txt"}


def _gensim_member(member: str, data_dir: str | None) -> str:
  root = fetch.data_dir(data_dir)
  archive = _gensim_wheel(root)
  return _decode(fetch.read_member(archive, member), f"{archive}:{member}")


def parse_analogies(text: str, where: str = "analogy file"
                    ) -> list[tuple[str, str, str, str, str]]:
  """Parses the questions-words format into (section, a, b, c, d) tuples.

  Words are lowercased (the evaluation is case-insensitive, as gensim's).
  """
  questions = []
  section = None
  for number, line in enumerate(text.splitlines(), 1):
    line = line.strip()
    if not line:
      continue
    if line.startswith(":"):
      section = line[1:].strip()
      continue
    words = line.lower().split()
    if section is None or len(words) != 4:
      raise DataError(
          f"{where} line {number}: {line!r} is not a question of four words "
          "after a ': section' line.")
    questions.append((section, *words))
  return questions


def load_analogies(data_dir: str | None = None
                   ) -> list[tuple[str, str, str, str, str]]:
  """The Google analogy questions (19,544 in 14 sections), lowercase.

  Each is (section, a, b, c, d): "a is to b as c is to d" (section 3.4).
  """
  return parse_analogies(_gensim_member(ANALOGY_MEMBER, data_dir),
                         ANALOGY_MEMBER)


def load_word_similarity(name: str, data_dir: str | None = None
                         ) -> list[tuple[str, str, float]]:
  """A word-similarity set: (word1, word2, human score) triples.

  Args:
    name: "wordsim353" (353 pairs, scores 0-10) or "simlex999" (999 pairs).
    data_dir: cache directory; default from `fetch.data_dir`.
  """
  if name not in SIMILARITY_SETS:
    raise ConfigError(f"Unknown word-similarity set {name!r}; accepted: "
                      f"{', '.join(SIMILARITY_SETS)}.")
  member = SIMILARITY_MEMBERS[name]
  pairs = []
  for number, line in enumerate(
      _gensim_member(member, data_dir).splitlines(), 1):
    if not line.strip() or line.startswith("#"):
      continue
    fields = line.split("\t")
    try:
      pairs.append((fields[0].lower(), fields[1].lower(), float(fields[2])))
    except (IndexError, ValueError) as e:
      raise DataError(f"{member} line {number}: {line!r} is not 'word1<TAB>"
                      "word2<TAB>score'.") from e
  return pairs
