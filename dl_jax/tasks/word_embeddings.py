"""Word embeddings (chapter 3): skip-gram and CBOW (section 3.3.2) or the NPLM (section 3.2) on
the corpora of `dl_jax.data.text`, a task of the engine.

One `advance` is one jitted call of up to `steps_per_call` word2vec steps (`dl_jax.text.word2vec`)
or one NPLM step (`dl_jax.text.nplm`). At the end: analogies (section 3.4), word similarity,
neighbours, a projection figure and `vectors.txt`; for the NPLM also held-out perplexities next
to the n-gram baselines.
"""

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from dl_jax.data import text as text_data
from dl_jax.engine import checks
from dl_jax.engine.task import Plan, Task
from dl_jax.errors import ConfigError
from dl_jax.text import corpus as corpus_lib
from dl_jax.text import evaluate, models, nplm, word2vec


def _batch_size(value) -> None:
  if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
    raise ValueError(f"must be a positive integer or 0 (the engine's default: "
                     f"{word2vec.DEFAULT_BATCH['native']} native, "
                     f"{word2vec.DEFAULT_BATCH['xla']} xla)")


class WordEmbeddings(Task):
  """Trains `config.model` (skipgram, cbow or nplm) on `config.corpus`."""

  SINGLE_PROCESS = ("word2vec trains in native threads that no collective joins, and the NPLM's "
                    "batches are not split")
  CHECKS = {
      "model": checks.one_of(*models.MODELS),
      "loss": checks.one_of(*models.LOSSES),
      "corpus": checks.names(text_data.CORPORA),
      "max_tokens": checks.nonnegative_int("the whole corpus"),
      "min_count": checks.positive_int,
      "max_vocab": checks.nonnegative_int("no limit"),
      "sample": checks.probability,
      "dim": checks.positive_int,
      "window": checks.positive_int,
      "negative": checks.positive_int,
      "noise_group": checks.positive_int,
      "noise_pool": checks.nonnegative_int("k noise words"),
      "engine": checks.one_of(*word2vec.ENGINES),
      "native_threads": checks.one_of(1, 2),
      "epochs": checks.positive_int,
      "batch_size": _batch_size,
      "steps_per_call": checks.positive_int,
      "learning_rate": checks.positive_number,
      "min_learning_rate": checks.nonnegative_number,
      "row_scale": checks.one_of(*word2vec.ROW_SCALES),
      "context_size": checks.positive_int,
      "hidden": checks.positive_int,
      "split_seed": checks.seed,
  }

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    if config.min_learning_rate > config.learning_rate:
      raise ConfigError(f"min_learning_rate={config.min_learning_rate!r} must be <= "
                        f"learning_rate={config.learning_rate!r}")
    if config.model == "nplm" and config.batch_size == 0:
      raise ConfigError("batch_size=0 must be a positive integer for model='nplm'")
    if config.batch_size % config.noise_group:
      raise ConfigError(f"noise_group={config.noise_group} must divide batch_size="
                        f"{config.batch_size}")
    self.data_dir = config.data_dir or None
    self.corpus = corpus_lib.load_encoded(config.corpus, config.min_count, config.max_vocab,
                                          config.max_tokens, self.data_dir)
    if config.model == "nplm":
      self.trainer = nplm.NPLM(self.corpus, config)
      self.engine, units_per_step = "xla", config.batch_size
    else:
      spec = word2vec.StreamSpec(config.model, config.loss, config.window, config.negative,
                                 config.batch_size, config.steps_per_call, config.row_scale,
                                 config.noise_group, config.noise_pool, config.engine,
                                 config.native_threads)
      self.trainer = word2vec.Word2Vec(
          self.corpus, spec, dim=config.dim, sample=config.sample, epochs=config.epochs,
          seed=config.seed, learning_rate=config.learning_rate,
          min_learning_rate=config.min_learning_rate, data_dir=self.data_dir)
      self.engine, units_per_step = self.trainer.engine, self.trainer.spec.batch
    self.units_per_step = units_per_step  # centers (word2vec) or n-grams (NPLM) per step
    logging.info("%s (%s, engine %s): vocabulary %d, %d tokens", config.model, config.loss,
                 self.engine, len(self.corpus.vocab), len(self.corpus.ids))

  def plan(self) -> Plan:
    total = self.trainer.total_steps
    unit = "ngrams" if self.config.model == "nplm" else "centers"
    return Plan(total, total / self.config.epochs, unit, self.units_per_step)

  def init(self, key):
    key = jax.random.key_data(key)
    if self.config.model == "nplm":
      params, opt_state = self.trainer.init(key)
      return {"params": params, "opt_state": opt_state}
    E, C = self.trainer.init(key)
    return {"E": E, "C": C}

  def advance(self, state, step, stop):
    if self.config.model == "nplm":
      params, opt_state, m = self.trainer.step(state["params"], state["opt_state"], step)
      return {"params": params, "opt_state": opt_state}, step + 1, {"train": m}
    E, C, losses, pairs, grad_norm, new_step = self.trainer.call(state["E"], state["C"], step,
                                                                 stop)
    loss = losses / jnp.maximum(pairs, 1)  # per pair
    grad_norm = jnp.broadcast_to(grad_norm, loss.shape)  # one value per call
    return {"E": E, "C": C}, new_step, {"train": {"loss": loss, "grad_norm": grad_norm}}

  def finish(self, state, step, out_dir):
    words = self.corpus.vocab.words
    summary = {"loss": self.config.loss, "vocab_size": len(words),
               "tokens": int(len(self.corpus.ids)), "engine": self.engine}
    if self.config.model == "nplm":
      params = state["params"]
      vectors = np.asarray(params["E"])
      summary.update({"val_perplexity": self.trainer.perplexity(params, "val"),
                      "test_perplexity": self.trainer.perplexity(params, "test"),
                      "test_ngrams": int(len(self.trainer.examples["test"][1])),
                      **self.trainer.baselines()})
    else:
      vectors = np.asarray(state["E"])
    summary.update(evaluate.evaluate_embeddings(vectors, words, self.data_dir, out_dir))
    if out_dir is not None:
      evaluate.save_word2vec_text(out_dir / "vectors.txt", words, vectors)
    analogy = summary["analogy"]
    headline = (f"analogy accuracy {100 * analogy['accuracy']:.2f}% (coverage "
                f"{100 * analogy['coverage']:.1f}%)")
    if "test_perplexity" in summary:
      headline += f"  test perplexity {summary['test_perplexity']:.1f}"
    return summary, {}, headline

