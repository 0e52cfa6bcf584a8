"""Skip-gram and CBOW (sections 3.3.1-3.3.2): dl_jax against gensim 4.4.0 on the same corpus.

Both train in this process on the same documents (SOTU + Moby Dick + the wiki sample, 2.46M tokens,
as `dl_jax.data.text.load_corpus` cuts them) with the same settings: dim 100, window 5, 5 noise
words, min_count 5, sample 1e-3, 5 epochs, linear learning-rate decay to 0.0001; gensim runs with
workers=2. Both embeddings are scored by the same evaluator
(`dl_jax.text.evaluate.analogy_accuracy`, restrict 30k, accuracy over the covered questions).
Times are wall-clock seconds of training only (gensim: `train()`, after `build_vocab()`; dl_jax:
from the initial tables to the final ones, compilation included); vocabulary building and encoding
are listed separately as 'prep'. The models alternate (gensim, dl_jax, gensim, dl_jax), so load
from other processes falls on both.

dl_jax's breakdown: 'compile' (first call minus a steady one), 'host' (subsampling, padding and
uploading the epoch streams, timed again apart), the rest is the jitted S-step calls.

Usage: python bench/word2vec.py [--quick] [--models skipgram,cbow] [--epochs 5] [--cores 2]
  [--batch_size 0] [--steps_per_call 32] [--skipgram_lr 0.025] [--cbow_lr 0.05]
  [--noise_group 1 --noise_pool 0] [--row_scale none] [--engine auto] [--native_threads 0]
  [--no_gensim]
  --batch_size 0 and --native_threads 0: the experiment configs' defaults (32768 centers per step
  with the native engine, 1024 with xla; 2 threads).
  --quick: 1 epoch (about a minute); --max_tokens N: the first documents up to N tokens.
  --seeds 1,2,3: each model once per seed on both sides; the ratios compare the means.
Needs gensim: pip install -e .[bench]
"""

import argparse
import os
import sys
import time


if __name__ == "__main__":
  import _cores  # pylint: disable=g-import-not-at-top
  _cores.pin_cores_from_argv()

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax  # pylint: disable=g-import-not-at-top
import numpy as np  # pylint: disable=g-import-not-at-top

from dl_jax.data import text  # pylint: disable=g-import-not-at-top
from dl_jax.text import evaluate  # pylint: disable=g-import-not-at-top
from dl_jax.text import native  # pylint: disable=g-import-not-at-top
from dl_jax.text import corpus as corpus_lib  # pylint: disable=g-import-not-at-top
from dl_jax.text import word2vec as w2v  # pylint: disable=g-import-not-at-top


# Threads of the native engine per model, as in experiments/configs/word2vec_{skipgram,cbow}.py.
NATIVE_THREADS = {"skipgram": 2, "cbow": 2}


def _take_tokens(docs, max_tokens):
  kept, total = [], 0
  for d in docs:
    if max_tokens and total >= max_tokens:
      break
    kept.append(d)
    total += len(d)
  return kept


def run_gensim(docs, model, args, questions):
  from gensim.models import Word2Vec  # pylint: disable=g-import-not-at-top
  t0 = time.perf_counter()
  m = Word2Vec(vector_size=100, window=5, negative=5, min_count=5, sample=1e-3, workers=2,
               sg=int(model == "skipgram"), seed=args.seed, alpha=0.025, min_alpha=0.0001)
  m.build_vocab(docs)
  vocab_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  m.train(docs, total_examples=m.corpus_count, epochs=args.epochs)
  train_s = time.perf_counter() - t0
  acc = evaluate.analogy_accuracy(m.wv.vectors, m.wv.index_to_key, questions, 30000)
  return {"train_s": train_s, "prep_s": vocab_s, "vocab": len(m.wv.index_to_key),
          "accuracy": acc["accuracy"], "coverage": acc["coverage"],
          "semantic": acc["semantic"]["accuracy"], "syntactic": acc["syntactic"]["accuracy"]}


