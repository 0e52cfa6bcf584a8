"""The training engine in-process, on small procedural data: steps, no retracing, masking,
optimizer and config checks, workdir ownership and checkpoint round trips."""

import json

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from dl_jax.errors import CheckpointError, ConfigError, NonFiniteError
from dl_jax.models import registry
from dl_jax import optim as optimizers
from dl_jax.engine import checks, loop, task as engine_task, workdir as checkpoint, writers
from dl_jax.tasks import image_classification as state_lib


def blobs(n=256, seed=0):
  """Two-class images: class 1 is brighter in the top half."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 2, n).astype(np.int32)
  images = rng.normal(size=(n, 28, 28, 1)).astype(np.float32)
  images[:, :14] += 1.5 * labels[:, None, None, None]
  return {"image": images, "label": labels}


def new_state(name="mnist_mlp", lr=1e-3, opt="adam", seed=0):
  return state_lib.create_train_state(registry.build(name), optimizers.make_optimizer(opt, lr),
                                      jax.random.PRNGKey(seed), (28, 28, 1))


@pytest.mark.parametrize("name", ["mnist_mlp", "mnist_cnn"])
def test_train_step_learns_and_compiles_once(name):
  chex.clear_trace_counter()
  state = new_state(name)
  data = blobs()
  step = jax.jit(chex.assert_max_traces(state_lib.train_step, n=1))
  losses = []
  for i in range(30):
    batch = {k: v[(i % 4) * 64:(i % 4 + 1) * 64] for k, v in data.items()}
    state, m = step(state, batch)
    losses.append(float(m["loss"]))
  assert int(state.step) == 30
  assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])


def test_train_step_matches_manual_gradient_step():
  """With SGD, params' = params - lr * grad(mean cross-entropy), grad from jax.grad."""
  state = new_state(opt="sgd", lr=0.1)
  batch = {k: v[:32] for k, v in blobs().items()}
  new, metrics = jax.jit(state_lib.train_step)(state, batch)

  def loss(p):
    logits = state.apply_fn({"params": p}, batch["image"])
    return state_lib.cross_entropy(logits, batch["label"]).mean()

  grads = jax.grad(loss)(state.params)
  expected = jax.tree.map(lambda p, g: p - 0.1 * g, state.params, grads)
  chex.assert_trees_all_close(new.params, expected, atol=1e-6)
  np.testing.assert_allclose(metrics["grad_norm"], optax.tree.norm(grads), rtol=1e-5)


def test_eval_step_ignores_padding_rows():
  state = new_state()
  data = blobs(8)
  mask = np.array([1, 1, 1, 1, 1, 0, 0, 0], np.float32)
  garbage = data["image"].copy()
  garbage[5:] = 1e6
  a = state_lib.eval_step(state, {**data, "mask": mask})
  b = state_lib.eval_step(state, {"image": garbage, "label": data["label"], "mask": mask})
  chex.assert_trees_all_close(a, b)
  assert float(a["count"]) == 5


def test_optimizer_and_schedule_checks():
  with pytest.raises(ConfigError, match="unknown optimizer 'adamax'; accepted: sgd, momentum"):
    optimizers.make_optimizer("adamax", 1e-3)
  with pytest.raises(ConfigError, match=r"learning_rate=-0\.1 must be a positive number"):
    optimizers.make_optimizer("adam", -0.1)
  with pytest.raises(ConfigError, match="unknown lr_schedule 'step'"):
    optimizers.make_optimizer("adam", 1e-3, "step")
  for name in optimizers.OPTIMIZERS:  # every optimizer takes a step on the real state
    state = new_state(opt=name, lr=1e-2)
    new, _ = jax.jit(state_lib.train_step)(state, {k: v[:16] for k, v in blobs().items()})
    assert not jnp.allclose(new.params["Dense_0"]["kernel"], state.params["Dense_0"]["kernel"])


