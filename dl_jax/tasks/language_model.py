"""Character-level language modelling (the models for sequential data of the course overview,
section 1.5): a registered model of the "char_lm" family trained on the character text of Moby
Dick or the State of the Union addresses (`dl_jax.data.text.characters`: split by document,
vocabulary from the training text, rare characters as one unknown symbol), against an
interpolated Kneser-Ney n-gram baseline (`dl_jax.text.ngram`). Metrics in bits per character
(bpc): the mean cross-entropy in nats / ln 2.

Training is truncated backpropagation through time over contiguous streams, the carry kept in
the train state (the classic char-rnn scheme: Elman 1990, Williams and Peng 1990; Karpathy's
char-rnn). The N training characters are cut into `batch_size` streams of S = (N - seq_len) //
batch_size characters, each read in windows of `seq_len`; step s of epoch e = s // W (W = S //
seq_len windows per epoch) reads window s % W of every stream, from the state the previous
window ended in (the gradient stops at the window's start), and the carry is reset to zero at the
start of every epoch, whose streams begin `shift_e` characters in, shift_e in [0, seq_len) drawn
from (seed, e) so that the window boundaries move between epochs. The batch is a pure function of
(seed, step) and the carry lives in the checkpointed state, so a resumed run is bitwise the
uninterrupted one. The gradient is clipped to a global norm of `clip_norm` (Pascanu et al. 2013;
char-rnn clips at 5).

Evaluation reads a whole split: its characters 1..N-1 are predicted, cut into `eval_streams`
contiguous streams read in windows of `eval_window` with the carry passed from each window to the
next (so the result equals one forward pass over each stream; only the first character of each
stream is predicted from the zero state). The validation bpc is computed every
`eval_every_steps`, the test bpc at the end, and the n-gram's order and discount are chosen on the
validation text from the grids `ngram_orders` x `ngram_discounts`, then scored on the test text
(the same predicted characters 1..N-1).

At the end, `sample_count` texts of `sample_length` characters are sampled after
`sample_prompt` at each of `sample_temperatures` (softmax(logits / temperature), one lax.scan,
key fold_in(seed's key, SAMPLE_STREAM, i) for the i-th temperature), written to samples.txt and
results.json; bpc.png plots the validation bpc over training with the n-gram's as lines.
"""

import functools
import json
import math
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from dl_jax import optim, plots
from dl_jax.data.text import characters
from dl_jax.engine import checks, sharding
from dl_jax.engine.task import Plan, Task, jit_step
from dl_jax.errors import ConfigError
from dl_jax.models import language, registry
from dl_jax.models.spec import count_params
from dl_jax.text import ngram

LN2 = math.log(2.0)
DATA_STREAM, SAMPLE_STREAM = 1, 2  # fold_in streams of the data shifts and of the samples


@flax.struct.dataclass
class LMState:
  """The whole training state: the carry of every stream is part of it."""
  step: jax.Array
  params: Any
  opt_state: Any
  carry: Any  # the recurrent state of each of the batch_size streams
  rng: jax.Array  # raw uint32 key
  apply_fn: Callable = flax.struct.field(pytree_node=False)
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)


def stream_layout(num_chars: int, batch_size: int, seq_len: int) -> tuple[int, int]:
  """(characters per training stream, windows per epoch) of `num_chars` training characters."""
  stream_len = (num_chars - seq_len) // batch_size
  return stream_len, max(stream_len, 0) // seq_len


def window_batch(data: jax.Array, rng: jax.Array, step: jax.Array, batch_size: int,
                 seq_len: int, stream_len: int, windows: int):
  """(inputs, targets) [batch_size, seq_len] of training step `step` (0-based): window
  step % windows of every stream of epoch step // windows (see the module docstring)."""
  epoch, window = step // windows, step % windows
  shift = jax.random.randint(jax.random.fold_in(jax.random.fold_in(rng, DATA_STREAM), epoch),
                             (), 0, seq_len)
  starts = shift + jnp.arange(batch_size) * stream_len + window * seq_len
  chunk = data[starts[:, None] + jnp.arange(seq_len + 1)[None]]
  return chunk[:, :-1], chunk[:, 1:]


def cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """-ln softmax(logits)[target] per position, in float32."""
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)


