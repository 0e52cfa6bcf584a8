"""Word-embedding models of chapter 3: the NPLM (section 3.2), CBOW (3.3.1) and skip-gram (3.3.2).

Every model is a pure function of a params pytree (a dict of arrays) and integer inputs, jittable,
with two losses:

- the full softmax the notes describe (eq. 3.5, 3.10, 3.13): cross-entropy over the whole
  vocabulary, O(|V|) per example;
- negative sampling (Mikolov et al. 2013b): for an input vector u, the true output word o and k
  noise words n_1..n_k drawn from the unigram distribution raised to 3/4,

      loss = -log sigma(u . c_o) - sum_j log sigma(-u . c_{n_j}),

  O(k) per example, which is what makes large vocabularies cheap.

Parameter names follow the notes: `E` is the word embedding (rows are the vectors E w of eq. 3.7
and 3.11), `C` the context (output) embedding of eq. 3.9 and 3.12. The NPLM adds the hidden layer
of g (eq. 3.5): `H`, `d` (tanh hidden units) and the output layer `U`, `b`.

The `stream_*` losses are the same negative-sampling objectives written over a contiguous slice of
the token stream instead of an explicit list of (center, context) pairs: the input rows are
gathered once per token and every window is a static shifted slice of them (see
`stream_skipgram_ns_loss`). They are what the fast trainer differentiates; tests check that they
equal the pairwise losses on the pairs they stand for.
"""

import jax
import jax.numpy as jnp
import numpy as np

from dl_jax.errors import ConfigError


# ---------------------------------------------------------------------------------------------
# Parameters

def init_word2vec(key: jax.Array, vocab_size: int, dim: int) -> dict:
  """CBOW / skip-gram parameters as word2vec initializes them: E ~ U(-0.5/dim, 0.5/dim), C = 0."""
  e = jax.random.uniform(key, (vocab_size, dim), jnp.float32, -0.5 / dim, 0.5 / dim)
  return {"E": e, "C": jnp.zeros((vocab_size, dim), jnp.float32)}


def init_nplm(key: jax.Array, vocab_size: int, dim: int, context_size: int,
              hidden: int) -> dict:
  """NPLM parameters (eq. 3.5): E (|V|, m), hidden H ((n-1) m, h), d (h), output U (h, |V|), b."""
  ke, kh, ku = jax.random.split(key, 3)
  fan_in = context_size * dim
  return {
      "E": jax.random.normal(ke, (vocab_size, dim), jnp.float32) * 0.1,
      "H": jax.random.normal(kh, (fan_in, hidden), jnp.float32) / np.sqrt(fan_in),
      "d": jnp.zeros((hidden,), jnp.float32),
      "U": jax.random.normal(ku, (hidden, vocab_size), jnp.float32) / np.sqrt(hidden),
      "b": jnp.zeros((vocab_size,), jnp.float32),
  }


# ---------------------------------------------------------------------------------------------
# Shared pieces

def softmax_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """-log softmax(z)_target per example (eq. 3.10 / 3.13 with the cross-entropy loss)."""
  return jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(
      logits, targets[..., None], axis=-1)[..., 0]


def negative_sampling(u: jax.Array, positive: jax.Array, negatives: jax.Array) -> jax.Array:
  """-log sigma(u . c_o) - sum_j log sigma(-u . c_{n_j}) per example.

  Args:
    u: (..., d) input vectors.
    positive: (..., d) output vectors of the true words.
    negatives: (..., k, d) output vectors of the noise words.
  """
  pos = jnp.sum(u * positive, axis=-1)
  neg = jnp.einsum("...d,...kd->...k", u, negatives)
  return -jax.nn.log_sigmoid(pos) - jnp.sum(jax.nn.log_sigmoid(-neg), axis=-1)