def test_workdir_ownership(tmp_path):
  config = {"experiment": "mnist_mlp", "learning_rate": 0.001, "max_steps": 0}
  run_dir = checkpoint.prepare_workdir(str(tmp_path / "run"), config)
  assert not list(run_dir.iterdir())  # checked, not yet marked: the run may still be refused
  (run_dir / (checkpoint.RUN_MARKER + ".tmp")).write_text("{")  # a marker cut off mid-write
  checkpoint.mark(run_dir, config)
  assert json.loads((run_dir / checkpoint.RUN_MARKER).read_text()) == config
  assert sorted(p.name for p in run_dir.iterdir()) == [checkpoint.RUN_MARKER]
  # The same run again, or with a resumable change, is accepted.
  checkpoint.prepare_workdir(str(run_dir), {**config, "max_steps": 10})
  with pytest.raises(CheckpointError, match="learning_rate=0.001, but this run has learning_rate=0.1"):
    checkpoint.prepare_workdir(str(run_dir), {**config, "learning_rate": 0.1})
  foreign = tmp_path / "thesis"
  foreign.mkdir()
  (foreign / "chapter1.tex").write_text("precious")
  with pytest.raises(CheckpointError, match="holds no dl_jax run.*chapter1.tex"):
    checkpoint.prepare_workdir(str(foreign), config)
  assert (foreign / "chapter1.tex").read_text() == "precious"
  assert sorted(p.name for p in foreign.iterdir()) == ["chapter1.tex"]
  blocker = tmp_path / "a_file"
  blocker.write_text("x")
  with pytest.raises(CheckpointError, match="is not writable"):
    checkpoint.prepare_workdir(str(blocker / "run"), config)


def test_checkpoint_round_trip_keeps_optax_types(tmp_path):
  state = new_state()
  state, _ = jax.jit(state_lib.train_step)(state, {k: v[:16] for k, v in blobs().items()})
  ckpt = checkpoint.Checkpointer(tmp_path, keep=2)
  ckpt.save(1, {"state": state})
  ckpt.wait()
  fresh = new_state(seed=1)
  restored = ckpt.restore(1, {"state": jax.eval_shape(lambda: fresh)})["state"]
  chex.assert_trees_all_equal(jax.tree.leaves(restored), jax.tree.leaves(state))
  assert type(restored.opt_state[0]) is type(state.opt_state[0])  # ScaleByAdamState, not a dict
  ckpt.close()


def test_corrupted_checkpoint_is_reported_and_kept(tmp_path):
  state = new_state()
  ckpt = checkpoint.Checkpointer(tmp_path, keep=2)
  ckpt.save(5, {"state": state})
  ckpt.wait()
  ckpt.close()
  files = sorted(p for p in (tmp_path / "checkpoints" / "5").rglob("*") if p.is_file())
  sizes = {}
  for f in files:  # truncate every data file
    if f.stat().st_size > 100:
      f.write_bytes(f.read_bytes()[:20])
    sizes[f] = f.stat().st_size
  ckpt = checkpoint.Checkpointer(tmp_path, keep=2)
  with pytest.raises(CheckpointError, match="checkpoints/5' cannot be restored.*left as is"):
    ckpt.restore(5, {"state": state})
  assert {f: f.stat().st_size for f in files} == sizes


def test_batch_norm_statistics_live_in_the_state():
  model = registry.build("mnist_mlp", batch_norm=True)
  state = state_lib.create_train_state(model, optimizers.make_optimizer("adam", 1e-3),
                                       jax.random.PRNGKey(0), (28, 28, 1))
  assert state.batch_stats  # running mean and variance per hidden layer
  batch = {k: v[:64] for k, v in blobs().items()}
  new, _ = jax.jit(state_lib.train_step)(state, batch)
  mean0 = state.batch_stats["BatchNorm_0"]["mean"]
  assert not jnp.allclose(new.batch_stats["BatchNorm_0"]["mean"], mean0)
  # Eval uses the running statistics: one example's logits do not depend on the rest of the batch.
  one = state_lib.eval_step(new, {**{k: v[:1] for k, v in batch.items()}, "mask": np.ones(1)})
  many = state_lib.eval_step(new, {**batch, "mask": np.eye(64)[0]})
  np.testing.assert_allclose(one["loss"], many["loss"], rtol=1e-5)


