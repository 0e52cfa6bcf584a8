"""Word-embedding evaluation (section 3.4), cross-checked against gensim."""

import math

import numpy as np
import pytest
from gensim.models import KeyedVectors

from dl_jax.data import text
from dl_jax.errors import ConfigError, DataError
from dl_jax.text import evaluate

DIM = 32


@pytest.fixture(scope="module")
def questions():
  """About 1,800 real questions, 130 from each of the 14 sections."""
  all_questions = text.load_analogies()
  rng = np.random.default_rng(0)
  by_section = {}
  for q in all_questions:
    by_section.setdefault(q[0], []).append(q)
  picked = []
  for section in by_section.values():
    rows = np.sort(rng.choice(len(section), min(130, len(section)),
                              replace=False))
    picked += [section[i] for i in rows]
  return picked


def _planted(questions, dtype, seed=0, noise=1.6):
  """Random vectors where b - a is roughly a per-section offset.

  The question words are shuffled among fillers, so that with a restricted
  vocabulary some questions are not covered; a few words also appear again
  capitalised and further down, to exercise case-insensitive matching.
  """
  rng = np.random.default_rng(seed)
  qwords = list(dict.fromkeys(w for q in questions for w in q[1:]))
  words = qwords + [f"filler{i}" for i in range(1500)]
  rng.shuffle(words)
  words += [w.capitalize() for w in qwords[:40]]
  index = {w: i for i, w in enumerate(words)}
  vectors = rng.normal(size=(len(words), DIM))
  for section in dict.fromkeys(q[0] for q in questions):
    offset = rng.normal(size=DIM) * 1.5
    for q in questions:
      if q[0] == section:
        for x, y in ((q[1], q[2]), (q[3], q[4])):
          vectors[index[y]] = (vectors[index[x]] + offset +
                               rng.normal(size=DIM) * noise)
  return words, vectors.astype(dtype)


def _write_questions(path, questions):
  with open(path, "w") as f:
    section = None
    for q in questions:
      if q[0] != section:
        section = q[0]
        f.write(f": {section}\n")
      f.write(" ".join(q[1:]) + "\n")


def _keyed_vectors(words, vectors):
  kv = KeyedVectors(vectors.shape[1], count=0, dtype=vectors.dtype)
  kv.add_vectors(list(words), vectors)
  return kv


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_analogy_accuracy_equals_gensim(questions, tmp_path, dtype):
  words, vectors = _planted(questions, dtype)
  restrict = 1800
  path = tmp_path / "questions.txt"
  _write_questions(path, questions)
  score, sections = _keyed_vectors(words, vectors).evaluate_word_analogies(
      str(path), restrict_vocab=restrict)
  ours = evaluate.analogy_accuracy(vectors, words, questions,
                                   restrict_vocab=restrict)
  # A meaningful check: neither all right nor all wrong, not all covered.
  assert 0.2 < ours["accuracy"] < 0.8
  assert 0.3 < ours["coverage"] < 0.9
  assert ours["accuracy"] == pytest.approx(score, abs=1e-12)
  total = sections[-1]
  assert ours["correct"] == len(total["correct"])
  assert ours["covered"] == len(total["correct"]) + len(total["incorrect"])
  gensim_sections = {s["section"]: s for s in sections[:-1]}
  assert set(gensim_sections) == {
      k for k, v in ours["sections"].items() if v["covered"]}
  for name, s in gensim_sections.items():
    assert ours["sections"][name]["correct"] == len(s["correct"]), name
    assert ours["sections"][name]["covered"] == (
        len(s["correct"]) + len(s["incorrect"])), name
  semantic, syntactic = ours["semantic"], ours["syntactic"]
  assert semantic["covered"] + syntactic["covered"] == ours["covered"]
  assert semantic["correct"] + syntactic["correct"] == ours["correct"]
  assert ours["total"] == len(questions)
  assert ours["predicted"].shape == (len(questions),)


def test_analogy_by_hand():
  words = ["man", "woman", "king", "queen", "King", "prince"]
  vectors = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1.1],
                      [0.1, 0.95, 1.05], [0, 0.1, 1]], np.float32)
  q = [("family", "man", "woman", "king", "queen"),
       ("family", "man", "woman", "king", "princess"),
       ("family", "Man", "Woman", "King", "Queen")]
  result = evaluate.analogy_accuracy(vectors, words, q)
  # "King" (id 4) is closest to king - man + woman but is "king": skipped.
  assert result["predicted"].tolist() == [3, -1, 3]
  assert (result["correct"], result["covered"], result["total"]) == (2, 2, 3)
  assert result["coverage"] == pytest.approx(2 / 3)
  assert result["sections"]["family"]["accuracy"] == 1.0
  assert result["semantic"]["covered"] == 2
  assert result["syntactic"]["covered"] == 0
  # Restricting the vocabulary to 3 words leaves no question covered.
  assert evaluate.analogy_accuracy(vectors, words, q, 3)["covered"] == 0
  with pytest.raises(ConfigError, match="restrict_vocab=0"):
    evaluate.analogy_accuracy(vectors, words, q, 0)
  with pytest.raises(DataError, match="shape"):
    evaluate.analogy_accuracy(vectors[:3], words, q)