def cbow_context(params: dict, contexts: jax.Array) -> jax.Array:
  """The averaged context vector u_hat of eq. 3.7-3.8; slots holding -1 (padding) are ignored.

  Args:
    contexts: (B, 2L) word ids, -1 where a window is cut (random width, document edge).
  Returns:
    (B, d); a row with no context at all is 0.
  """
  valid = contexts >= 0
  rows = params["E"][jnp.where(valid, contexts, 0)] * valid[..., None]
  count = jnp.sum(valid, axis=-1, keepdims=True)
  return jnp.sum(rows, axis=1) / jnp.maximum(count, 1)


# ---------------------------------------------------------------------------------------------
# Skip-gram (eq. 3.11-3.13)

def skipgram_logits(params: dict, centers: jax.Array) -> jax.Array:
  """z = C E w_i (eq. 3.11-3.12): (B, |V|) scores of every word as a context of each center."""
  return params["E"][centers] @ params["C"].T


def skipgram_softmax_loss(params: dict, centers: jax.Array, contexts: jax.Array) -> jax.Array:
  """Mean -log P(w_j | w_i) over pairs, P = softmax(C E w_i) (eq. 3.13)."""
  return jnp.mean(softmax_cross_entropy(skipgram_logits(params, centers), contexts))


def skipgram_ns_loss(params: dict, centers: jax.Array, contexts: jax.Array,
                     negatives: jax.Array) -> jax.Array:
  """Mean negative-sampling loss over (center, context) pairs; negatives: (B, k) noise ids."""
  u = params["E"][centers]
  return jnp.mean(negative_sampling(u, params["C"][contexts], params["C"][negatives]))


# ---------------------------------------------------------------------------------------------
# CBOW (eq. 3.6-3.10)

def cbow_logits(params: dict, contexts: jax.Array) -> jax.Array:
  """z = C u_hat (eq. 3.9): (B, |V|) scores of every word as the center of each window."""
  return cbow_context(params, contexts) @ params["C"].T


def cbow_softmax_loss(params: dict, contexts: jax.Array, targets: jax.Array) -> jax.Array:
  """Mean -log P(w_t | window) with P = softmax(C u_hat) (eq. 3.10)."""
  return jnp.mean(softmax_cross_entropy(cbow_logits(params, contexts), targets))


def cbow_ns_loss(params: dict, contexts: jax.Array, targets: jax.Array,
                 negatives: jax.Array) -> jax.Array:
  """Mean negative-sampling loss of the averaged context against the center word."""
  u = cbow_context(params, contexts)
  return jnp.mean(negative_sampling(u, params["C"][targets], params["C"][negatives]))


# ---------------------------------------------------------------------------------------------
# NPLM (eq. 3.2-3.5): g = softmax(b + U tanh(d + H [E w_{t-n+1}; ...; E w_{t-1}]))

def nplm_hidden(params: dict, contexts: jax.Array) -> jax.Array:
  """tanh(d + H x) with x the concatenated embeddings of the n-1 previous words: (B, h)."""
  x = params["E"][contexts].reshape(contexts.shape[0], -1)
  return jnp.tanh(x @ params["H"] + params["d"])


def nplm_logits(params: dict, contexts: jax.Array) -> jax.Array:
  """Scores over the vocabulary for the next word (eq. 3.4-3.5): (B, |V|)."""
  return nplm_hidden(params, contexts) @ params["U"] + params["b"]


def nplm_softmax_loss(params: dict, contexts: jax.Array, targets: jax.Array) -> jax.Array:
  """Mean -log P(w_t | w_{t-n+1}^{t-1}) (eq. 3.3-3.5), in nats; exp of it is the perplexity."""
  return jnp.mean(softmax_cross_entropy(nplm_logits(params, contexts), targets))


