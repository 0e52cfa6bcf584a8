"""Text corpora, vocabulary and the training-example generators of chapter 3."""

import math
import shutil

import jax
import numpy as np
import pytest

from dl_jax.data import fetch, text
from dl_jax.data.text import corpora
from dl_jax.errors import ConfigError, DataError
from dl_jax.text import models, pairs
from dl_jax.text.vocab import Vocabulary


@pytest.fixture(scope="module")
def corpus():
  return text.load_corpus()


# ----------------------------------------------------------------------------
# Real data.

def test_corpus_sizes(corpus):
  sizes = {}
  for name, docs in (("sotu", 233), ("moby_dick", 138), ("wiki", 106)):
    arrays = text.corpus_arrays(name)
    assert arrays["offsets"].size - 1 == docs, name
    sizes[name] = arrays["ids"].size
  # Pinned archives and tokenizer: exact counts.
  assert sizes == {"sotu": 1_794_187, "moby_dick": 218_367, "wiki": 452_060}
  lengths = [len(d) for d in corpus]
  assert sum(lengths) == sum(sizes.values())  # ~2.47M as gensim's reference
  assert max(lengths) == text.MAX_LENGTH
  vocab = Vocabulary.from_documents(corpus, min_count=5)
  assert len(vocab) == 17_427  # gensim's tokenization of it gives 17,827
  assert abs(len(vocab) - 17_827) / 17_827 < 0.03
  assert vocab.words[:3] == ("the", "of", "and")
  assert all(w.isalpha() and w == w.lower() for w in vocab.words)


def test_pieces_never_span_documents(corpus):
  arrays = text.corpus_arrays("moby_dick")
  docs = text.load_corpus("moby_dick", max_length=300)
  lengths = np.diff(arrays["offsets"])
  assert len(docs) == sum(math.ceil(n / 300) for n in lengths)
  words = arrays["words"]
  tokens = words[arrays["ids"]].tolist()
  assert [w for d in docs for w in d] == tokens
  # The first piece of every chapter starts a document.
  starts = np.cumsum([0] + [len(d) for d in docs])[:-1]
  assert set(arrays["offsets"][:-1].tolist()) <= set(starts.tolist())
  chapter_1 = starts.tolist().index(arrays["offsets"][2])
  assert docs[chapter_1][:4] == ["chapter", "loomings", "call", "me"]


def test_gcide_corpus():
  arrays = text.corpus_arrays("gcide")
  assert arrays["offsets"].size - 1 > 100_000  # one document per entry
  assert 4_500_000 < arrays["ids"].size < 5_500_000
  assert "webster" not in arrays["words"][np.bincount(
      arrays["ids"]).argsort()[-200:]]


def test_cache_is_verified_and_used(tmp_path):
  text.corpus_arrays("moby_dick")
  src = corpora._cache_path(fetch.data_dir(), "moby_dick")
  for suffix in ("", ".sha256"):
    shutil.copy(str(src) + suffix, tmp_path / (src.name + suffix))
  # No archive there: only the cache can answer.
  assert len(text.load_corpus("moby_dick", data_dir=str(tmp_path))) > 138
  with open(tmp_path / src.name, "ab") as f:
    f.write(b"x")
  with pytest.raises(DataError, match="sha256"):
    text.load_corpus("moby_dick", data_dir=str(tmp_path))


def test_bad_corpus_names():
  with pytest.raises(ConfigError, match="'imdb'.*sotu, moby_dick, wiki"):
    text.load_corpus(("sotu", "imdb"))
  with pytest.raises(ConfigError, match="max_length"):
    text.load_corpus("wiki", max_length=0)


def test_evaluation_sets():
  questions = text.load_analogies()
  assert len(questions) == 19_544
  sections = list(dict.fromkeys(q[0] for q in questions))
  assert len(sections) == 14
  assert sections[:5] == list(text.SEMANTIC_SECTIONS)
  assert questions[0] == ("capital-common-countries", "athens", "greece",
                          "baghdad", "iraq")
  assert sum(q[0] in text.SEMANTIC_SECTIONS for q in questions) == 8_869
  ws, sl = (text.load_word_similarity(n) for n in text.SIMILARITY_SETS)
  assert len(ws) == 353 and ws[0] == ("love", "sex", 6.77)
  assert len(sl) == 999 and sl[0] == ("old", "new", 1.58)
  with pytest.raises(ConfigError, match="'men'.*wordsim353, simlex999"):
    text.load_word_similarity("men")


def test_analogy_coverage(corpus):
  vocab = Vocabulary.from_documents(corpus)
  questions = text.load_analogies()
  covered = sum(all(w in vocab for w in q[1:]) for q in questions)
  assert covered == 7_798  # 39.9 % of the questions


