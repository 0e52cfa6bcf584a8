"""The character-level language model: the Kneser-Ney n-gram (a hand computation, every context's
distribution summing to 1, the vectorized scores equal to the distributions), the character
split (deterministic, disjoint by document) and vocabulary, the models' causality (negative
control: a bidirectional variant), evaluation in windows with the carry passed on (equal to one
long pass; negative control: the carry reset), the training streams, sampling (deterministic in
its key, greedy at temperature -> 0), the task's bad values and a short real-data run."""

import functools
import json
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl_jax import engine
from dl_jax.data.text import characters
from dl_jax.engine import sharding
from dl_jax.errors import ConfigError
from dl_jax.models import language, registry
from dl_jax.nn.recurrent import RecurrentEncoder
from dl_jax.tasks import language_model as lm
from dl_jax.text import ngram
from experiments.configs import charlm_moby_lstm

# ---------------------------------------------------------------------------------------------
# The n-gram baseline.

A, B, C = 0, 1, 2
TRAIN = np.array([A, A, B, A, B])  # "aabab": bigrams aa, ab, ba, ab; "c" never seen


def test_kneser_ney_equals_a_hand_computation():
  """"aabab", V = 3, D = 1/2. Continuation counts N1+(. w): a 2 ({a, b} precede it), b 1, c 0;
  their sum 3, 2 types: P1(a) = (2 - 1/2 + 1/2 * 2 / 3) / 3 = 11/18, P1(b) = 5/18, P1(c) = 2/18.
  After "a" (aa 1, ab 2; sum 3, 2 types): P2(a|a) = (1/2 + 1/2 * 2 * 11/18) / 3 = 10/27,
  P2(b|a) = (3/2 + 5/18) / 3 = 16/27, P2(c|a) = 1/27. After "b" (ba 1): P2(a|b) = 1/2 + 1/2 *
  11/18 = 29/36, P2(b|b) = 5/36, P2(c|b) = 2/36. After "c" (never seen): P1."""
  model = ngram.KneserNey(TRAIN, 3, 2)
  np.testing.assert_allclose(model.distribution([A], 0.5), np.array([10, 16, 1]) / 27, 1e-12)
  np.testing.assert_allclose(model.distribution([B], 0.5), np.array([29, 5, 2]) / 36, 1e-12)
  continuation = np.array([11, 5, 2]) / 18
  np.testing.assert_allclose(model.distribution([C], 0.5), continuation, 1e-12)
  np.testing.assert_allclose(model.distribution([], 0.5), continuation, 1e-12)  # no context
  # The order-1 model uses the counts themselves (a 3, b 2 of 5; 2 types):
  # ((3 - 1/2 + 1/2 * 2/3) / 5, (2 - 1/2 + 1/3) / 5, (1/3) / 5) = (17, 11, 2) / 30.
  unigram = np.array([17, 11, 2]) / 30
  np.testing.assert_allclose(model.distribution([C], 0.5, order=1), unigram, 1e-12)
  # Negative control: backing off to the counts instead of the continuation counts differs.
  assert np.abs(unigram - continuation).max() > 0.05
  # "abca" scores b|a, c|b and a|c (the first symbol has no context).
  np.testing.assert_allclose(np.exp(model.log_probs(np.array([A, B, C, A]), 0.5)),
                             [16 / 27, 2 / 36, 11 / 18], 1e-12)
  bits = -(math.log2(16 / 27) + math.log2(2 / 36) + math.log2(11 / 18)) / 3
  assert model.bits_per_symbol(np.array([A, B, C, A]), 0.5) == pytest.approx(bits, abs=1e-12)


def _skewed_text(n: int, vocab: int, seed: int) -> np.ndarray:
  """A sample of one Markov chain over the first vocab - 1 symbols (the last one never
  occurs)."""
  transition = np.random.default_rng(0).dirichlet(np.full(vocab - 1, 0.3), size=vocab - 1)
  rng = np.random.default_rng(seed)
  ids = [0]
  for _ in range(n - 1):
    ids.append(rng.choice(vocab - 1, p=transition[ids[-1]]))
  return np.array(ids)


def test_every_context_distribution_sums_to_one():
  vocab, order = 5, 4
  model = ngram.KneserNey(_skewed_text(3000, vocab, 0), vocab, order)
  contexts = [[]] + [list(np.unravel_index(i, (vocab,) * k)) for k in (1, 2, 3)
                     for i in range(vocab ** k)]  # every context, seen or not (symbol 4 unseen)
  for discount in (0.2, 0.75, 1.0):
    for o in range(1, order + 1):
      for context in contexts:
        p = model.distribution(context, discount, o)
        assert p.min() > 0 and abs(p.sum() - 1) < 1e-12, (discount, o, context, p.sum())
  # Negative control: a discount above 1 (refused) takes more from a count of 1 than there is,
  # and the distribution no longer sums to 1.
  with pytest.raises(ConfigError, match="discount 1.5 is not accepted; accepted: \\(0, 1\\]"):
    model.distribution([0, 1, 2], 1.5)