def test_weight_penalties_enter_the_gradient():
  state = new_state(opt="sgd", lr=1.0)
  batch = {k: v[:16] for k, v in blobs().items()}
  plain, _ = jax.jit(state_lib.train_step)(state, batch)
  decayed, _ = jax.jit(lambda s, b: state_lib.train_step(s, b, weight_l2=0.01))(state, batch)
  w = state.params["Dense_0"]["kernel"]
  # d/dw (0.01 sum w^2) = 0.02 w, so with lr 1 the kernels differ by exactly 0.02 w.
  np.testing.assert_allclose(plain.params["Dense_0"]["kernel"] - decayed.params["Dense_0"]["kernel"],
                             0.02 * w, atol=1e-6)
  np.testing.assert_array_equal(plain.params["Dense_0"]["bias"], decayed.params["Dense_0"]["bias"])


def test_metrics_log_cut_off_mid_line_resumes_without_the_partial_record(tmp_path):
  """A kill while a record was being appended leaves half a line: resuming drops it (and every
  record after the resume step), as if the run had never stopped."""
  records = [{"step": s, "split": "train", "loss": 1.0 / s} for s in (10, 20, 30)]
  path = tmp_path / "metrics.jsonl"
  path.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"step": 40, "spl')
  assert writers.read_metrics(path) == records
  writers.MetricWriter(tmp_path, resume_step=20).close()
  assert writers.read_metrics(path) == records[:2]
  path.write_text('{"step": 1, "spl\n' + json.dumps(records[0]) + "\n")  # not the last line
  with pytest.raises(ValueError):
    writers.read_metrics(path)


class GrowingTask(engine_task.Task):
  """A task whose parameters grow by `factor` a step while its loss and gradient norm stay
  finite: with 1e30 the second update overflows float32. Its state also holds a +inf kept on
  purpose (a best loss not yet set), as the N-body and node tasks do."""

  def plan(self):
    return engine_task.Plan(total_steps=4, steps_per_epoch=4, unit="examples", units_per_step=1)

  def init(self, key):
    return {"w": jnp.ones(3), "best_loss": jnp.float32(jnp.inf)}

  def advance(self, state, step, stop):
    finite = {"loss": jnp.float32(1.0), "grad_norm": jnp.float32(1.0)}
    return {**state, "w": state["w"] * self.config.factor}, step + 1, {"train": finite}

  def finish(self, state, step, out_dir):
    return {}, {}, "done"


@pytest.mark.parametrize("factor", [1e30, 10.0])
def test_a_state_that_overflows_is_never_saved(factor, tmp_path, monkeypatch):
  """The loss and gradient norm were finite, the update that followed overflowed: the run stops
  before saving it and names the last good checkpoint (factor 10: the negative control, whose
  +inf placeholder does not stop it)."""
  monkeypatch.setitem(loop.TASKS, "growing", f"{__name__}:GrowingTask")
  monkeypatch.setitem(loop.CHECKS, "task", checks.one_of(*loop.TASKS))
  config = ml_collections.ConfigDict({
      "experiment": "growing", "task": "growing", "seed": 0, "data_dir": "", "max_steps": 0,
      "log_every_steps": 1, "checkpoint_every_steps": 1, "keep_checkpoints": 10,
      "factor": factor})
  if factor == 10.0:  # every state is saved, the one holding the +inf placeholder included
    assert loop.run(config, str(tmp_path))["steps"] == 4
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["1", "2", "3", "4"]
    return
  with pytest.raises(NonFiniteError, match=r"non-finite parameters or optimizer state after step "
                     r"2 .*the last good checkpoint \(step 1\)"):
    loop.run(config, str(tmp_path))
  assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["1"]