def test_parse_analogies_errors():
  assert text.parse_analogies(": s\nA b C d\n") == [("s", "a", "b", "c", "d")]
  with pytest.raises(DataError, match="line 2"):
    text.parse_analogies(": s\na b c\n")


# ----------------------------------------------------------------------------
# Tokenization and wiki markup.

def test_tokenize():
  assert text.tokenize("The Nation's GDP grew 3.5% in 1999—don't_stop, "
                       "Café!") == ["the", "nation", "s", "gdp", "grew", "in",
                                    "don", "t", "stop", "café"]


@pytest.mark.parametrize("markup, plain", [
    ("[[political philosophy]] and [[self-governance|self-governed]]",
     "political philosophy and self-governed"),
    ("a {{Infobox|name={{nested|x}}|y=1}} b", "a b"),
    ("a<ref>Woodcock. ''Anarchism''</ref> b<ref name=\"x\"/> c", "a b c"),
    ("a <!-- hidden [[link]] --> b", "a b"),
    ("a\n{| class=\"wikitable\"\n|-\n| cell || {| \n| inner\n|}\n|}\nb", "a b"),
    ("[[File:Map.png|thumb|A [[map]] of [[Europe|EU]]]] text", "text"),
    ("[[Category:Anarchism]] [[de:Anarchismus]] end", "end"),
    ("see [http://example.org/x Peter Kropotkin] and http://a.b/c", 
     "see Peter Kropotkin and"),
    ("'''bold''' <small>small</small> &lt;b&gt;x&lt;/b&gt; &amp; y __TOC__",
     "bold small x & y"),
    ("<math>\\alpha + 1</math> z", "z"),
])
def test_strip_wiki_markup(markup, plain):
  got = text.strip_wiki_markup(markup)
  assert " ".join(got.replace("'''", "").split()) == plain


def test_parse_wiki_dump_keeps_articles_only():
  xml = b"""<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/">
  <page><title>A</title><ns>0</ns><revision><text>Some [[b|text]].</text>
  </revision></page>
  <page><title>R</title><ns>0</ns><redirect title="A"/><revision>
  <text>#REDIRECT [[A]]</text></revision></page>
  <page><title>Talk:A</title><ns>1</ns><revision><text>chat</text></revision>
  </page></mediawiki>"""
  assert text.parse_wiki_dump(xml) == [("A", "Some text.")]
  with pytest.raises(DataError, match="not valid XML"):
    text.parse_wiki_dump(b"<mediawiki><page>")


# ----------------------------------------------------------------------------
# Vocabulary.

DOCS = [["b", "a", "c", "a", "rare"], ["c", "b", "a"], [], ["d", "d", "b"]]


def test_vocabulary_order_and_round_trip():
  vocab = Vocabulary.from_documents(DOCS, min_count=2)
  # a:3 b:3 (tie: alphabetical), c:2 d:2; rare dropped.
  assert vocab.words == ("a", "b", "c", "d")
  np.testing.assert_array_equal(vocab.counts, [3, 3, 2, 2])
  assert vocab.counts.dtype == np.int64 and vocab.total == 10
  assert vocab.lookup("c") == 2 and vocab.lookup("rare") == -1
  ids, offsets = vocab.encode(DOCS)
  assert ids.dtype == np.int32 and offsets.dtype == np.int64
  np.testing.assert_array_equal(offsets, [0, 4, 7, 7, 10])
  decoded = [vocab.decode(ids[s:e]) for s, e in zip(offsets[:-1], offsets[1:])]
  assert decoded == [[w for w in d if w != "rare"] for d in DOCS]
  assert Vocabulary.from_documents(DOCS, min_count=1, max_size=2).words == (
      "a", "b")
  with pytest.raises(ConfigError, match="min_count=0"):
    Vocabulary.from_documents(DOCS, min_count=0)
  with pytest.raises(DataError, match="decreasing"):
    Vocabulary(("a", "b"), np.array([1, 2]))


def test_keep_probabilities_and_noise_match_gensim(corpus):
  from gensim.models import Word2Vec
  docs = corpus[:300]
  vocab = Vocabulary.from_documents(docs, min_count=5)
  model = Word2Vec(min_count=5, sample=1e-3, ns_exponent=0.75, workers=1)
  model.build_vocab(docs)
  # Same words and counts; gensim breaks count ties by first occurrence.
  assert sorted(model.wv.index_to_key) == sorted(vocab.words)
  np.testing.assert_array_equal(
      [model.wv.get_vecattr(w, "count") for w in vocab.words], vocab.counts)
  order = [model.wv.key_to_index[w] for w in vocab.words]
  keep = vocab.keep_probabilities(1e-3)
  assert keep.dtype == np.float32 and keep.min() < 0.2
  gensim_keep = np.array([model.wv.get_vecattr(w, "sample_int")
                          for w in vocab.words]) / (2**32 - 1)
  np.testing.assert_allclose(keep, gensim_keep, rtol=1e-6, atol=1e-9)
  noise = vocab.noise_distribution(0.75)
  assert noise.dtype == np.float64 and math.isclose(noise.sum(), 1.0)
  gensim_noise = np.diff(model.cum_table, prepend=0)[order] / (
      model.cum_table[-1])
  np.testing.assert_allclose(noise, gensim_noise, atol=1e-8)
  np.testing.assert_array_equal(vocab.keep_probabilities(0), 1)


