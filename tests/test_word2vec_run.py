"""Word-embedding runs (chapter 3) as a user starts them: outputs, resume, bad configs, full run."""

import json
import sys

import numpy as np
import pytest

from dl_jax.text import evaluate
from dl_jax.text import corpus as corpus_lib
from dl_jax.text import word2vec as w2v

# A short but real run: the first 120k tokens of the corpus, one epoch, small steps.
SHORT = ("--config.max_tokens=120000", "--config.epochs=1", "--config.batch_size=256",
         "--config.steps_per_call=16", "--config.log_every_steps=64",
         "--config.checkpoint_every_steps=64")


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
  from tests.conftest import experiment_cmd, run  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp("skipgram")
  result = run(experiment_cmd("word2vec_skipgram", workdir, *SHORT))
  assert result.returncode == 0, result.stderr[-3000:]
  return workdir


def test_short_run_writes_results_metrics_and_vectors(short_run):
  results = json.loads((short_run / "results.json").read_text())
  assert results["model"] == "skipgram" and results["steps"] > 100
  analogy = results["analogy"]
  assert 0 <= analogy["accuracy"] <= 1 and analogy["covered"] > 0
  assert set(analogy["sections"]) and "semantic" in analogy
  assert -1 <= results["wordsim353"]["spearman"] <= 1 and results["wordsim353"]["coverage"] > 0
  assert results["neighbours"], results["neighbours"]
  records = [json.loads(line) for line in (short_run / "metrics.jsonl").read_text().splitlines()]
  losses = [r["loss"] for r in records if r["split"] == "train"]
  assert len(losses) >= 3 and all(np.isfinite(losses))
  assert losses[-1] < losses[0]  # it learns: the per-pair loss goes down from log(2) * 6
  for name in ("learning_curves.png", "projection.png"):
    assert (short_run / name).stat().st_size > 1000
  words, vectors = evaluate.load_word2vec_text(short_run / "vectors.txt")
  assert vectors.shape == (results["vocab_size"], 100) and np.all(np.isfinite(vectors))
  gensim = pytest.importorskip("gensim")
  kv = gensim.models.KeyedVectors.load_word2vec_format(str(short_run / "vectors.txt"),
                                                       binary=False)
  assert kv.index_to_key[:50] == list(words[:50])
  np.testing.assert_array_equal(kv.vectors, vectors)


@pytest.mark.parametrize("flag, message", [
    ("--config.model=glove", "unknown model 'glove'; accepted: skipgram, cbow, nplm"),
    ("--config.dim=-3", "dim=-3 must be a positive integer"),
    ("--config.batch_size=-2", "batch_size=-2 must be a positive integer or 0 (the engine's "
     "default: 32768 native, 1024 xla)"),
])
def test_bad_config_exits_2_with_one_message(flag, message, tmp_path, run_experiment):
  result = run_experiment("word2vec_skipgram", tmp_path / "run", flag)
  assert result.returncode == 2, result.stderr[-2000:]
  errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
  assert errors == [f"error: {message}"], result.stderr[-2000:]


def test_engine_is_pure_in_seed_and_step_whatever_the_call_boundaries():
  rng = np.random.default_rng(0)
  docs = [[f"w{int(i)}" for i in rng.zipf(1.3, 300) % 60] for _ in range(12)]
  corpus = corpus_lib.load_encoded((), 2, docs=docs)

  def train(stops, steps_per_call, seed=0):
    spec = w2v.StreamSpec("cbow", "negative_sampling", 3, 4, 64, steps_per_call)
    engine = w2v.Word2Vec(corpus, spec, dim=8, sample=1e-2, epochs=2, seed=seed,
                          learning_rate=0.05, min_learning_rate=1e-4)
    tables, step = engine.init(), 0
    for stop in [*stops, engine.total_steps]:
      tables, step = engine.run(*tables, step, stop)
    assert step == engine.total_steps
    return [np.asarray(t) for t in tables], engine.total_steps

  (e1, c1), total = train([], 8)
  (e2, c2), _ = train([3, 5, total - 1], 8)
  np.testing.assert_array_equal(e1, e2)
  np.testing.assert_array_equal(c1, c2)
  (e3, _), _ = train([], 8, seed=1)
  assert not np.array_equal(e1, e3)
  assert np.abs(c1).max() > 0  # C starts at 0: it was trained


@pytest.mark.slow
def test_full_skipgram_reaches_six_percent_on_analogies(tmp_path, run_experiment, full_training):
  if not full_training:
    pytest.skip("the full word2vec training runs with --full-training")
  result = run_experiment("word2vec_skipgram", tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  results = json.loads((tmp_path / "results.json").read_text())
  assert results["analogy"]["accuracy"] >= 0.06, results["analogy"]


def test_gensim_benchmark_runs_and_names_the_cpu_and_the_kernel_build():
  """bench/word2vec.py at its smallest: both models on both sides, the CPU and the build named."""
  from tests.conftest import ROOT, run  # pylint: disable=g-import-not-at-top
  result = run([sys.executable, str(ROOT / "bench" / "word2vec.py"), "--quick", "--max_tokens",
                "60000", "--batch_size", "2048"])
  assert result.returncode == 0, result.stderr[-3000:]
  out = result.stdout
  assert out.startswith("CPU: ") and "native word2vec kernel: " in out and "float lanes" in out
  for model in ("skipgram", "cbow"):
    for side in ("gensim", "dl_jax"):
      assert f"{model:8s} {side:6s}  seed 1  train" in out, out
    assert f"  {model:8s} time " in out.split("ratios dl_jax / gensim")[1], out