def test_negative_control_a_discount_above_one_breaks_the_sum(monkeypatch):
  model = ngram.KneserNey(TRAIN, 3, 2)
  monkeypatch.setattr(model, "_check", lambda order, discount: order or model.order)
  assert abs(model.distribution([A], 1.5).sum() - 1) > 0.1  # "aa" seen once: 1 - 1.5 < 0
  assert abs(model.distribution([A], 1.0).sum() - 1) < 1e-12


def test_scores_of_a_text_equal_the_distributions_of_its_contexts():
  vocab, order = 5, 3
  model = ngram.KneserNey(_skewed_text(2000, vocab, 1), vocab, order)
  text = np.concatenate([_skewed_text(40, vocab, 2), [4, 4, 0]])  # an unseen symbol too
  log_probs = model.log_probs(text, 0.8)
  assert log_probs.shape == (len(text) - 1,)
  for t in range(1, len(text)):
    p = model.distribution(text[max(0, t - order + 1):t], 0.8)
    assert log_probs[t - 1] == pytest.approx(math.log(p[text[t]]), abs=1e-12)


def test_select_takes_the_lowest_validation_bits():
  model = ngram.KneserNey(_skewed_text(3000, 5, 3), 5, 4)
  val = _skewed_text(500, 5, 4)
  chosen = ngram.select(model, val, (1, 2, 3, 4), (0.5, 0.9))
  assert len(chosen["grid"]) == 8 and chosen["val_bits"] == min(chosen["grid"].values())
  assert chosen["val_bits"] == model.bits_per_symbol(val, chosen["discount"], chosen["order"])
  assert chosen["grid"]["2/0.5"] < chosen["grid"]["1/0.5"]  # the chain has memory
  with pytest.raises(ConfigError, match="order 5 is not accepted; accepted: 1..4"):
    model.bits_per_symbol(val, 0.5, 5)
  with pytest.raises(ConfigError, match="order 11 is not accepted for 78 symbols"):
    ngram.KneserNey(np.zeros(10, int), 78, 11)


# ---------------------------------------------------------------------------------------------
# The character split and vocabulary.

def test_split_by_document_is_deterministic_and_disjoint():
  docs = characters.load_documents("moby_dick")
  assert len(docs) == 138 and docs[2].startswith("CHAPTER 1. Loomings.")
  first = characters.split_documents(docs, 0.05, 0.05, 0)
  again = characters.split_documents(docs, 0.05, 0.05, 0)
  assert all(np.array_equal(first.documents[k], again.documents[k]) for k in first.documents)
  assert (first.train, first.val, first.test) == (again.train, again.val, again.test)
  parts = [first.documents[k] for k in ("train", "val", "test")]
  assert [len(p) for p in parts] == [124, 7, 7]
  assert sorted(np.concatenate(parts).tolist()) == list(range(len(docs)))  # a partition
  for part, text in zip(parts, (first.train, first.val, first.test)):
    assert text == "".join(docs[i].rstrip() + characters.DOCUMENT_END for i in part)
  for i in first.documents["test"].tolist() + first.documents["val"].tolist():
    assert docs[i][:300] not in first.train  # held-out chapters are not training text
  for i in first.documents["train"][:5].tolist():
    assert docs[i][:300] in first.train  # (the check finds a training chapter)
  other = characters.split_documents(docs, 0.05, 0.05, 1)  # negative control: another seed
  assert not np.array_equal(other.documents["test"], first.documents["test"])
  lower = characters.split_documents(docs, 0.05, 0.05, 0, lowercase=True)
  assert lower.train == first.train.lower()


def test_vocabulary_maps_rare_and_unseen_characters_to_unknown():
  vocab = characters.CharVocab.build("aaabbbcc\u05d0x", min_count=2)
  assert vocab.chars == characters.UNK + "abc" and len(vocab) == 4
  np.testing.assert_array_equal(vocab.encode("abcx\u05d0z"), [1, 2, 3, 0, 0, 0])
  assert vocab.decode(vocab.encode("cab")) == "cab"
  data = characters.load_characters("moby_dick")
  assert len(data.vocab) == 78 and data.vocab.chars[0] == characters.UNK
  known = set(data.vocab.chars)
  assert data.vocab.decode(data.train[:2000]) == "".join(
      c if c in known else characters.UNK for c in data.splits.train[:2000])
  assert int(np.sum(data.train == 0)) == 16  # Hebrew, Greek, "$", "&", "[", "]", "Œ"


