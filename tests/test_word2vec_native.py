"""The native word2vec kernel (sequential SGD of section 3.3 through XLA's FFI) against references."""

import json
import platform
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl_jax.errors import ConfigError
from dl_jax.text import evaluate
from dl_jax.text import models
from dl_jax.text import native
from dl_jax.text import corpus as corpus_lib
from dl_jax.text import word2vec as w2v


@pytest.fixture(scope="module", autouse=True)
def built():
  native.load()


def _reference_step(E, C, toks, docs, widths, negs, lr, count, cbow, L, begin=0):
  """word2vec.c's loop, one center after the other, in float64 (negs: (N, P, k))."""
  E, C = E.astype(np.float64), C.astype(np.float64)
  loss, pairs = 0.0, 0.0

  def outputs(l1, center, noise):
    nonlocal loss
    neu1e = np.zeros_like(l1)
    for target, label in [(center, 1.0)] + [(n, 0.0) for n in noise if n != center]:
      f = l1 @ C[target]
      sig = 1 / (1 + np.exp(-f))
      loss += -np.log(sig) if label else -np.log(1 - sig)
      g = lr * (label - sig)
      neu1e += g * C[target]
      C[target] += g * l1
    return neu1e

  for t in range(begin, count):
    pos = L + t
    if docs[pos] < 0:
      continue
    center, w = toks[pos], widths[t]
    slots = [(o + L if o < 0 else o + L - 1, toks[pos + o]) for o in range(-w, w + 1)
             if o != 0 and docs[pos + o] == docs[pos]]
    if cbow:
      if not slots:
        continue
      h = np.mean([E[c] for _, c in slots], axis=0)
      neu1e = outputs(h, center, negs[t, 0])
      for _, c in slots:
        E[c] += neu1e
      pairs += 1
    else:
      for slot, c in slots:
        neu1e = outputs(E[c].copy(), center, negs[t, slot if negs.shape[1] > 1 else 0])
        E[c] += neu1e
        pairs += 1
  return E, C, loss, pairs


def _case(seed, n=7, L=2, k=3, per_slot=False, dim=5):
  """A stream slice with repeated words, two documents, padding at both ends, a noise word equal
  to its center, and a no-op tail (count < n)."""
  rng = np.random.default_rng(seed)
  V, D = 6, dim
  E = rng.normal(size=(V, D)).astype(np.float32) * 0.5
  C = rng.normal(size=(V, D)).astype(np.float32) * 0.5
  toks = rng.integers(0, V, n + 2 * L).astype(np.int32)
  docs = np.array([-1] * L + [0] * 4 + [1] * (n - 5) + [-1] * (L + 1), np.int32)
  widths = rng.integers(1, L + 1, n).astype(np.int32)
  negs = rng.integers(0, V, (n, 2 * L if per_slot else 1, k)).astype(np.int32)
  negs[1, 0, 0] = toks[L + 1]  # skipped, as in word2vec
  return E, C, toks, docs, widths, negs


REFERENCE_CASES = [("skipgram", False, 1), ("skipgram", True, 1), ("cbow", False, 1),
                   ("skipgram", False, 2), ("cbow", False, 2)]