def train_step(state: LMState, data: jax.Array, batch_size: int, seq_len: int,
               stream_len: int, windows: int):
  """One truncated-BPTT step on window `state.step` of the streams, from the carried state
  (zeros at the first window of an epoch)."""
  inputs, targets = window_batch(data, state.rng, state.step, batch_size, seq_len, stream_len,
                                 windows)
  first = state.step % windows == 0
  carry = jax.tree.map(lambda c: jnp.where(first, jnp.zeros_like(c), c), state.carry)

  def loss_fn(params):
    logits, final = state.apply_fn({"params": params}, inputs, carry, method="unroll")
    return cross_entropy(logits, targets).mean(), final

  (loss, final), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  new_state = state.replace(step=state.step + 1, opt_state=opt_state,
                            params=optax.apply_updates(state.params, updates),
                            carry=jax.lax.stop_gradient(final))
  return new_state, {"loss": loss, "bpc": loss / LN2, "grad_norm": optax.tree.norm(grads)}


def stream_windows(ids: np.ndarray, streams: int, window: int):
  """The prediction of ids[1:] from ids[:-1] as `streams` contiguous streams read in windows:
  (inputs, targets, mask), each [windows, streams, window]; the padding has mask 0."""
  n = len(ids) - 1
  per = -(-n // streams)
  per = -(-per // window) * window
  inputs, targets, mask = (np.zeros(streams * per, dtype) for dtype in
                           (np.int32, np.int32, np.float32))
  inputs[:n], targets[:n], mask[:n] = ids[:-1], ids[1:], 1.0
  return tuple(a.reshape(streams, per // window, window).transpose(1, 0, 2)
               for a in (inputs, targets, mask))


def stream_nll(apply_fn, params, carry, inputs, targets, mask) -> jax.Array:
  """The summed -ln p of the masked targets, the windows read in order with the carry passed
  from each to the next (lax.scan over the windows)."""
  def read(carry, window):
    x, y, m = window
    logits, carry = apply_fn({"params": params}, x, carry, method="unroll")
    return carry, jnp.sum(cross_entropy(logits, y) * m)

  _, sums = jax.lax.scan(read, carry, (inputs, targets, mask))
  return jnp.sum(sums)


def _number_tuple(low: float, high: float, low_open: bool) -> checks.Check:
  accepted = f"{'(' if low_open else '['}{low:g}, {high:g}]"

  def check(value):
    in_range = checks.number(low, high, low_open=low_open)
    try:
      if isinstance(value, str) or not isinstance(value, (tuple, list)) or not value:
        raise ValueError
      for v in value:
        in_range(v)
    except ValueError:
      raise ValueError(f"must be a non-empty tuple of numbers in {accepted}") from None
  return check


def _prompt(value) -> None:
  if not isinstance(value, str) or not value:
    raise ValueError("must be a non-empty string")


class LanguageModel(Task):
  """`config.model` (a "char_lm" model) on the characters of `config.corpus`; see the module
  docstring."""

  SINGLE_PROCESS = ("its contiguous training streams, with the recurrent state carried from one "
                    "window to the next, are not split over processes")
  CHECKS = {
      "corpus": checks.one_of(*characters.CHAR_CORPORA),
      "lowercase": checks.boolean,
      "min_char_count": checks.positive_int,
      "val_fraction": checks.number(0.0, 0.5, low_open=True, high_open=True),
      "test_fraction": checks.number(0.0, 0.5, low_open=True, high_open=True),
      "split_seed": checks.int_at_least(0),
      "model": checks.string,
      "model_kwargs": checks.hyper_parameters,  # names and types: the model registry
      "batch_size": checks.positive_int,
      "seq_len": checks.positive_int,
      "num_steps": checks.positive_int,
      "eval_every_steps": checks.nonnegative_int("no periodic evaluation"),
      "eval_streams": checks.positive_int,
      "eval_window": checks.positive_int,
      "optimizer": checks.one_of(*optim.OPTIMIZERS),
      "learning_rate": checks.positive_number,
      "lr_schedule": checks.one_of(*optim.SCHEDULES),
      "warmup_steps": checks.nonnegative_int("no warm-up"),
      "clip_norm": checks.nonnegative_number,
      "ngram_orders": checks.int_tuple(low=1),
      "ngram_discounts": _number_tuple(0.0, 1.0, low_open=True),
      "sample_prompt": _prompt,
      "sample_length": checks.positive_int,
      "sample_count": checks.positive_int,
      "sample_temperatures": _number_tuple(0.0, math.inf, low_open=True),
  }

  @classmethod
  def validate(cls, config):
    registry.get(config.model, family="char_lm")
    registry.build(config.model, **config.model_kwargs.to_dict())
    if config.val_fraction + config.test_fraction >= 0.5:
      raise ConfigError(f"val_fraction={config.val_fraction} + test_fraction="
                        f"{config.test_fraction} must be below 0.5 (most documents train)")
    if config.warmup_steps >= config.num_steps and config.lr_schedule != "constant":
      raise ConfigError(f"warmup_steps={config.warmup_steps} must be smaller than num_steps="
                        f"{config.num_steps}")

  def __init__(self, config, mesh):
    super().__init__(config, mesh)
    self.data = characters.load_characters(
        config.corpus, config.data_dir or None, config.val_fraction, config.test_fraction,
        config.split_seed, config.lowercase, config.min_char_count)
    vocab_size = len(self.data.vocab)
    kwargs = config.model_kwargs.to_dict()
    if kwargs.setdefault("num_classes", vocab_size) != vocab_size:
      raise ConfigError(f"model_kwargs.num_classes={kwargs['num_classes']} but the "
                        f"{config.corpus} vocabulary has {vocab_size} characters (leave it "
                        "unset)")
    if max(config.ngram_orders) > ngram.max_order(vocab_size):
      raise ConfigError(f"ngram_orders={tuple(config.ngram_orders)!r}: orders above "
                        f"{ngram.max_order(vocab_size)} are not accepted for {vocab_size} "
                        "characters")
    self.model = registry.build(config.model, **kwargs)
    self.stream_len, self.windows = stream_layout(len(self.data.train), config.batch_size,
                                                  config.seq_len)
    if self.windows < 1:
      raise ConfigError(f"batch_size={config.batch_size} x seq_len={config.seq_len} leaves no "
                        f"window of the {len(self.data.train):,} training characters; accepted: "
                        f"(batch_size + 1) x seq_len <= {len(self.data.train):,}")
    self.tx = optim.make_optimizer(config.optimizer, config.learning_rate, config.lr_schedule,
                                   config.num_steps, config.warmup_steps)
    if config.clip_norm:
      self.tx = optax.chain(optax.clip_by_global_norm(config.clip_norm), self.tx)
    self.train_ids = jax.device_put(jnp.asarray(self.data.train), sharding.replicated(mesh))
    self._train_step = jit_step(functools.partial(
        train_step, batch_size=config.batch_size, seq_len=config.seq_len,
        stream_len=self.stream_len, windows=self.windows), donate_argnums=0)
    self._stream_nll = jax.jit(functools.partial(stream_nll, self.model.apply))

  def plan(self) -> Plan:
    c = self.config
    return Plan(c.num_steps, self.windows, "characters", c.batch_size * c.seq_len,
                eval_every_steps=c.eval_every_steps)

  def init(self, key) -> LMState:
    init_key, rng = jax.random.split(jax.random.key_data(key))
    params = self.model.init(init_key, jnp.zeros((1, self.config.seq_len), jnp.int32))["params"]
    return LMState(step=jnp.zeros((), jnp.int32), params=params, opt_state=self.tx.init(params),
                   carry=self.model.initial_carry(self.config.batch_size), rng=rng,
                   apply_fn=self.model.apply, tx=self.tx)

  def advance(self, state, step, stop):
    del stop
    state, metrics = self._train_step(state, self.train_ids)
    return state, step + 1, {"train": metrics}

  def bits_per_char(self, params, ids: np.ndarray) -> float:
    """The bpc of `params` on ids[1:] (see the module docstring)."""
    c = self.config
    arrays = stream_windows(ids, c.eval_streams, c.eval_window)
    total = self._stream_nll(params, self.model.initial_carry(c.eval_streams), *arrays)
    return float(total) / (len(ids) - 1) / LN2

  def evaluate(self, state, step):
    bpc = self.bits_per_char(state.params, self.data.val)
    return state, {"val": {"loss": bpc * LN2, "bpc": bpc}}

  def samples(self, params) -> list[dict]:
    """`sample_count` texts per temperature, after the prompt."""
    c = self.config
    prompt = jnp.asarray(np.tile(self.data.vocab.encode(c.sample_prompt), (c.sample_count, 1)))
    draw = jax.jit(functools.partial(language.sample, self.model, length=c.sample_length))
    root = jax.random.fold_in(jax.random.PRNGKey(c.seed), SAMPLE_STREAM)
    out = []
    for i, temperature in enumerate(c.sample_temperatures):
      ids = np.asarray(draw(params, prompt, jax.random.fold_in(root, i),
                            temperature=jnp.float32(temperature)))
      out += [{"temperature": float(temperature), "text": c.sample_prompt
               + self.data.vocab.decode(row)} for row in ids]
    return out

  def baseline(self) -> dict:
    """The Kneser-Ney n-gram: order and discount chosen on the validation text, test bpc."""
    c, data = self.config, self.data
    model = ngram.KneserNey(data.train, len(data.vocab), max(c.ngram_orders))
    chosen = ngram.select(model, data.val, c.ngram_orders, c.ngram_discounts)
    return {"order": chosen["order"], "discount": chosen["discount"],
            "val_bpc": chosen["val_bits"],
            "test_bpc": model.bits_per_symbol(data.test, chosen["discount"], chosen["order"]),
            "val_bpc_grid": chosen["grid"]}

  def finish(self, state, step, out_dir):
    c, data = self.config, self.data
    test_bpc = self.bits_per_char(state.params, data.test)
    val_bpc = self.bits_per_char(state.params, data.val)
    baseline = self.baseline()
    samples = self.samples(state.params)
    if out_dir is not None:
      (out_dir / "samples.txt").write_text("".join(
          f"--- temperature {s['temperature']:g}, prompt {c.sample_prompt!r}\n{s['text']}\n\n"
          for s in samples))
      self._figure(out_dir, baseline, test_bpc)
    summary = {
        "corpus": c.corpus, "vocab_size": len(data.vocab), "vocab": data.vocab.chars,
        "lowercase": c.lowercase, "min_char_count": c.min_char_count,
        "chars": {k: int(len(getattr(data, k))) for k in ("train", "val", "test")},
        "documents": {k: int(len(v)) for k, v in data.splits.documents.items()},
        "unknown_rate": {k: data.unknown_rate(k) for k in ("train", "val", "test")},
        "test_bpc": test_bpc, "val_bpc": val_bpc, "ngram": baseline,
        "param_count": count_params(state.params), "batch_size": c.batch_size,
        "seq_len": c.seq_len, "clip_norm": c.clip_norm,
        "epochs_of_text": step / self.windows, "samples": samples}
    headline = (f"test {test_bpc:.3f} bpc (val {val_bpc:.3f}); Kneser-Ney {baseline['order']}-gram"
                f" (D {baseline['discount']:g}) test {baseline['test_bpc']:.3f} bpc "
                f"({count_params(state.params):,} parameters)")
    records = {"test": {"loss": test_bpc * LN2, "bpc": test_bpc},
               "ngram_test": {"bpc": baseline["test_bpc"]}}
    return summary, records, headline

  def _figure(self, out_dir, baseline: dict, test_bpc: float) -> None:
    """bpc.png: the validation bpc over training, the n-gram's validation and test bpc."""
    path = out_dir / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    val = sorted((r["step"], r["bpc"]) for r in rows if r["split"] == "val" and "bpc" in r)
    plt = plots.pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    if val:
      ax.plot(*zip(*val), "o-", ms=3, label=f"{self.config.model}: validation")
    steps = val[-1][0] if val else self.config.num_steps
    ax.plot([steps], [test_bpc], "*", ms=10, label=f"{self.config.model}: test (end)")
    order = baseline["order"]
    ax.axhline(baseline["val_bpc"], color="k", lw=1,
               label=f"Kneser-Ney {order}-gram: validation")
    ax.axhline(baseline["test_bpc"], color="k", lw=1, ls="--",
               label=f"Kneser-Ney {order}-gram: test")
    ax.set_xlabel("step")
    ax.set_ylabel("bits per character")
    ax.set_title(f"{self.config.experiment}: {self.config.corpus}", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_dir / "bpc.png")
    plt.close(fig)