# ---------------------------------------------------------------------------------------------
# Causality: the logit at t depends on the characters up to t only.

class BidirectionalLM(nn.Module):
  """The negative control: the same stack read both ways sees the future."""
  num_classes: int = 7
  hidden: int = 5

  @nn.compact
  def unroll_embedded(self, x):
    outputs, _ = RecurrentEncoder("lstm", self.hidden, 1, bidirectional=True)(x)
    return nn.Dense(self.num_classes)(outputs), None


def future_and_past(unroll, x):
  """(largest |d logits_t / d x_s| over s > t, smallest over t of the largest over s <= t)."""
  jac = jax.jacobian(lambda e: unroll(e)[0])(x)  # [batch, T, V, batch, T, E]
  steps = x.shape[1]
  per_step = jnp.abs(jnp.einsum("btvbse->btvse", jac)).max(axis=(2, 4))  # [batch, T, T]
  future = jnp.triu(jnp.ones((steps, steps), bool), k=1)
  return float(jnp.where(future, per_step, 0).max()), float(
      jnp.where(future, 0, per_step).max(axis=-1).min())


@pytest.mark.parametrize("name", ["lstm_lm", "gru_lm"])
def test_logits_depend_on_the_past_only(name):
  model = registry.build(name, num_classes=7, embed_dim=4, hidden=5, num_layers=2)
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 4))
  params = model.init(jax.random.PRNGKey(1), x, method="unroll_embedded")
  future, past = future_and_past(lambda e: model.apply(params, e, method="unroll_embedded"), x)
  assert future == 0.0 and past > 1e-4


def test_negative_control_a_bidirectional_model_sees_the_future():
  model = BidirectionalLM()
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 6, 4))
  params = model.init(jax.random.PRNGKey(1), x, method="unroll_embedded")
  future, _ = future_and_past(lambda e: model.apply(params, e, method="unroll_embedded"), x)
  assert future > 1e-4


# ---------------------------------------------------------------------------------------------
# Evaluation in windows, the training streams, sampling.

def small_model(cell="lstm"):
  model = registry.build(f"{cell}_lm", num_classes=5, embed_dim=3, hidden=8, num_layers=2)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 4), jnp.int32))["params"]
  return model, params


def test_windows_with_the_carry_passed_equal_one_long_pass():
  model, params = small_model()
  ids = np.random.default_rng(0).integers(0, 5, 101)
  streams = 3
  nll = jax.jit(functools.partial(lm.stream_nll, model.apply))
  windowed = nll(params, model.initial_carry(streams), *lm.stream_windows(ids, streams, 7))
  inputs, targets, mask = (a.transpose(1, 0, 2).reshape(streams, -1)
                           for a in lm.stream_windows(ids, streams, 7))
  logits = model.apply({"params": params}, inputs)  # one pass over each whole stream
  long_pass = jnp.sum(lm.cross_entropy(logits, targets) * mask)
  assert int(mask.sum()) == 100
  np.testing.assert_allclose(windowed, long_pass, rtol=1e-5)
  one_window = nll(params, model.initial_carry(streams), *lm.stream_windows(ids, streams, 35))
  np.testing.assert_allclose(one_window, long_pass, rtol=1e-5)
  # Negative control: every window from the zero state.
  reset = sum(nll(params, model.initial_carry(streams),
                  *(a[i:i + 1] for a in lm.stream_windows(ids, streams, 7))) for i in range(5))
  assert abs(float(reset) - float(long_pass)) > 1e-3 * float(long_pass)


def test_training_windows_continue_each_stream():
  data = jnp.arange(1000, dtype=jnp.int32)
  stream_len, windows = lm.stream_layout(1000, 4, 10)
  assert (stream_len, windows) == (247, 24)
  rng = jax.random.PRNGKey(3)
  batch = lambda s: lm.window_batch(data, rng, jnp.int32(s), 4, 10, stream_len, windows)
  for s in range(windows - 1):
    (x0, y0), (x1, _) = batch(s), batch(s + 1)
    np.testing.assert_array_equal(y0, x0 + 1)  # the targets are the next characters
    np.testing.assert_array_equal(x1[:, 0], y0[:, -1])  # the next window goes on
    assert int(y0.max()) <= 999
  np.testing.assert_array_equal(batch(5)[0], batch(5)[0])  # a pure function of (rng, step)
  shifts = {int(batch(e * windows)[0][0, 0]) for e in range(8)}  # each epoch's shift
  assert len(shifts) > 1 and max(shifts) < 10
  last_x, last_y = batch(windows - 1)  # negative control: a new epoch does not continue
  assert not np.array_equal(batch(windows)[0][:, 0], last_y[:, -1])
  assert int(last_y.max()) <= 999


