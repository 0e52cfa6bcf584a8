"""Interpolated Kneser-Ney n-gram models of symbol sequences (characters), the baseline of the
character-level language model (Kneser and Ney 1995; Chen and Goodman 1998, "An empirical study
of smoothing techniques for language modeling", section 2.7, eq. 26 with one discount D).

With c(.) the counts of the training text, N1+(. g) the number of distinct symbols that precede
the k-gram g somewhere in it (its continuation count), and a context h of k - 1 symbols, the
probability of w after h at the model's order n (k = n) is

    P_n(w | h) = (max(c(hw) - D, 0) + D T(h) P_{n-1}(w | h')) / sum_v c(hv),

with T(h) = |{v : c(hv) > 0}| and h' = h without its first symbol; at the lower orders
(1 <= k < n) the counts are the continuation counts,

    P_k(w | h) = (max(N1+(. hw) - D, 0) + D T'(h) P_{k-1}(w | h')) / sum_v N1+(. hv),

T'(h) = |{v : N1+(. hv) > 0}|, and P_0(w) = 1 / V (uniform, so that a symbol never seen in
training keeps a probability). A context never seen (zero denominator) passes P_{k-1} on. For
0 < D <= 1 every P_k(. | h) sums to 1 (each nonzero count is >= 1 >= D, so the discounted mass
is exactly what the lower order receives). At the start of a text, where fewer than n - 1
symbols precede a position, the model stops at the order the context allows.

Symbols are ints in [0, V); a k-gram is stored as the integer sum_i g_i V^(k-1-i) (int64), which
bounds the order by V^order < 2^63. Counts are sorted key arrays searched with np.searchsorted,
so fitting and scoring are a few sorts and lookups per order.
"""

import math

import numpy as np

from dl_jax.errors import ConfigError


def max_order(vocab_size: int) -> int:
  """The largest order whose n-gram keys fit in int64 for `vocab_size` symbols."""
  order = 1
  while vocab_size ** (order + 1) < 2 ** 63:
    order += 1
  return order


def _codes(ids: np.ndarray, k: int, vocab_size: int) -> np.ndarray:
  """The keys of the k-grams ids[i:i+k], i = 0..len-k (int64)."""
  codes = ids[:len(ids) - k + 1].astype(np.int64)
  for j in range(1, k):
    codes = codes * vocab_size + ids[j:len(ids) - k + 1 + j]
  return codes