def run_dl_jax(docs, model, args, questions):
  t0 = time.perf_counter()
  corpus = corpus_lib.load_encoded((), 5, docs=docs)
  lr = args.skipgram_lr if model == "skipgram" else args.cbow_lr
  threads = args.native_threads or NATIVE_THREADS[model]
  spec = w2v.StreamSpec(model, "negative_sampling", 5, 5, args.batch_size, args.steps_per_call,
                        args.row_scale, args.noise_group, args.noise_pool, args.engine, threads)
  engine = w2v.Word2Vec(corpus, spec, dim=100, sample=1e-3, epochs=args.epochs, seed=args.seed,
                        learning_rate=lr, min_learning_rate=0.0001)
  E, C = engine.init()
  jax.block_until_ready((E, C))
  prep_s = time.perf_counter() - t0
  timing = {"calls": 0, "first_call_s": 0.0, "last": None}

  def on_call(step, arrays, losses, pairs):
    del step, losses, pairs
    jax.block_until_ready(arrays)
    now = time.perf_counter()
    if timing["calls"] == 0:
      timing["first_call_s"] = now - t_start
    timing["calls"] += 1
    return False

  t_start = time.perf_counter()
  (E, C), _ = engine.run(E, C, 0, engine.total_steps, on_call)
  E = np.asarray(jax.block_until_ready(E))
  train_s = time.perf_counter() - t_start
  steady = (train_s - timing["first_call_s"]) / max(timing["calls"] - 1, 1)
  t0 = time.perf_counter()
  for epoch in range(args.epochs):
    jax.block_until_ready([jax.numpy.asarray(a) for a in w2v.pad_stream(
        *corpus_lib.epoch_stream(corpus.ids, corpus.offsets, engine.keep, args.seed, epoch), spec)])
  host_s = time.perf_counter() - t0
  acc = evaluate.analogy_accuracy(E, corpus.vocab.words, questions, 30000)
  return {"train_s": train_s, "host_s": host_s, "prep_s": prep_s, "vocab": len(corpus.vocab),
          "accuracy": acc["accuracy"], "coverage": acc["coverage"],
          "semantic": acc["semantic"]["accuracy"], "syntactic": acc["syntactic"]["accuracy"],
          "compile_s": timing["first_call_s"] - steady, "centers": sum(engine.epoch_lengths),
          "steps": engine.total_steps, "engine": engine.engine, "batch": engine.spec.batch,
          "threads": threads}


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--models", default="skipgram,cbow")
  parser.add_argument("--epochs", type=int, default=None)
  parser.add_argument("--max_tokens", type=int, default=None)
  parser.add_argument("--cores", type=int, default=0, help="pin to the first N cores (0: all)")
  parser.add_argument("--batch_size", type=int, default=0,
                      help="centers per step (0: 32768 native, 1024 xla)")
  parser.add_argument("--steps_per_call", type=int, default=32)
  parser.add_argument("--row_scale", default="none", help="none | sqrt")
  parser.add_argument("--noise_group", type=int, default=1,
                      help="consecutive centers sharing noise words (1: word2vec's own k each)")
  parser.add_argument("--noise_pool", type=int, default=0,
                      help="noise words per group, weighted 5 / noise_pool (0: 5)")
  parser.add_argument("--skipgram_lr", type=float, default=0.025)
  parser.add_argument("--cbow_lr", type=float, default=0.05)
  parser.add_argument("--seeds", default="1",
                      help="comma-separated seeds; each model runs once per seed on both sides "
                      "and the ratios compare the means")
  parser.add_argument("--engine", default="auto",
                      help="auto | xla | native (word2vec's sequential SGD in C++ via XLA's FFI)")
  parser.add_argument("--native_threads", type=int, default=0,
                      help="native engine: 1 (sequential) or 2 (two halves of each step); "
                      "0: the config's (2)")
  parser.add_argument("--no_gensim", action="store_true")
  args = parser.parse_args()
  args.epochs = args.epochs or (1 if args.quick else 5)
  max_tokens = args.max_tokens or 0
  models = [m for m in args.models.split(",") if m]
  bad = [m for m in models if m not in ("skipgram", "cbow")]
  if bad:
    print(f"error: unknown model {bad[0]!r}; accepted: skipgram, cbow", file=sys.stderr)
    sys.exit(2)

  docs = _take_tokens(text.load_corpus(), max_tokens)
  questions = text.load_analogies()
  cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
  native_build = (native.build_description() if args.engine != "xla" and native.available()
                  else "not used")
  print(f"CPU: {native.cpu_model()}; native word2vec kernel: {native_build}")
  print(f"corpus: {len(docs)} documents, {sum(map(len, docs)):,} tokens; {args.epochs} epoch(s); "
        f"{cores} core(s); jax {jax.__version__} on {jax.devices()[0].device_kind}; "
        f"dl_jax batch {args.batch_size or 'default'} centers x {args.steps_per_call} steps per "
        "call, "
        f"noise group {args.noise_group} pool {args.noise_pool or 5}")
  seeds = [int(s) for s in args.seeds.split(",") if s]
  rows = []
  for model in models:
    g_runs, d_runs = [], []
    for seed in seeds:
      args.seed = seed
      g = None if args.no_gensim else run_gensim(docs, model, args, questions)
      d = run_dl_jax(docs, model, args, questions)
      for name, r in (("gensim", g), ("dl_jax", d)):
        if r is not None:
          _print_run(model, name, seed, r)
      g_runs += [g] if g else []
      d_runs.append(d)
    rows.append((model, _mean(g_runs) if g_runs else None, _mean(d_runs)))
  if len(seeds) > 1:
    print(f"means over seeds {args.seeds}:")
    for model, g, d in rows:
      for name, r in (("gensim", g), ("dl_jax", d)):
        if r is not None:
          print(f"  {model:8s} {name:6s}  train {r['train_s']:6.1f} s  analogy "
                f"{100 * r['accuracy']:5.2f} +- {100 * r['accuracy_std']:4.2f} %")
  if not args.no_gensim:
    print("ratios dl_jax / gensim" + (" (means)" if len(seeds) > 1 else "") + ":")
    for model, g, d in rows:
      print(f"  {model:8s} time {d['train_s'] / g['train_s']:.2f}x  analogy accuracy "
            f"{d['accuracy'] / max(g['accuracy'], 1e-9):.2f}x")


def _mean(runs: list[dict]) -> dict:
  return {"train_s": float(np.mean([r["train_s"] for r in runs])),
          "accuracy": float(np.mean([r["accuracy"] for r in runs])),
          "accuracy_std": float(np.std([r["accuracy"] for r in runs]))}


def _print_run(model: str, name: str, seed: int, r: dict) -> None:
  extra = (f"  ({r['engine']} engine, batch {r['batch']}, {r['threads']} thread(s), compile "
           f"{r['compile_s']:.1f} s, host {r['host_s']:.1f} s, "
           f"{r['centers'] / r['train_s'] / 1e3:.0f}k "
           f"centers/s, {r['steps']} steps)" if name == "dl_jax" else "")
  print(f"{model:8s} {name:6s}  seed {seed}  train {r['train_s']:6.1f} s  "
        f"prep {r['prep_s']:4.1f} s  vocab {r['vocab']:6d}  analogy {100 * r['accuracy']:5.2f} % (coverage "
        f"{100 * r['coverage']:4.1f} %, semantic {100 * r['semantic']:5.2f} %, syntactic "
        f"{100 * r['syntactic']:5.2f} %){extra}", flush=True)


if __name__ == "__main__":
  main()
