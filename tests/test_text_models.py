"""The chapter 3 models against direct numpy evaluations of the notes' equations (eq. 3.2-3.13)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dl_jax.models import registry
from dl_jax.text import models

V, D = 11, 4


def _params(seed=0, nplm=False):
  rng = np.random.default_rng(seed)
  if nplm:
    return {"E": rng.normal(size=(V, D)), "H": rng.normal(size=(3 * D, 5)) * 0.5,
            "d": rng.normal(size=5), "U": rng.normal(size=(5, V)), "b": rng.normal(size=V)}
  return {"E": rng.normal(size=(V, D)), "C": rng.normal(size=(V, D))}


def _f32(params):
  return jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)


def _np_softmax(z):
  z = z - z.max()
  return np.exp(z) / np.exp(z).sum()


def _np_sigmoid(z):
  return 1 / (1 + np.exp(-z))


# ---------------------------------------------------------------------------------------------
# Full-softmax losses as the notes write them

def test_skipgram_softmax_loss_matches_eq_3_11_to_3_13():
  p = _params()
  centers, contexts = np.array([0, 3, 3, 10]), np.array([1, 2, 9, 0])
  expected = np.mean([-np.log(_np_softmax(p["C"] @ p["E"][i])[j])  # u = E w_i, z = C u
                      for i, j in zip(centers, contexts)])
  got = models.skipgram_softmax_loss(_f32(p), jnp.asarray(centers), jnp.asarray(contexts))
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_cbow_softmax_loss_matches_eq_3_7_to_3_10_and_ignores_padding():
  p = _params(1)
  contexts = np.array([[1, 2, 3, 4], [5, -1, 6, -1], [-1, -1, -1, 7]])
  targets = np.array([0, 9, 2])
  expected = []
  for ctx, t in zip(contexts, targets):
    u_hat = np.mean([p["E"][w] for w in ctx if w >= 0], axis=0)  # eq. 3.8 over real slots
    expected.append(-np.log(_np_softmax(p["C"] @ u_hat)[t]))  # eq. 3.9-3.10
  got = models.cbow_softmax_loss(_f32(p), jnp.asarray(contexts), jnp.asarray(targets))
  np.testing.assert_allclose(got, np.mean(expected), rtol=1e-5)
  # The padded slots are ignored: changing the embedding of the word a -1 would alias changes
  # nothing, and a window with its padding removed gives the same context vector.
  p2 = dict(p, E=p["E"].copy())
  p2["E"][0] += 100.0
  np.testing.assert_allclose(models.cbow_context(_f32(p2), jnp.asarray(contexts[1:])),
                             models.cbow_context(_f32(p), jnp.asarray(contexts[1:])), rtol=1e-6)
  np.testing.assert_allclose(models.cbow_context(_f32(p), jnp.asarray([[5, 6]]))[0],
                             models.cbow_context(_f32(p), jnp.asarray(contexts))[1], rtol=1e-6)


def test_nplm_softmax_loss_matches_eq_3_5():
  p = _params(2, nplm=True)
  contexts, targets = np.array([[1, 2, 3], [4, 4, 0], [10, 9, 8]]), np.array([5, 6, 7])
  expected = []
  for ctx, t in zip(contexts, targets):
    x = np.concatenate([p["E"][w] for w in ctx])  # [E w_{t-3}; E w_{t-2}; E w_{t-1}]
    z = p["b"] + np.tanh(p["d"] + x @ p["H"]) @ p["U"]
    expected.append(-np.log(_np_softmax(z)[t]))
  got = models.nplm_softmax_loss(_f32(p), jnp.asarray(contexts), jnp.asarray(targets))
  np.testing.assert_allclose(got, np.mean(expected), rtol=1e-5)


def test_registered_nplm_module_computes_nplm_logits_on_init_nplm_parameters():
  """The registry's "nplm" (a linen module) and the functional NPLM the trainer uses are one
  model: the same parameter tree as `init_nplm`, the same logits as `nplm_logits`."""
  model = registry.build("nplm", vocab_size=V, dim=D, context_size=3, hidden=5)
  contexts = jnp.asarray([[1, 2, 3], [4, 4, 0], [10, 9, 8]])
  params = models.init_nplm(jax.random.PRNGKey(3), V, D, 3, 5)
  initialized = model.init(jax.random.PRNGKey(0), contexts)["params"]
  assert jax.tree.map(lambda a: (a.shape, a.dtype), initialized) == jax.tree.map(
      lambda a: (a.shape, a.dtype), params)
  np.testing.assert_allclose(model.apply({"params": params}, contexts),
                             models.nplm_logits(params, contexts), rtol=1e-6, atol=1e-6)
  p = _f32(_params(2, nplm=True))
  np.testing.assert_allclose(model.apply({"params": p}, contexts),
                             models.nplm_logits(p, contexts), rtol=1e-6, atol=1e-6)
  low = registry.build("nplm", vocab_size=V, dim=D, context_size=3, hidden=5, dtype="bfloat16")
  out = low.apply({"params": p}, contexts)
  assert out.dtype == jnp.bfloat16
  np.testing.assert_allclose(np.asarray(out, np.float32), models.nplm_logits(p, contexts),
                             rtol=5e-2, atol=5e-2)
  with pytest.raises(ValueError, match="context_size=3"):
    model.apply({"params": p}, contexts[:, :2])


# ---------------------------------------------------------------------------------------------
# Negative sampling: -log s(u.c_o) - sum_j log s(-u.c_nj)

def _np_ns(u, c_pos, c_negs):
  return -np.log(_np_sigmoid(u @ c_pos)) - np.sum(np.log(_np_sigmoid(-(c_negs @ u))))


def test_negative_sampling_losses_match_the_formula():
  p = _params(3)
  centers, contexts = np.array([0, 1, 2]), np.array([3, 4, 5])
  negs = np.array([[6, 7], [8, 9], [10, 6]])
  expected = np.mean([_np_ns(p["E"][i], p["C"][j], p["C"][n])
                      for i, j, n in zip(centers, contexts, negs)])
  got = models.skipgram_ns_loss(_f32(p), *map(jnp.asarray, (centers, contexts, negs)))
  np.testing.assert_allclose(got, expected, rtol=1e-5)

  windows = np.array([[1, 2, -1, -1], [3, 4, 5, 6], [-1, 7, -1, -1]])
  expected = np.mean([_np_ns(np.mean([p["E"][w] for w in ctx if w >= 0], 0), p["C"][t],
                             p["C"][n]) for ctx, t, n in zip(windows, contexts, negs)])
  got = models.cbow_ns_loss(_f32(p), *map(jnp.asarray, (windows, contexts, negs)))
  np.testing.assert_allclose(got, expected, rtol=1e-5)

  q = _params(4, nplm=True)
  ctx3 = np.array([[1, 2, 3], [0, 0, 1], [4, 5, 6]])
  expected = []
  for ctx, t, n in zip(ctx3, contexts, negs):
    h = np.tanh(q["d"] + np.concatenate([q["E"][w] for w in ctx]) @ q["H"])
    expected.append(-np.log(_np_sigmoid(h @ q["U"][:, t] + q["b"][t]))
                    - np.sum(np.log(_np_sigmoid(-(h @ q["U"][:, n] + q["b"][n])))))
  got = models.nplm_ns_loss(_f32(q), *map(jnp.asarray, (ctx3, contexts, negs)))
  np.testing.assert_allclose(got, np.mean(expected), rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Gradients: finite, and equal to central finite differences (float64)

@pytest.mark.parametrize("name", ["skipgram_softmax", "cbow_softmax", "nplm_softmax",
                                  "skipgram_ns", "cbow_ns", "nplm_ns"])
def test_gradients_match_finite_differences(name):
  with jax.enable_x64(True):
    nplm = name.startswith("nplm")
    p = jax.tree.map(jnp.asarray, _params(5, nplm=nplm))
    negs = jnp.asarray([[6, 7], [8, 9]])
    fn = {
        "skipgram_softmax": lambda q: models.skipgram_softmax_loss(q, jnp.asarray([0, 3]),
                                                                   jnp.asarray([1, 2])),
        "cbow_softmax": lambda q: models.cbow_softmax_loss(q, jnp.asarray([[1, -1, 2], [3, 4, -1]]),
                                                           jnp.asarray([0, 5])),
        "nplm_softmax": lambda q: models.nplm_softmax_loss(q, jnp.asarray([[1, 2, 3], [4, 4, 0]]),
                                                           jnp.asarray([5, 6])),
        "skipgram_ns": lambda q: models.skipgram_ns_loss(q, jnp.asarray([0, 3]),
                                                         jnp.asarray([1, 2]), negs),
        "cbow_ns": lambda q: models.cbow_ns_loss(q, jnp.asarray([[1, -1, 2], [3, 4, -1]]),
                                                 jnp.asarray([0, 5]), negs),
        "nplm_ns": lambda q: models.nplm_ns_loss(q, jnp.asarray([[1, 2, 3], [4, 4, 0]]),
                                                 jnp.asarray([5, 6]), negs),
    }[name]
    grads = jax.grad(fn)(p)
    rng = np.random.default_rng(0)
    eps = 1e-6
    for key, g in grads.items():
      assert np.all(np.isfinite(g)), key
      for _ in range(4):  # random coordinates of every parameter
        idx = tuple(rng.integers(0, s) for s in g.shape)
        plus = dict(p, **{key: p[key].at[idx].add(eps)})
        minus = dict(p, **{key: p[key].at[idx].add(-eps)})
        numeric = (fn(plus) - fn(minus)) / (2 * eps)
        np.testing.assert_allclose(g[idx], numeric, rtol=1e-5, atol=1e-8, err_msg=f"{key}{idx}")
    # Negative control: a wrong gradient (perturbed) must fail the same comparison.
    key = next(iter(grads))
    idx = tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(grads[key])), grads[key].shape))
    numeric = (fn(dict(p, **{key: p[key].at[idx].add(eps)}))
               - fn(dict(p, **{key: p[key].at[idx].add(-eps)}))) / (2 * eps)
    assert not np.isclose(grads[key][idx] * 1.01, numeric, rtol=1e-5, atol=1e-8)


# ---------------------------------------------------------------------------------------------
# The stream form equals the pairwise losses on the pairs it stands for

L, N, K = 3, 7, 2


def _stream_case(seed=0):
  rng = np.random.default_rng(seed)
  toks = rng.integers(0, V, N + 2 * L)
  doc = np.array([-1] * 1 + [0] * 6 + [1] * 5 + [-1] * 1)  # padding, two documents, padding
  widths = rng.integers(1, L + 1, N)
  negs = rng.integers(0, V, (N, K))
  mask = np.asarray(models.stream_window_mask(jnp.asarray(doc), jnp.asarray(doc >= 0),
                                              jnp.asarray(widths), L))
  return toks, doc, widths, negs, mask


def test_stream_window_mask_follows_widths_documents_and_padding():
  toks, doc, widths, negs, mask = _stream_case()
  offsets = [o for o in range(-L, L + 1) if o != 0]
  for t in range(N):
    for j, o in enumerate(offsets):
      c, ctx = t + L, t + L + o
      expect = (abs(o) <= widths[t] and doc[c] >= 0 and doc[ctx] == doc[c])
      assert mask[t, j] == expect, (t, o)
  assert mask.any() and not mask.all()


def test_stream_skipgram_equals_pairwise_loss():
  toks, _, _, negs, mask = _stream_case(1)
  p = _f32(_params(6))
  offsets = [o for o in range(-L, L + 1) if o != 0]
  inputs, outputs, pair_negs = [], [], []
  for t in range(N):
    for j, o in enumerate(offsets):
      if mask[t, j]:  # the context word's input vector predicts the center (word2vec's order)
        inputs.append(toks[t + L + o])
        outputs.append(toks[t + L])
        pair_negs.append(negs[t])
  expected = len(inputs) * models.skipgram_ns_loss(
      p, jnp.asarray(inputs), jnp.asarray(outputs), jnp.asarray(pair_negs))
  got = models.stream_skipgram_ns_loss(p["E"][toks], p["C"][toks[L:L + N]], p["C"][negs],
                                       jnp.asarray(mask), L)
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_stream_cbow_equals_windowed_loss_and_word2vec_gradient():
  toks, _, _, negs, mask = _stream_case(2)
  p = _f32(_params(7))
  offsets = [o for o in range(-L, L + 1) if o != 0]
  windows = np.array([[toks[t + L + o] if mask[t, j] else -1 for j, o in enumerate(offsets)]
                      for t in range(N)])
  has = mask.any(axis=1)
  expected = has.sum() * models.cbow_ns_loss(p, jnp.asarray(windows[has]),
                                             jnp.asarray(toks[L:L + N][has]),
                                             jnp.asarray(negs[has]))
  args = (p["C"][toks[L:L + N]], p["C"][negs], jnp.asarray(mask), L)
  x = p["E"][toks]
  np.testing.assert_allclose(models.stream_cbow_ns_loss(x, *args), expected, rtol=1e-5)
  np.testing.assert_allclose(models.stream_cbow_ns_loss(x, *args, word2vec_grad=True), expected,
                             rtol=1e-5)
  # word2vec's rule: a context row gets the error of u_hat undivided by the window size. With a
  # single center and a full window each of its 2L context rows feeds only that center.
  one = jnp.ones(1 + 2 * L, jnp.int32)
  m1 = models.stream_window_mask(one, one > 0, jnp.asarray([L]), L)
  args1 = (p["C"][toks[L:L + 1]], p["C"][negs[:1]], m1, L)
  x1 = p["E"][toks[:1 + 2 * L]]
  g_true = jax.grad(models.stream_cbow_ns_loss)(x1, *args1)
  g_w2v = jax.grad(lambda x: models.stream_cbow_ns_loss(x, *args1, word2vec_grad=True))(x1)
  ctx = np.r_[0:L, L + 1:1 + 2 * L]
  assert np.abs(g_true[ctx]).max() > 0
  np.testing.assert_allclose(g_w2v[ctx], 2 * L * g_true[ctx], rtol=1e-5)
  np.testing.assert_array_equal(g_w2v[L], 0.0)  # the center's own input row takes no part


# ---------------------------------------------------------------------------------------------
# Noise distribution and windows

def test_alias_sampling_matches_unigram_to_the_three_quarters():
  counts = np.array([1000, 300, 100, 30, 10, 3, 1], np.float64)
  probs = counts ** 0.75 / np.sum(counts ** 0.75)
  accept, alias = models.alias_table(probs)
  draws = models.sample_alias(jax.random.PRNGKey(0), jnp.asarray(accept), jnp.asarray(alias),
                              (200_000,))
  freq = np.bincount(np.asarray(draws), minlength=len(probs)) / draws.size
  np.testing.assert_allclose(freq, probs, atol=0.004)
  same = models.sample_alias(jax.random.PRNGKey(0), jnp.asarray(accept), jnp.asarray(alias),
                             (200_000,))
  np.testing.assert_array_equal(draws, same)  # same key, same draws


def test_window_widths_are_uniform_in_one_to_l():
  w = np.asarray(models.window_widths(jax.random.PRNGKey(1), 50_000, 5))
  assert w.min() == 1 and w.max() == 5
  np.testing.assert_allclose(np.bincount(w)[1:] / w.size, 0.2, atol=0.01)


def test_shared_noise_words_equal_repeated_per_center_noise_with_weight():
  toks, _, _, _, mask = _stream_case(3)
  p = _f32(_params(8))
  rng = np.random.default_rng(3)
  groups = 7  # N = 7 centers: one noise pool per center, the general code path
  pool = rng.integers(0, V, (groups, 3))
  x, co = p["E"][toks], p["C"][toks[L:L + N]]
  for fn in (models.stream_skipgram_ns_loss, models.stream_cbow_ns_loss):
    per_center = fn(x, co, p["C"][pool], jnp.asarray(mask), L)
    weighted = fn(x, co, p["C"][pool], jnp.asarray(mask), L, negative_weight=0.5)
    no_noise = fn(x, co, p["C"][pool], jnp.asarray(mask), L, negative_weight=0.0)
    np.testing.assert_allclose(weighted, 0.5 * (per_center + no_noise), rtol=1e-5)
  # One group shared by all 7 centers equals giving each center the same 3 noise words.
  shared = rng.integers(0, V, (1, 3))
  for fn in (models.stream_skipgram_ns_loss, models.stream_cbow_ns_loss):
    np.testing.assert_allclose(
        fn(x, co, p["C"][shared], jnp.asarray(mask), L),
        fn(x, co, p["C"][np.repeat(shared, N, axis=0)], jnp.asarray(mask), L), rtol=1e-5)