class _Level:
  """Counts of the k-grams of one order: sorted keys and their counts, and per context (the
  key // V) the sum of the counts and the number of distinct next symbols."""

  def __init__(self, keys: np.ndarray, counts: np.ndarray, vocab_size: int):
    self.keys, self.counts = keys, counts.astype(np.float64)
    self.context_keys, first = np.unique(keys // vocab_size, return_index=True)
    self.context_totals = (np.add.reduceat(self.counts, first) if keys.size
                           else np.zeros(0))
    self.context_types = np.diff(np.append(first, keys.size)).astype(np.float64)

  @staticmethod
  def _lookup(table: np.ndarray, values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    if not table.size:
      return np.zeros(queries.shape)
    where = np.minimum(np.searchsorted(table, queries), table.size - 1)
    return np.where(table[where] == queries, values[where], 0.0)

  def count(self, keys: np.ndarray) -> np.ndarray:
    return self._lookup(self.keys, self.counts, keys)

  def context(self, contexts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (self._lookup(self.context_keys, self.context_totals, contexts),
            self._lookup(self.context_keys, self.context_types, contexts))


class KneserNey:
  """Interpolated Kneser-Ney models of every order 1..`order` fitted on `ids` (int symbols in
  [0, vocab_size)); `log_probs`, `bits_per_symbol` and `distribution` take the order and the
  discount, so that both are chosen on held-out text without refitting."""

  def __init__(self, ids: np.ndarray, vocab_size: int, order: int):
    if not 1 <= order <= max_order(vocab_size):
      raise ConfigError(f"n-gram order {order} is not accepted for {vocab_size} symbols; "
                        f"accepted: 1..{max_order(vocab_size)} (keys must fit in int64)")
    ids = np.asarray(ids, np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
      raise ValueError(f"symbols range over [{ids.min()}, {ids.max()}], not [0, {vocab_size})")
    self.vocab_size, self.order = vocab_size, order
    self.counts, self.continuations = {}, {}
    for k in range(1, order + 1):
      keys, counts = np.unique(_codes(ids, k, vocab_size), return_counts=True)
      self.counts[k] = _Level(keys, counts, vocab_size)
    for k in range(1, order):  # N1+(. g): the distinct (k+1)-grams that end in g
      keys, counts = np.unique(self.counts[k + 1].keys % vocab_size ** k, return_counts=True)
      self.continuations[k] = _Level(keys, counts, vocab_size)

  def _check(self, order: int, discount: float) -> int:
    order = self.order if order is None else order
    if not 1 <= order <= self.order:
      raise ConfigError(f"n-gram order {order} is not accepted; accepted: 1..{self.order} "
                        "(the order fitted)")
    if not 0 < discount <= 1:
      raise ConfigError(f"n-gram discount {discount} is not accepted; accepted: (0, 1]")
    return order

  def _interpolate(self, grams: list[np.ndarray], available: np.ndarray, order: int,
                   discount: float) -> np.ndarray:
    """P(w | h) for queries whose k-gram keys (k = 1..order) are grams[k - 1] and whose
    contexts have `available` symbols (the order used is min(order, available + 1))."""
    p = np.full(grams[0].shape, 1.0 / self.vocab_size)
    for k in range(1, order + 1):
      level = self.counts[k] if k == order else self.continuations[k]
      count = level.count(grams[k - 1])
      total, types = level.context(grams[k - 1] // self.vocab_size)
      if k > 1:  # the level of a k-gram needs k - 1 symbols of context
        total = np.where(available >= k - 1, total, 0.0)
      higher = (np.maximum(count - discount, 0.0) + discount * types * p) / np.maximum(total, 1)
      p = np.where(total > 0, higher, p)
    return p

  def log_probs(self, ids: np.ndarray, discount: float, order: int | None = None) -> np.ndarray:
    """ln P(ids[t] | ids[max(0, t - order + 1):t]) for t = 1..len(ids) - 1 (the first symbol
    has no context and is not predicted)."""
    order = self._check(order, discount)
    ids = np.asarray(ids, np.int64)
    if ids.size < 2:
      return np.zeros(0)
    V, n = self.vocab_size, len(ids)
    # The k-gram ending at t, for t = 1..n-1, with zeros before the text (masked by `available`).
    padded = np.concatenate([np.zeros(order - 1, np.int64), ids])
    grams = [_codes(padded, k, V)[order - k + 1:][:n - 1] for k in range(1, order + 1)]
    available = np.arange(1, n)
    return np.log(self._interpolate(grams, available, order, discount))

  def bits_per_symbol(self, ids: np.ndarray, discount: float, order: int | None = None) -> float:
    """The mean -log2 P over the predicted symbols of `ids` (see `log_probs`)."""
    return float(-np.mean(self.log_probs(ids, discount, order)) / math.log(2))

  def distribution(self, context, discount: float, order: int | None = None) -> np.ndarray:
    """P(. | context) over the whole vocabulary [V] (the last order - 1 symbols of `context`
    are used)."""
    order = self._check(order, discount)
    V = self.vocab_size
    context = np.asarray(context, np.int64).ravel().tolist()
    words = np.arange(V, dtype=np.int64)
    grams = []
    for k in range(1, order + 1):  # (the last k - 1 symbols of the context, w)
      prefix = 0
      for c in (context[len(context) - (k - 1):] if k - 1 <= len(context) else []):
        prefix = prefix * V + c
      grams.append(prefix * V + words)
    return self._interpolate(grams, np.full(V, len(context)), order, discount)


def select(model: KneserNey, val_ids: np.ndarray, orders, discounts) -> dict:
  """The (order, discount) of the grid with the lowest bits per symbol on `val_ids`, and every
  value of the grid: {"order", "discount", "val_bits", "grid": {"order/discount": bits}}."""
  grid = {}
  for order in orders:
    for discount in discounts:
      grid[f"{order}/{discount:g}"] = model.bits_per_symbol(val_ids, discount, order)
  best = min(grid, key=grid.get)
  order, discount = best.split("/")
  return {"order": int(order), "discount": float(discount), "val_bits": grid[best],
          "grid": grid}