@pytest.mark.parametrize("model, per_slot, threads", REFERENCE_CASES)
@pytest.mark.parametrize("dim", [5, 61])
def test_kernel_equals_sequential_numpy_reference(model, per_slot, threads, dim):
  """dim 61 = 32 + 16 + 8 + 4 + 1 takes every vector path of the kernel's dot product and
  updates (four accumulators, one, the 4-float and the scalar tail) at 4, 8 and 16 lanes."""
  L, lr, count = 2, 0.2 if dim < 32 else 0.05, 6
  for seed in range(3):
    E, C, toks, docs, widths, negs = _case(seed, L=L, per_slot=per_slot, dim=dim)
    step = jax.jit(lambda e, c, *a: native.word2vec_step(e, c, *a, cbow=model == "cbow",
                                                         window=L, threads=threads))
    e, c, loss, pairs = step(jnp.asarray(E), jnp.asarray(C), toks, docs, widths, negs,
                             np.float32(lr), np.int32(count))
    ref = lambda a, b: _reference_step(E, C, toks, docs, widths, negs, lr, b, model == "cbow",
                                       L, begin=a)
    if threads == 1:
      re, rc, rloss, rpairs = ref(0, count)
    else:  # each half from the same start, then both changes
      (e1, c1, l1, p1), (e2, c2, l2, p2) = ref(0, count // 2), ref(count // 2, count)
      re, rc, rloss, rpairs = e1 + e2 - E, c1 + c2 - C, l1 + l2, p1 + p2
    assert rpairs > 2 and float(pairs) == rpairs
    np.testing.assert_allclose(np.asarray(e), re, atol=1e-6)
    np.testing.assert_allclose(np.asarray(c), rc, atol=1e-6)
    np.testing.assert_allclose(float(loss), rloss, rtol=1e-5)
    assert not np.allclose(re, E, atol=1e-3) and not np.allclose(rc, C, atol=1e-3)


@pytest.mark.parametrize("model, threads", [("skipgram", 1), ("cbow", 1), ("skipgram", 2),
                                            ("cbow", 2)])
def test_kernel_drawing_its_own_randomness_equals_the_reference_on_the_numpy_draws(model, threads):
  L, k, lr, count, cbow = 2, 3, 0.2, 6, model == "cbow"
  accept, alias = models.alias_table(np.array([5.0, 1.0, 0.5, 3.0, 2.0, 0.1]))
  for seed in range(3):
    E, C, toks, docs, _, _ = _case(seed, L=L, k=k)
    key = np.asarray(jax.random.fold_in(jax.random.PRNGKey(seed), 7), np.uint32)
    widths, negs = native.draws(key, len(toks) - 2 * L, cbow=cbow, window=L, negative=k,
                                accept=accept, alias=alias)
    assert negs.shape == (len(widths), 1 if cbow else 2 * L, k)
    got = jax.jit(lambda e, c, *a: native.word2vec_step_rng(
        e, c, *a, cbow=cbow, window=L, negative=k, threads=threads))(
            jnp.asarray(E), jnp.asarray(C), toks, docs, key, accept, alias, np.float32(lr),
            np.int32(count))
    given = native.word2vec_step(jnp.asarray(E), jnp.asarray(C), toks, docs, widths, negs,
                                 np.float32(lr), np.int32(count), cbow=cbow, window=L,
                                 threads=threads)
    for a, b in zip(got, given):  # the same draws: the same bits
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    if threads == 1:
      re, rc, rloss, rpairs = _reference_step(E, C, toks, docs, widths, negs, lr, count, cbow, L)
      assert float(got[3]) == rpairs > 2
      np.testing.assert_allclose(np.asarray(got[0]), re, atol=1e-6)
      np.testing.assert_allclose(np.asarray(got[1]), rc, atol=1e-6)
      np.testing.assert_allclose(float(got[2]), rloss, rtol=1e-5)


def test_numpy_draws_follow_word2vec_distributions():
  L, k, n = 5, 5, 4000
  p = np.array([40.0, 20.0, 10.0, 5.0, 3.0, 1.0, 1.0, 0.0]) ** 0.75
  accept, alias = models.alias_table(p)
  widths, negs = native.draws(np.array([3, 4], np.uint32), n, cbow=False, window=L, negative=k,
                              accept=accept, alias=alias)
  # Widths uniform in [1, L] (word2vec's reduced window).
  freq = np.bincount(widths, minlength=L + 1)[1:] / n
  assert widths.min() == 1 and widths.max() == L
  np.testing.assert_allclose(freq, 1 / L, atol=0.02)
  # Noise words from unigram^0.75, never a word of probability 0.
  counts = np.bincount(negs.reshape(-1), minlength=len(p))
  np.testing.assert_allclose(counts / counts.sum(), p / p.sum(), atol=0.005)
  assert counts[-1] == 0
  # Fresh noise words for each (center, context) pair: the slots of a center differ.
  assert np.mean(np.all(negs[:, :1] == negs[:, 1:], axis=-1)) < 0.01
  # CBOW: one set per center; another seed: other draws.
  w2, n2 = native.draws(np.array([3, 5], np.uint32), n, cbow=True, window=L, negative=k,
                        accept=accept, alias=alias)
  assert n2.shape == (n, 1, k) and not np.array_equal(w2, widths)


def test_one_pair_update_is_minus_lr_times_the_gradient_of_the_pair_loss():
  rng = np.random.default_rng(3)
  V, D, lr = 8, 6, 0.3
  params = {"E": jnp.asarray(rng.normal(size=(V, D)), jnp.float32),
            "C": jnp.asarray(rng.normal(size=(V, D)), jnp.float32)}
  context, center, noise = 2, 5, np.array([[0, 7, 3]], np.int32)
  # One center (5) with one context word (2): the context's input vector predicts the center.
  toks, docs = np.array([context, center, 1], np.int32), np.array([0, 0, -1], np.int32)
  e, c, loss, pairs = native.word2vec_step(
      params["E"], params["C"], toks, docs, np.array([1], np.int32), noise, np.float32(lr),
      np.int32(1), cbow=False, window=1)
  pair_loss = lambda p: models.skipgram_ns_loss(p, jnp.array([context]), jnp.array([center]),
                                                jnp.asarray(noise))
  value, grads = jax.value_and_grad(pair_loss)(params)
  assert float(pairs) == 1.0
  np.testing.assert_allclose(float(loss), float(value), rtol=1e-6)
  np.testing.assert_allclose(e, params["E"] - lr * grads["E"], atol=1e-6)
  np.testing.assert_allclose(c, params["C"] - lr * grads["C"], atol=1e-6)


def test_one_cbow_window_update_is_the_word2vec_gradient_of_the_stream_loss():
  rng = np.random.default_rng(4)
  V, D, L, lr = 12, 6, 2, 0.3
  E = jnp.asarray(rng.normal(size=(V, D)), jnp.float32)
  C = jnp.asarray(rng.normal(size=(V, D)), jnp.float32)
  toks = np.array([1, 2, 3, 4, 5], np.int32)  # center 3, distinct context words
  docs = np.array([0, 0, 0, 0, 0], np.int32)
  widths, noise = np.array([2], np.int32), np.array([[6, 7, 8, 9]], np.int32)
  e, c, loss, _ = native.word2vec_step(E, C, toks, docs, widths, noise, np.float32(lr),
                                       np.int32(1), cbow=True, window=L)
  mask = models.stream_window_mask(jnp.asarray(docs), jnp.asarray(docs >= 0),
                                   jnp.asarray(widths), L)
  out_ids = jnp.concatenate([jnp.array([3]), jnp.asarray(noise[0])])
  value, (gx, gc) = jax.value_and_grad(
      lambda x, r: models.stream_cbow_ns_loss(x, r[:1], r[1:][None], mask, L,
                                              word2vec_grad=True), argnums=(0, 1))(
                                                  E[toks], C[out_ids])
  np.testing.assert_allclose(float(loss), float(value), rtol=1e-6)
  np.testing.assert_allclose(e, E.at[toks].add(-lr * gx), atol=1e-6)
  np.testing.assert_allclose(c, C.at[out_ids].add(-lr * gc), atol=1e-6)


def _corpus():
  rng = np.random.default_rng(0)
  docs = [[f"w{int(i)}" for i in rng.zipf(1.3, 300) % 60] for _ in range(12)]
  return corpus_lib.load_encoded((), 2, docs=docs)


def _train(corpus, model, engine, stops=(), steps_per_call=8, seed=0, threads=1):
  spec = w2v.StreamSpec(model, "negative_sampling", 3, 4, 64, steps_per_call, engine=engine,
                        native_threads=threads)
  eng = w2v.Word2Vec(corpus, spec, dim=8, sample=1e-2, epochs=2, seed=seed, learning_rate=0.05,
                     min_learning_rate=1e-4)
  tables, step = eng.init(), 0
  losses = []
  for stop in [*stops, eng.total_steps]:
    tables, step = eng.run(*tables, step, stop,
                           lambda s, a, l, p: losses.append(float(l.sum() / p.sum())) and False)
  assert step == eng.total_steps
  return eng, [np.asarray(t) for t in tables], losses


@pytest.mark.parametrize("model", ["skipgram", "cbow"])
def test_native_engine_is_deterministic_and_resumable_bit_for_bit(model):
  corpus = _corpus()
  eng, (e1, c1), losses = _train(corpus, model, "native")
  assert eng.engine == "native" and losses[-1] < losses[0]
  _, (e2, c2), _ = _train(corpus, model, "native", stops=(3, 5, eng.total_steps - 1),
                          steps_per_call=4)
  np.testing.assert_array_equal(e1, e2)
  np.testing.assert_array_equal(c1, c2)
  _, (e3, _), _ = _train(corpus, model, "native", seed=1)
  assert not np.array_equal(e1, e3)
  _, (e4, _), _ = _train(corpus, model, "native", threads=2)
  _, (e5, _), _ = _train(corpus, model, "native", stops=(5,), threads=2)
  np.testing.assert_array_equal(e4, e5)
  assert not np.array_equal(e1, e4)


def test_xla_engine_still_trains_and_auto_picks_native_on_cpu():
  corpus = _corpus()
  eng, (e, c), losses = _train(corpus, "skipgram", "xla")
  assert eng.engine == "xla" and losses[-1] < losses[0] and np.abs(c).max() > 0
  spec = w2v.StreamSpec("cbow", "negative_sampling", 3, 4, 64, 8)
  assert w2v.resolve_engine(spec) == "native"
  assert w2v.resolve_engine(w2v.StreamSpec("cbow", "softmax", 3, 4, 64, 8)) == "xla"
  # batch 0: the engine's default number of centers per step.
  for engine, batch in (("native", 32768), ("xla", 1024)):
    spec = w2v.StreamSpec("cbow", "negative_sampling", 3, 4, 0, 8, engine=engine)
    eng = w2v.Word2Vec(corpus, spec, dim=8, sample=1e-2, epochs=1, seed=0, learning_rate=0.05,
                       min_learning_rate=1e-4)
    assert eng.spec.batch == batch and eng.total_steps == -(-eng.epoch_lengths[0] // batch)


def test_engine_errors_name_the_value_and_what_is_accepted(monkeypatch, tmp_path):
  with pytest.raises(ConfigError, match="unknown engine 'gpu'; accepted: auto, xla, native"):
    w2v.resolve_engine(w2v.StreamSpec("cbow", "negative_sampling", 3, 4, 64, 8, engine="gpu"))
  with pytest.raises(ConfigError, match="engine='native' does not support noise_group=2"):
    w2v.resolve_engine(w2v.StreamSpec("cbow", "negative_sampling", 3, 4, 64, 8,
                                      noise_group=2, engine="native"))
  monkeypatch.setattr(native, "compiler", lambda: None)
  with pytest.raises(native.NativeBuildError, match="no C\\+\\+ compiler found"):
    native.library_path(str(tmp_path))
  # "auto" falls back to the XLA engine when the kernel cannot be built.
  monkeypatch.setattr(native, "load", lambda data_dir=None: (_ for _ in ()).throw(
      native.NativeBuildError("no C++ compiler found")))
  assert w2v.resolve_engine(w2v.StreamSpec("cbow", "negative_sampling", 3, 4, 64, 8)) == "xla"


SHORT = ("--config.max_tokens=50000", "--config.epochs=1", "--config.batch_size=256",
         "--config.steps_per_call=8", "--config.checkpoint_every_steps=32",
         "--config.engine=native")


def test_cbow_run_stopped_and_resumed_writes_the_same_vectors(tmp_path, run_experiment):
  whole = run_experiment("word2vec_cbow", tmp_path / "whole", *SHORT)
  assert whole.returncode == 0, whole.stderr[-3000:]
  results = json.loads((tmp_path / "whole" / "results.json").read_text())
  assert results["engine"] == "native" and results["steps"] > 60
  first = run_experiment("word2vec_cbow", tmp_path / "part", *SHORT, "--config.max_steps=40")
  assert first.returncode == 0, first.stderr[-3000:]
  second = run_experiment("word2vec_cbow", tmp_path / "part", *SHORT)
  assert second.returncode == 0 and "resumed from" in second.stderr, second.stderr[-3000:]
  assert ((tmp_path / "part" / "vectors.txt").read_bytes()
          == (tmp_path / "whole" / "vectors.txt").read_bytes())
  _, vectors = evaluate.load_word2vec_text(tmp_path / "whole" / "vectors.txt")
  assert np.all(np.isfinite(vectors))


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 levels")
def test_kernel_built_for_the_oldest_x86_64_equals_the_reference(tmp_path):
  """Built for x86-64 itself (SSE2, 4 float lanes: any 64-bit x86 CPU), the kernel trains the
  same steps as the reference; a level this CPU lacks or does not exist is refused by name."""
  from tests.conftest import run  # pylint: disable=g-import-not-at-top
  code = ("import tests.test_word2vec_native as t; from dl_jax.text import native; "
          "print(native.build_description()); "
          "[t.test_kernel_equals_sequential_numpy_reference(*c, d) for c in t.REFERENCE_CASES "
          "for d in (5, 61)]")
  env = {native.MARCH_ENV_VAR: "x86-64", "DL_JAX_DATA_DIR": str(tmp_path)}
  result = run([sys.executable, "-c", code], env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  assert result.stdout.strip().endswith("-march=x86-64, 4 float lanes"), result.stdout
  bad = run([sys.executable, "-c", "from dl_jax.text import native; native.load()"],
            env={**env, native.MARCH_ENV_VAR: "i686"})
  assert bad.returncode != 0 and ("DL_JAX_NATIVE_MARCH='i686' is not a level the kernel is "
                                  "built for; accepted: x86-64, x86-64-v2, x86-64-v3, "
                                  "x86-64-v4") in bad.stderr