def nplm_ns_loss(params: dict, contexts: jax.Array, targets: jax.Array,
                 negatives: jax.Array) -> jax.Array:
  """Negative sampling on the NPLM output layer: columns of U (with bias b) as output vectors."""
  h = nplm_hidden(params, contexts)
  u_t, u_n = params["U"].T[targets], params["U"].T[negatives]
  pos = jnp.sum(h * u_t, -1) + params["b"][targets]
  neg = jnp.einsum("bd,bkd->bk", h, u_n) + params["b"][negatives]
  return jnp.mean(-jax.nn.log_sigmoid(pos) - jnp.sum(jax.nn.log_sigmoid(-neg), -1))


# ---------------------------------------------------------------------------------------------
# The noise distribution: unigram^0.75, sampled in O(1) with an alias table

def alias_table(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Vose's alias method: (accept float32[V], alias int32[V]) for `sample_alias`."""
  p = np.asarray(probabilities, np.float64)
  if p.ndim != 1 or p.size < 1 or not np.all(np.isfinite(p)) or np.any(p < 0) or p.sum() <= 0:
    raise ConfigError("the noise distribution must be a 1-D array of non-negative weights with a "
                      "positive sum, e.g. Vocabulary.noise_distribution()")
  p = p / p.sum()
  n = len(p)
  scaled = p * n
  accept = np.ones(n, np.float64)
  alias = np.arange(n, dtype=np.int32)
  small = [i for i in range(n) if scaled[i] < 1.0]
  large = [i for i in range(n) if scaled[i] >= 1.0]
  while small and large:
    s, l = small.pop(), large.pop()
    accept[s], alias[s] = scaled[s], l
    scaled[l] -= 1.0 - scaled[s]
    (small if scaled[l] < 1.0 else large).append(l)
  return accept.astype(np.float32), alias


def sample_alias(key: jax.Array, accept: jax.Array, alias: jax.Array, shape) -> jax.Array:
  """Draws int32 ids of `shape` from the distribution `alias_table` was built from.

  Two random 32-bit words per draw: one picks a slot uniformly (bits mod V, bias < V / 2^32), the
  other is the 24-bit coin that keeps the slot or takes its alias.
  """
  bits = jax.random.bits(key, (2, *shape), jnp.uint32)
  n = accept.shape[0]
  slot = (bits[0] % jnp.uint32(n)).astype(jnp.int32)
  coin = (bits[1] >> 8).astype(jnp.float32) * (1.0 / (1 << 24))
  return jnp.where(coin < accept[slot], slot, alias[slot])


def window_widths(key: jax.Array, n: int, max_window: int) -> jax.Array:
  """word2vec's random window widths, uniform in [1, max_window] (section 3.3.2, step 1)."""
  bits = jax.random.bits(key, (n,), jnp.uint32)
  return (bits % jnp.uint32(max_window)).astype(jnp.int32) + 1


# ---------------------------------------------------------------------------------------------
# The same objectives over a slice of the token stream (what the fast trainer differentiates)

def stream_window_mask(doc: jax.Array, valid: jax.Array, widths: jax.Array,
                       max_window: int) -> jax.Array:
  """(N, 2L) mask of the context slots of N centers in a stream slice of N + 2L tokens.

  Center t sits at slice position t + L; slot j in [0, 2L) is the offset o = j - L (j < L) or
  j - L + 1 (j >= L). A slot counts when |o| <= widths[t] (word2vec's random window, eq. 3.6 and
  section 3.3.2, step 1), the context token is in the same document as the center, and both are
  real tokens (`valid`).

  Args:
    doc: (N + 2L,) document index of each slice position.
    valid: (N + 2L,) bool, False on padding past either end of the stream.
    widths: (N,) int window widths in [1, L].
  """
  n = widths.shape[0]
  L = max_window
  center_doc, center_valid = doc[L:L + n], valid[L:L + n]
  cols = []
  for o in _offsets(L):
    ok = (abs(o) <= widths) & (doc[L + o:L + o + n] == center_doc)
    cols.append(ok & valid[L + o:L + o + n] & center_valid)
  return jnp.stack(cols, axis=1)


def _offsets(max_window: int) -> list[int]:
  return [o for o in range(-max_window, max_window + 1) if o != 0]


def _noise_scores(u: jax.Array, negatives_out: jax.Array) -> jax.Array:
  """(N, k') scores of N input vectors against the noise rows of their group.

  negatives_out is (G, k', d) with G dividing N: centers n*G/N .. share group n's k' noise words
  (G = N: every center has its own, as in word2vec).
  """
  g = negatives_out.shape[0]
  n, d = u.shape
  return jnp.einsum("gnd,gkd->gnk", u.reshape(g, n // g, d), negatives_out).reshape(n, -1)


def _ns_terms(u, centers_out, negatives_out, negative_weight):
  pos = jnp.sum(u * centers_out, axis=-1)
  neg = _noise_scores(u, negatives_out)
  return -jax.nn.log_sigmoid(pos) - negative_weight * jnp.sum(jax.nn.log_sigmoid(-neg), -1)


def stream_skipgram_ns_loss(x: jax.Array, centers_out: jax.Array, negatives_out: jax.Array,
                            mask: jax.Array, max_window: int,
                            negative_weight: float = 1.0) -> jax.Array:
  """Summed skip-gram negative-sampling loss of all (center, context) pairs of a stream slice.

  For every center t and every unmasked offset o, the pair loss is
  `negative_sampling(x[t+o], c_t, negatives_t)`: like word2vec, the context word's input vector
  predicts the center word through the output embedding C, which is the same objective as
  eq. 3.11-3.13 on the set of pairs (the pair set is symmetric). The noise words are drawn once
  per center (or per group of centers, see `_noise_scores`) and shared by its up to 2L pairs.

  Args:
    x: (N + 2L, d) rows of E for the tokens of the slice (gathered once per token).
    centers_out: (N, d) rows of C for the N centers.
    negatives_out: (G, k', d) rows of C for the noise words: G = N for k' per center, or fewer
      groups of consecutive centers sharing k' noise words.
    mask: (N, 2L) from `stream_window_mask`.
    negative_weight: weight of the noise terms; k / k' makes k' shared noise words an unbiased
      stand-in for k per pair (the expected loss is the same).
  Returns:
    The sum over pairs (SGD on it applies word2vec's per-pair update to every pair).
  """
  n = centers_out.shape[0]
  total = 0.0
  for j, o in enumerate(_offsets(max_window)):
    u = x[max_window + o:max_window + o + n]
    total += jnp.sum(_ns_terms(u, centers_out, negatives_out, negative_weight) * mask[:, j])
  return total


def stream_cbow_ns_loss(x: jax.Array, centers_out: jax.Array, negatives_out: jax.Array,
                        mask: jax.Array, max_window: int, word2vec_grad: bool = False,
                        negative_weight: float = 1.0) -> jax.Array:
  """Summed CBOW negative-sampling loss of the N windows of a stream slice (eq. 3.8-3.10).

  u_hat is the mean of the unmasked context rows; centers with an empty window contribute 0.
  Arguments as for `stream_skipgram_ns_loss`; the k noise words are per center, as in word2vec.
  With `word2vec_grad` the value is the same but the gradient reaching each context row is the
  gradient with respect to u_hat itself, not divided by the window size: the update word2vec and
  gensim (cbow_mean=1) apply.
  """
  n = centers_out.shape[0]
  total = 0.0
  for j, o in enumerate(_offsets(max_window)):
    total += x[max_window + o:max_window + o + n] * mask[:, j:j + 1]
  count = jnp.sum(mask, axis=1)
  u = total / jnp.maximum(count, 1)[:, None]
  if word2vec_grad:
    u = total + jax.lax.stop_gradient(u - total)
  return jnp.sum(_ns_terms(u, centers_out, negatives_out, negative_weight) * (count > 0))


MODELS = ("skipgram", "cbow", "nplm")
LOSSES = ("negative_sampling", "softmax")