# ----------------------------------------------------------------------------
# Training examples.

def _tagged_corpus(lengths, seed=0):
  """Token i of document d has a distinct id; doc_of[id] and pos_of[id]."""
  offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
  ids = np.random.default_rng(seed).permutation(offsets[-1]).astype(np.int32)
  position = np.empty(offsets[-1], np.int64)
  position[ids] = np.arange(offsets[-1])
  doc_of = np.searchsorted(offsets, position, side="right") - 1
  return ids, offsets, position, doc_of


LENGTHS = [50, 1, 0, 7, 200, 2, 33]


def test_skipgram_pairs_windows_and_boundaries():
  ids, offsets, position, doc_of = _tagged_corpus(LENGTHS * 30)
  max_window = 4
  centers, contexts = pairs.skipgram_pairs(ids, offsets, max_window, 3, 0)
  assert centers.dtype == contexts.dtype == np.int32
  np.testing.assert_array_equal(doc_of[centers], doc_of[contexts])
  distance = position[contexts] - position[centers]
  assert np.all((np.abs(distance) >= 1) & (np.abs(distance) <= max_window))
  # Each center's window is symmetric {t-L..t+L} clipped to its document:
  # recover L from the farthest context of centers far from any boundary.
  start = offsets[doc_of[centers]]
  end = offsets[doc_of[centers] + 1]
  interior = ((position[centers] - start >= max_window) &
              (end - 1 - position[centers] >= max_window))
  per_center = np.zeros(ids.size, np.int64)
  np.add.at(per_center, centers[interior], 1)
  counted = per_center[per_center > 0]
  assert np.all(counted % 2 == 0)
  windows = counted // 2  # L pairs on each side
  hist = np.bincount(windows, minlength=max_window + 1)[1:]
  assert hist.size == max_window
  expected = windows.size / max_window
  assert np.all(np.abs(hist - expected) < 4 * math.sqrt(expected)), hist
  farthest = np.zeros(ids.size, np.int64)
  np.maximum.at(farthest, centers[interior], np.abs(distance[interior]))
  np.testing.assert_array_equal(farthest[per_center > 0], windows)
  # Shuffled: not in corpus order.
  assert not np.all(np.diff(position[centers]) >= 0)


def test_skipgram_window_one_gives_all_neighbours():
  ids, offsets, position, doc_of = _tagged_corpus(LENGTHS)
  centers, contexts = pairs.skipgram_pairs(ids, offsets, 1, 0, 0)
  got = sorted(zip(position[centers].tolist(), position[contexts].tolist()))
  want = sorted((t, t + s) for s0, e in zip(offsets[:-1], offsets[1:])
                for t in range(s0, e) for s in (-1, 1) if s0 <= t + s < e)
  assert got == want


def test_determinism_per_seed_and_epoch():
  ids, offsets, _, _ = _tagged_corpus(LENGTHS * 5)
  for fn in (pairs.skipgram_pairs, pairs.cbow_examples):
    a = fn(ids, offsets, 3, 7, 2)
    b = fn(ids, offsets, 3, 7, 2)
    c = fn(ids, offsets, 3, 7, 3)
    d = fn(ids, offsets, 3, 8, 2)
    for x, y in zip(a, b):
      np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[1], c[1]) and not np.array_equal(a[1], d[1])
  keep = np.full(ids.max() + 1, 0.5, np.float32)
  s1 = pairs.subsample(ids, offsets, keep, 1, 0)
  s2 = pairs.subsample(ids, offsets, keep, 1, 0)
  s3 = pairs.subsample(ids, offsets, keep, 1, 1)
  np.testing.assert_array_equal(s1[0], s2[0])
  assert not np.array_equal(s1[0], s3[0])
  with pytest.raises(ConfigError, match="epoch=-1"):
    pairs.skipgram_pairs(ids, offsets, 3, 0, -1)


