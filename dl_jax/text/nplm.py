"""The neural probabilistic language model's training (section 3.2, eq. 3.2-3.5): minibatches of
n-gram examples, dense optax updates, held-out perplexity and n-gram baselines."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from dl_jax.engine.task import jit_step
from dl_jax.errors import ConfigError
from dl_jax.text import models
from dl_jax.text.corpus import Corpus


class NPLM:
  """Trains the NPLM on the training documents; perplexities on held-out documents."""

  def __init__(self, corpus: Corpus, config: ml_collections.ConfigDict):
    from dl_jax.text import pairs  # pylint: disable=g-import-not-at-top
    self.config, self.vocab_size = config, len(corpus.vocab)
    train_docs, val_docs, test_docs = pairs.split_documents(
        corpus.offsets, (0.9, 0.05, 0.05), config.split_seed)
    self.parts = {name: pairs.select_documents(corpus.ids, corpus.offsets, docs)
                  for name, docs in (("train", train_docs), ("val", val_docs),
                                     ("test", test_docs))}
    n = config.context_size
    self.examples = {k: pairs.ngram_examples(*v, n) for k, v in self.parts.items()}
    self.steps_per_epoch = len(self.examples["train"][1]) // config.batch_size
    if self.steps_per_epoch == 0:
      raise ConfigError(f"batch_size={config.batch_size} exceeds the "
                        f"{len(self.examples['train'][1])} training n-grams")
    self.total_steps = config.epochs * self.steps_per_epoch
    self.key = jax.random.PRNGKey(config.seed)
    self.tx = optax.adam(optax.linear_schedule(config.learning_rate, config.min_learning_rate,
                                               self.total_steps))
    counts = np.bincount(self.parts["train"][0], minlength=self.vocab_size)
    accept, alias = models.alias_table((counts + 1.0) ** 0.75)
    self.accept, self.alias = jnp.asarray(accept), jnp.asarray(alias)
    self.train_counts = counts
    self._step = jit_step(self._train_step, donate_argnums=(0, 1))
    self._eval = jax.jit(lambda p, c, t: jnp.sum(models.softmax_cross_entropy(
        models.nplm_logits(p, c), t)))

  def init(self, key=None):
    """(params, optimizer state) from fold_in(key, 2^31 - 1); `key` defaults to PRNGKey(seed)."""
    c, key = self.config, self.key if key is None else key
    params = models.init_nplm(jax.random.fold_in(key, -1 & 0x7fffffff), self.vocab_size,
                              c.dim, c.context_size, c.hidden)
    return params, self.tx.init(params)

  def _train_step(self, params, opt_state, contexts, targets, step):
    key = jax.random.fold_in(self.key, step)
    if self.config.loss == "softmax":
      loss_fn = lambda p: models.nplm_softmax_loss(p, contexts, targets)
    else:
      negs = models.sample_alias(key, self.accept, self.alias,
                                 (targets.shape[0], self.config.negative))
      loss_fn = lambda p: models.nplm_ns_loss(p, contexts, targets, negs)
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = self.tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state,
            {"loss": loss, "grad_norm": optax.tree.norm(grads)})

  def step(self, params, opt_state, step: int):
    """Global step `step` (0-based): (params, opt_state, {"loss", "grad_norm"})."""
    contexts, targets = self.batch(step)
    return self._step(params, opt_state, contexts, targets, np.int32(step))

  def batch(self, step: int):
    """Examples of global step `step` (0-based); the epoch's order is pure in (seed, epoch)."""
    epoch, i = divmod(step, self.steps_per_epoch)
    order = np.random.default_rng([self.config.seed, epoch, 0x9a]).permutation(
        len(self.examples["train"][1]))
    take = order[i * self.config.batch_size:(i + 1) * self.config.batch_size]
    contexts, targets = self.examples["train"]
    return contexts[take], targets[take]

  def perplexity(self, params, split: str) -> float:
    contexts, targets = self.examples[split]
    total = 0.0
    for i in range(0, len(targets), 4096):
      total += float(self._eval(params, contexts[i:i + 4096], targets[i:i + 4096]))
    return math.exp(total / max(len(targets), 1))

  def baselines(self) -> dict:
    """Held-out perplexities of the add-one unigram and an interpolated bigram (lambda on val)."""
    V = self.vocab_size
    uni = (self.train_counts + 1.0) / (self.train_counts.sum() + V)
    ids, offsets = self.parts["train"]
    starts = np.zeros(len(ids), bool)
    starts[offsets[:-1][offsets[:-1] < len(ids)]] = True
    prev, nxt = ids[:-1][~starts[1:]], ids[1:][~starts[1:]]
    pair_counts = {}
    keys, counts = np.unique(prev.astype(np.int64) * V + nxt, return_counts=True)
    pair_counts = dict(zip(keys.tolist(), counts.tolist()))
    ctx_counts = np.bincount(prev, minlength=V).astype(np.float64)

    def bigram_nll(split, lam):
      contexts, targets = self.examples[split]
      p, w = contexts[:, -1].astype(np.int64), targets.astype(np.int64)
      c = np.array([pair_counts.get(k, 0) for k in (p * V + w).tolist()], np.float64)
      ml = np.where(ctx_counts[p] > 0, c / np.maximum(ctx_counts[p], 1), uni[w])
      return float(np.mean(-np.log(lam * ml + (1 - lam) * uni[w])))

    lams = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9)
    best = min(lams, key=lambda lam: bigram_nll("val", lam))
    test_targets = self.examples["test"][1]
    return {"unigram_add_one_test_perplexity": float(np.exp(-np.mean(np.log(uni[test_targets])))),
            "bigram_interpolated_test_perplexity": math.exp(bigram_nll("test", best)),
            "bigram_lambda": best}