def test_sampling_is_deterministic_in_its_key_and_greedy_as_temperature_vanishes():
  model, params = small_model("gru")
  prompt = jnp.array([[1, 2, 3], [4, 0, 1]], jnp.int32)
  draw = jax.jit(lambda key, t: language.sample(model, params, prompt, key, 12, t))
  a, b = draw(jax.random.PRNGKey(0), 1.0), draw(jax.random.PRNGKey(0), 1.0)
  np.testing.assert_array_equal(a, b)
  assert a.shape == (2, 12) and a.dtype == jnp.int32
  assert not np.array_equal(a, draw(jax.random.PRNGKey(1), 1.0))
  greedy = np.asarray(draw(jax.random.PRNGKey(0), 1e-6))
  # Greedy decoding by reading the whole text again at every step (zeros after the end: the
  # logit at t does not depend on them, the causality test above).
  text = np.zeros((2, 15), np.int32)
  text[:, :3] = prompt
  read = jax.jit(lambda ids: model.apply({"params": params}, ids))
  for t in range(3, 15):
    text[:, t] = np.argmax(read(text)[:, t - 1], -1)
  np.testing.assert_array_equal(greedy, text[:, 3:])


# ---------------------------------------------------------------------------------------------
# The task: bad values, a short real-data run.

def config(**overrides):
  cfg = charlm_moby_lstm.get_config()
  with cfg.unlocked():
    for key, value in overrides.items():
      cfg[key] = value
  return cfg


@pytest.mark.parametrize("overrides, message", [
    ({"corpus": "wiki"}, "unknown corpus 'wiki'; accepted: moby_dick, sotu"),
    ({"val_fraction": 0.0}, "val_fraction=0.0 must be a finite number in (0, 0.5)"),
    ({"val_fraction": 0.3, "test_fraction": 0.2}, "val_fraction=0.3 + test_fraction=0.2 must be"),
    ({"ngram_discounts": (0.5, 1.2)}, "ngram_discounts=(0.5, 1.2) must be a non-empty tuple of "
                                      "numbers in (0, 1]"),
    ({"sample_temperatures": ()}, "sample_temperatures=() must be a non-empty tuple"),
    ({"sample_prompt": ""}, "sample_prompt='' must be a non-empty string"),
    ({"model": "lstm_classifier"}, "unknown model 'lstm_classifier'; registered char_lm models: "
                                   "gru_lm, lstm_lm"),
    ({"batch_size": 20000}, "batch_size=20000 x seq_len=100 leaves no window of the 1,076,313"),
    ({"ngram_orders": (3, 11)}, "ngram_orders=(3, 11): orders above 10 are not accepted for 78"),
    ({"model_kwargs": {"num_classes": 96}}, "model_kwargs.num_classes=96 but the moby_dick "
                                            "vocabulary has 78 characters"),
])
def test_bad_values_are_refused(overrides, message):
  cfg = config(**overrides)
  with pytest.raises(ConfigError) as info:
    engine.validate(cfg)
    lm.LanguageModel(cfg, sharding.make_mesh())
  assert str(info.value).startswith(message), str(info.value)


def test_short_real_training_learns_and_writes_its_outputs(tmp_path):
  """200 steps of a 64-unit LSTM (3.43 bpc here): well below the 4.39 bits of the unigram
  model (a context-free guess) on the test text, and the outputs are written."""
  cfg = config(num_steps=200, batch_size=16, seq_len=50, eval_every_steps=100,
               ngram_orders=(2, 3, 4, 5), ngram_discounts=(0.7, 0.9), sample_length=40,
               sample_count=2, log_every_steps=100, checkpoint_every_steps=10_000,
               learning_rate=5e-3)
  cfg.model_kwargs.hidden = 64
  results = engine.run(cfg, str(tmp_path))
  assert results["steps"] == 200 and results["vocab_size"] == 78
  data = characters.load_characters("moby_dick")
  unigram = ngram.KneserNey(data.train, 78, 1).bits_per_symbol(data.test, 0.9)
  assert results["test_bpc"] < unigram - 0.6, (results["test_bpc"], unigram)
  baseline = results["ngram"]
  assert baseline["order"] in (2, 3, 4, 5) and len(baseline["val_bpc_grid"]) == 8
  assert 2.0 < baseline["test_bpc"] < 2.6, baseline  # 5-gram Kneser-Ney on Moby Dick
  samples = results["samples"]
  assert [s["temperature"] for s in samples] == [1.0, 1.0, 0.7, 0.7]
  assert all(s["text"].startswith("The whale ") and len(s["text"]) == 50 for s in samples)
  assert (tmp_path / "samples.txt").read_text().count("--- temperature") == 4
  assert (tmp_path / "bpc.png").read_bytes()[:4] == b"\x89PNG"
  rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows if r["split"] == "val"] == [100, 200]