def test_subsample_statistics():
  rng = np.random.default_rng(0)
  ids = rng.integers(0, 3, size=60_000).astype(np.int32)
  offsets = np.array([0, 10_000, 10_000, 60_000])
  keep = np.array([0.2, 0.5, 1.0], np.float32)
  kept, new_offsets = pairs.subsample(ids, offsets, keep, 0, 0)
  before = np.bincount(ids, minlength=3)
  after = np.bincount(kept, minlength=3)
  for w in range(3):
    sd = math.sqrt(before[w] * keep[w] * (1 - keep[w]))
    assert abs(after[w] - before[w] * keep[w]) <= 4 * sd + 1e-9
  assert after[2] == before[2]
  # Document boundaries follow the kept tokens.
  for d in range(3):
    segment = ids[offsets[d]:offsets[d + 1]]
    assert new_offsets[d + 1] - new_offsets[d] <= segment.size
  first = kept[new_offsets[0]:new_offsets[1]]
  assert np.count_nonzero(first == 2) == np.count_nonzero(ids[:10_000] == 2)
  assert new_offsets[1] == new_offsets[2]


def test_cbow_examples():
  ids, offsets, position, doc_of = _tagged_corpus(LENGTHS * 20)
  max_window = 3
  contexts, targets = pairs.cbow_examples(ids, offsets, max_window, 0, 0)
  assert contexts.shape == (targets.size, 2 * max_window)
  assert contexts.dtype == targets.dtype == np.int32
  # Every token with a neighbour is a target exactly once (length-1 docs not).
  assert targets.size == ids.size - 20
  assert np.unique(targets).size == targets.size
  shifts = np.r_[np.arange(-max_window, 0), np.arange(1, max_window + 1)]
  valid = contexts >= 0
  t = position[targets][:, None]
  np.testing.assert_array_equal(
      np.where(valid, position[np.maximum(contexts, 0)], -1),
      np.where(valid, t + shifts, -1))
  assert np.all(doc_of[contexts[valid]] ==
                np.broadcast_to(doc_of[targets][:, None], valid.shape)[valid])
  # Windows symmetric where the document allows: the farthest valid shift L
  # has every |shift| <= L valid unless outside the document.
  start = offsets[doc_of[targets]][:, None]
  end = offsets[doc_of[targets] + 1][:, None]
  inside = (t + shifts >= start) & (t + shifts < end)
  window = np.where(valid, np.abs(shifts), 0).max(axis=1)
  interior = inside.all(axis=1)
  np.testing.assert_array_equal(
      valid[interior], (np.abs(shifts)[None, :] <= window[interior, None]))
  hist = np.bincount(window[interior], minlength=max_window + 1)[1:]
  expected = interior.sum() / max_window
  assert np.all(np.abs(hist - expected) < 4 * math.sqrt(expected)), hist


def test_ngram_examples():
  ids, offsets, position, doc_of = _tagged_corpus(LENGTHS)
  n_minus_1 = 3
  contexts, targets = pairs.ngram_examples(ids, offsets, n_minus_1)
  assert contexts.shape == (targets.size, n_minus_1)
  assert targets.size == sum(max(0, n - n_minus_1) for n in LENGTHS)
  np.testing.assert_array_equal(
      position[contexts], position[targets][:, None] + np.arange(-3, 0))
  assert np.all(doc_of[contexts] == doc_of[targets][:, None])


def test_split_and_select_documents():
  ids, offsets, _, _ = _tagged_corpus(LENGTHS * 20)
  parts = pairs.split_documents(offsets, (0.8, 0.1, 0.1), seed=1)
  assert [p.size for p in parts] == [112, 14, 14]
  np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(140))
  sub_ids, sub_offsets = pairs.select_documents(ids, offsets, parts[1])
  for k, d in enumerate(parts[1]):
    np.testing.assert_array_equal(
        sub_ids[sub_offsets[k]:sub_offsets[k + 1]],
        ids[offsets[d]:offsets[d + 1]])
  again = pairs.split_documents(offsets, (0.8, 0.1, 0.1), seed=1)
  assert all(np.array_equal(a, b) for a, b in zip(parts, again))


def test_negative_sampler_matches_distribution():
  noise = np.array([0.5, 0.0, 0.25, 0.15, 0.1])
  accept, alias = models.alias_table(noise)
  draws = np.asarray(models.sample_alias(jax.random.PRNGKey(0), accept, alias, (400, 500)))
  assert draws.shape == (400, 500) and draws.dtype == np.int32
  freq = np.bincount(draws.ravel(), minlength=5) / draws.size
  assert freq[1] == 0
  sd = np.sqrt(noise * (1 - noise) / draws.size)
  assert np.all(np.abs(freq - noise) <= 5 * sd + 1e-12), freq
  a = models.sample_alias(jax.random.PRNGKey(1), accept, alias, (10,))
  np.testing.assert_array_equal(a, models.sample_alias(jax.random.PRNGKey(1), accept, alias,
                                                       (10,)))
  with pytest.raises(ConfigError, match="noise distribution"):
    models.alias_table([-1.0, 2.0])