@pytest.mark.parametrize("name", text.SIMILARITY_SETS)
def test_similarity_spearman_equals_gensim(name, tmp_path):
  pairs = text.load_word_similarity(name)
  rng = np.random.default_rng(1)
  vocab = list(dict.fromkeys(w for p in pairs for w in p[:2]))
  rng.shuffle(vocab)
  words = vocab[:int(0.8 * len(vocab))] + ["Tiger", "filler"]
  vectors = rng.normal(size=(len(words), DIM))
  path = tmp_path / "pairs.tsv"
  path.write_text("# comment\n" + "".join(f"{a}\t{b}\t{s}\n"
                                          for a, b, s in pairs))
  _, (spearman, _), oov_percent = _keyed_vectors(
      words, vectors).evaluate_word_pairs(str(path))
  rho, coverage = evaluate.similarity_spearman(vectors, words, pairs)
  assert 0.3 < coverage < 0.95
  assert coverage == pytest.approx(1 - oov_percent / 100, abs=1e-12)
  assert rho == pytest.approx(spearman, abs=1e-9)
  rho, coverage = evaluate.similarity_spearman(vectors, words, pairs[:1])
  assert math.isnan(rho)


def test_nearest_neighbours_equal_gensim():
  rng = np.random.default_rng(2)
  words = [f"w{i}" for i in range(300)]
  vectors = rng.normal(size=(300, DIM)).astype(np.float32)
  kv = _keyed_vectors(words, vectors)
  ours = evaluate.nearest_neighbours(vectors, words, "w7", k=10)
  theirs = kv.most_similar("w7", topn=10)
  assert [w for w, _ in ours] == [w for w, _ in theirs]
  np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs],
                             atol=1e-6)
  by_vector = evaluate.nearest_neighbours(vectors, words, vectors[7], k=3)
  assert by_vector[0][0] == "w7" and by_vector[0][1] == pytest.approx(1.0)
  assert [w for w, _ in by_vector[1:]] == [w for w, _ in theirs[:2]]
  with pytest.raises(DataError, match="'nope' is not in the vocabulary"):
    evaluate.nearest_neighbours(vectors, words, "nope")


def test_word2vec_text_round_trip_via_gensim(tmp_path):
  rng = np.random.default_rng(3)
  words = ["the", "whale", "café", "ahab"]
  vectors = rng.normal(size=(4, 7)).astype(np.float32)
  path = evaluate.save_word2vec_text(tmp_path / "v.txt", words, vectors)
  kv = KeyedVectors.load_word2vec_format(str(path), binary=False)
  assert list(kv.index_to_key) == words
  np.testing.assert_array_equal(kv.vectors, vectors)
  kv.save_word2vec_format(str(tmp_path / "g.txt"), binary=False)
  got_words, got = evaluate.load_word2vec_text(tmp_path / "g.txt")
  assert got_words == words
  np.testing.assert_array_equal(got, vectors)
  got_words, got = evaluate.load_word2vec_text(path)
  assert got_words == words and got.dtype == np.float32
  np.testing.assert_array_equal(got, vectors)
  with pytest.raises(DataError, match="whitespace"):
    evaluate.save_word2vec_text(tmp_path / "x.txt", ["new york"], vectors[:1])


@pytest.mark.parametrize("content, message", [
    ("2 3 x\na 1 2 3\n", "line 1"),
    ("2 3\na 1 2 3\nb 1 2\n", "line 3: 3 fields"),
    ("2 3\na 1 2 3\nb 1 2 z\n", "line 3"),
    ("3 3\na 1 2 3\nb 1 2 3\n", "has 2 vectors; its header announces 3"),
    ("1 3\na 1 2 3\nb 1 2 3\n", "announces only 1 words"),
    ("2 1\na 1\na 2\n", "twice"),
])
def test_load_word2vec_text_malformed(tmp_path, content, message):
  path = tmp_path / "bad.txt"
  path.write_text(content)
  with pytest.raises(DataError, match=message):
    evaluate.load_word2vec_text(path)
  with pytest.raises(DataError, match="cannot be read"):
    evaluate.load_word2vec_text(tmp_path / "missing.txt")


def test_pca_2d_keeps_the_top_variance():
  rng = np.random.default_rng(4)
  points = rng.normal(size=(50, 6)) * np.array([5, 3, 0.1, 0.1, 0.1, 0.1])
  projected = evaluate.pca_2d(points)
  eigen = np.sort(np.linalg.eigvalsh(np.cov(points.T)))[::-1]
  np.testing.assert_allclose(np.var(projected, axis=0, ddof=1), eigen[:2],
                             rtol=1e-9)


def test_plot_projection_writes_png(tmp_path):
  words = ["man", "woman", "king", "queen", "france", "paris"]
  vectors = np.random.default_rng(5).normal(size=(6, DIM))
  path = evaluate.plot_projection(vectors, words, None, tmp_path / "p.png")
  data = path.read_bytes()
  assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
  with pytest.raises(DataError, match="None of the word pairs"):
    evaluate.plot_projection(vectors, words, {"x": [("a", "b")]},
                             tmp_path / "q.png")
