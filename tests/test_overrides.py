"""experiments/overrides.py: argv splitting, config files, typed overrides and their messages."""

import math
import subprocess
import sys

import ml_collections
import pytest
from ml_collections import config_dict

from dl_jax.errors import ConfigError
from experiments import overrides as ov
from experiments.configs import gnn_wordnet
from tests.conftest import ROOT

CONFIG_NAMES = ("ae_conv, ae_denoising, ae_mlp, ae_sparse, charlm_moby_gru, charlm_moby_lstm, "
                "dcgan_fashion, dcgan_mnist, denoise_ecg, denoise_fashion, "
                "denoise_mnist, fashion_alexnet, fashion_googlenet, "
                "fashion_lenet5, fashion_resnet, fashion_vgg, fashion_wrn, gated_pixelcnn_mnist, "
                "gnn_karate, gnn_mutag, gnn_wordnet, "
                "gnn_wordnet_full, localize_mnist, mnist1d_cnn, mnist1d_cnn_shuffled, "
                "mnist1d_logreg, "
                "mnist1d_mlp, mnist1d_mlp_shuffled, mnist_cnn, mnist_mlp, nbody_egnn, nbody_gnn, "
                "nbody_linear, nplm, oneshot_kanji, pixelcnn_mnist, seq_mnist_permuted_gru, "
                "seq_mnist_permuted_lstm, seq_mnist_pixels_gru, seq_mnist_pixels_lstm, "
                "seq_mnist_rows_gru, seq_mnist_rows_lstm, siamese_mnist, style_transfer, "
                "triplet_mnist, unet_mnist, "
                "unet_mnist_noskip, vae_conv, vae_mlp, vae_mlp_2d, vae_mlp_burda, "
                "word2vec_cbow, word2vec_skipgram, yolo_mnist")
ACCEPTED_HERE = ("accepted: a python file defining get_config() such as "
                 f"experiments/configs/<name>.py, <name> one of {CONFIG_NAMES}")


@pytest.fixture(autouse=True)
def _in_root(monkeypatch):
  monkeypatch.chdir(ROOT)  # the messages show experiments/configs relative to the working dir


def error(fn, *args, **kwargs) -> str:
  with pytest.raises(ConfigError) as info:
    fn(*args, **kwargs)
  message = str(info.value)
  assert "\n" not in message
  return message


def small() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.task = "t"
  config.model = "m"
  config.num_epochs = 10
  config.learning_rate = 1e-3
  config.enabled = False
  config.name = "adam"
  config.nothing = None
  config.typed = config_dict.placeholder(int)
  config.fanouts = (25, 10)
  config.widths = [1.5, 2.5]
  config.corpus = ("sotu", "wiki")
  config.empty = ()
  config.mixed = (1, "a")
  config.shapes = ((3, 3), (5, 5))
  config.model_kwargs = ml_collections.ConfigDict()
  config.sampling = ml_collections.ConfigDict({"batch_size": 512, "fanouts": (25, 10)})
  return config


def applied(key, text, config=None):
  return ov.apply_overrides(config or small(), [(key, text)])[key]


# ----------------------------------------------------------------------------------- split_argv

def test_split_argv_forms_keep_order():
  argv = ["main.py", "--config=experiments/configs/gnn_wordnet.py", "--workdir=runs/x",
          "--config.seeds=5", "--config.sampling.fanouts", "25,10", "--show-config",
          "--config.sampling.enabled", "--config.learning_rate", "-1e-3", "--config.a", "-inf",
          "--noconfig.b", "--multihost", "--config.c"]
  path, overrides, rest = ov.split_argv(argv)
  assert path == "experiments/configs/gnn_wordnet.py"
  assert overrides == [("seeds", "5"), ("sampling.fanouts", "25,10"), ("sampling.enabled", None),
                       ("learning_rate", "-1e-3"), ("a", "-inf"), ("b", "false"), ("c", None)]
  assert rest == ["main.py", "--workdir=runs/x", "--show-config", "--multihost"]


def test_split_argv_config_path_separate_and_absent():
  assert ov.split_argv(["--config", "a.py", "--config.x", "1"]) == ("a.py", [("x", "1")], [])
  assert ov.split_argv(["--workdir", "w", "--configs=1"]) == (None, [], ["--workdir", "w",
                                                                        "--configs=1"])


def test_split_argv_values_with_equals_and_empty():
  assert ov.split_argv(["--config.name=a=b", "--config.data_dir="])[1] == [("name", "a=b"),
                                                                          ("data_dir", "")]


def test_split_argv_double_dash_ends_parsing():
  assert ov.split_argv(["--config.x=1", "--", "--config.y=2"]) == (None, [("x", "1")],
                                                                   ["--", "--config.y=2"])
  assert ov.split_argv(["--config.x", "--"]) == (None, [("x", None)], ["--"])


@pytest.mark.parametrize("argv, message", [
    (["--config"], "--config takes a config file path, e.g. "
                   "--config=experiments/configs/mnist_cnn.py"),
    (["--config", "--workdir=w"], "--config takes a config file path, e.g. "
                                  "--config=experiments/configs/mnist_cnn.py"),
    (["--config="], "--config= is empty; it takes a config file path, e.g. "
                    "--config=experiments/configs/mnist_cnn.py"),
    (["--config=a.py", "--config", "b.py"], "--config given twice ('a.py' and 'b.py'); give one"),
    (["--config.=3"], "flag '--config.=3' names no config key; flags look like "
                      "--config.<key>=<value>"),
    (["--noconfig.x=1"], "flag '--noconfig.x=1' takes no value; use --config.x=1"),
])
def test_split_argv_errors(argv, message):
  assert error(ov.split_argv, argv) == message


# ------------------------------------------------------------------------------ load_config_file

def test_load_real_configs():
  config = ov.load_config_file("experiments/configs/mnist_cnn.py")
  assert isinstance(config, ml_collections.ConfigDict)
  assert (config.experiment, config.model, config.task) == ("mnist_cnn", "mnist_cnn",
                                                             "image_classification")
  karate = ov.load_config_file(ROOT / "experiments/configs/gnn_karate.py")  # imports gnn_wordnet
  assert (karate.experiment, karate.model_kwargs.hidden) == ("gnn_karate", 16)
  assert ov.load_config_file("experiments/configs/gnn_wordnet.py") == gnn_wordnet.get_config()


@pytest.mark.parametrize("name", CONFIG_NAMES.split(", "))
def test_every_listed_config_loads(name):
  assert ov.load_config_file(f"experiments/configs/{name}.py").experiment == name


@pytest.mark.parametrize("path, message", [
    ("experiments/configs/mnist_cn.py", "config file 'experiments/configs/mnist_cn.py' not found; "
     f"did you mean 'experiments/configs/mnist_cnn.py'? {ACCEPTED_HERE}"),
    ("mnist_cnn", f"config file 'mnist_cnn' not found; did you mean "
     f"'experiments/configs/mnist_cnn.py'? {ACCEPTED_HERE}"),
    ("experiments/configs/zzz.py", f"config file 'experiments/configs/zzz.py' not found; "
     f"{ACCEPTED_HERE}"),
    ("experiments/configs/base.py", "config file 'experiments/configs/base.py' defines no "
     f"get_config(); {ACCEPTED_HERE}"),
    ("experiments/configs", f"config file 'experiments/configs' is not a file; {ACCEPTED_HERE}"),
    ("/nonexistent/x.py", "config file '/nonexistent/x.py' not found; accepted: a python file "
     "defining get_config()"),
])
def test_load_bad_paths(path, message):
  assert error(ov.load_config_file, path) == message


@pytest.mark.parametrize("name, source, message", [
    ("c.txt", "def get_config(): pass\n", "is not a python file; accepted: a python file "
     "defining get_config()"),
    ("c.py", "def get_config(:\n", "line 1: "),
    ("c.py", "get_config = 3\n", "defines no get_config(); accepted: a python file defining "
     "get_config()"),
    ("c.py", "def get_config():\n  return {'a': 1}\n", "returned a dict; accepted: an "
     "ml_collections.ConfigDict"),
    ("c.py", "import no_such_module_xyz\n", "failed to import: No module named "
     "'no_such_module_xyz'"),
])
def test_load_bad_files(tmp_path, name, source, message):
  path = tmp_path / name
  path.write_text(source)
  assert message in error(ov.load_config_file, str(path))


def test_load_file_outside_the_repository(tmp_path):
  path = tmp_path / "mine.py"
  path.write_text("import ml_collections\n\ndef get_config():\n"
                  "  return ml_collections.ConfigDict({'seed': 3})\n")
  assert ov.load_config_file(path).seed == 3


def test_config_errors_propagate_other_exceptions(tmp_path):
  path = tmp_path / "c.py"
  path.write_text("def get_config():\n  raise RuntimeError('bug')\n")
  with pytest.raises(RuntimeError):
    ov.load_config_file(path)


# ---------------------------------------------------------------------------- values, by type

@pytest.mark.parametrize("text, value", [("3", 3), ("1_000", 1000), ("-2", -2), (" 7 ", 7)])
def test_int(text, value):
  result = applied("num_epochs", text)
  assert result == value and type(result) is int


@pytest.mark.parametrize("text", ["3.5", "abc", "1e3", "", "true"])
def test_int_rejects(text):
  assert error(applied, "num_epochs", text) == (f"config key 'num_epochs' takes an int; "
                                                f"got {text!r}")


def test_int_message_on_a_real_config():
  config = ov.load_config_file("experiments/configs/mnist_cnn.py")
  assert error(ov.apply_overrides, config, [("batch_size", "12.5")]) == (
      "config key 'batch_size' takes an int; got '12.5'")


@pytest.mark.parametrize("text, value", [("3", 3.0), ("1e-4", 1e-4), ("0.5", 0.5),
                                         ("inf", math.inf), ("-inf", -math.inf)])
def test_float(text, value):
  result = applied("learning_rate", text)
  assert result == value and type(result) is float


def test_float_nan_and_rejects():
  assert math.isnan(applied("learning_rate", "nan"))
  assert error(applied, "learning_rate", "fast") == ("config key 'learning_rate' takes a float; "
                                                     "got 'fast'")


@pytest.mark.parametrize("text, value", [("true", True), ("False", False), ("1", True),
                                         ("0", False), ("YES", True), ("no", False),
                                         (None, True)])
def test_bool(text, value):
  assert applied("enabled", text) is value


def test_bool_rejects():
  assert error(applied, "enabled", "maybe") == ("config key 'enabled' takes a bool (true/false, "
                                                "yes/no, 1/0); got 'maybe'")


def test_no_value_for_a_non_bool():
  assert error(applied, "num_epochs", None) == ("config key 'num_epochs' takes an int; got no "
                                                "value (use --config.num_epochs=VALUE)")


@pytest.mark.parametrize("text", ["sgd", "", "3", "(1, 2)"])
def test_str_is_taken_as_is(text):
  assert applied("name", text) == text


@pytest.mark.parametrize("text, value", [("3", 3), ("0.5", 0.5), ("(1, 2)", (1, 2)),
                                         ("None", None), ("adam", "adam"), ("[1, 'a']", [1, "a"]),
                                         ("a b", "a b")])
def test_none_valued_takes_a_literal_or_the_text(text, value):
  assert applied("nothing", text) == value


def test_placeholder_parses_by_its_declared_type():
  assert applied("typed", "3") == 3
  assert error(applied, "typed", "x") == "config key 'typed' takes an int; got 'x'"


@pytest.mark.parametrize("text, value", [("25,10", (25, 10)), ("25, 10, 5", (25, 10, 5)),
                                         ("(25, 10)", (25, 10)), ("[25,10]", (25, 10)),
                                         ("7", (7,)), ("7,", (7,)), ("(7,)", (7,)), ("", ()),
                                         ("()", ())])
def test_tuple_of_ints(text, value):
  result = applied("fanouts", text)
  assert result == value and type(result) is tuple


@pytest.mark.parametrize("text", ["25,x", "25,1.5", "(25, 1.5)", "(25", "{1: 2}", "(True,)"])
def test_tuple_of_ints_rejects(text):
  assert error(applied, "fanouts", text) == (f"config key 'fanouts' takes a tuple of ints; "
                                             f"got {text!r}")


def test_sequences_keep_their_element_and_container_types():
  widths = applied("widths", "1,2.5")
  assert widths == [1.0, 2.5] and type(widths) is list and type(widths[0]) is float
  assert applied("widths", "(3, 4)") == [3.0, 4.0]
  assert applied("corpus", "sotu, moby_dick") == ("sotu", "moby_dick")
  assert applied("corpus", "('a,b', 'c')") == ("a,b", "c")
  assert applied("shapes", "((1, 1), (2, 2))") == ((1, 1), (2, 2))
  assert error(applied, "shapes", "1,2") == "config key 'shapes' takes a tuple of tuples; got '1,2'"
  assert error(applied, "widths", "a") == "config key 'widths' takes a list of floats; got 'a'"


def test_empty_or_mixed_tuples_take_literals():
  assert applied("empty", "25,10") == (25, 10)
  assert applied("empty", "(1, 'a')") == (1, "a")
  assert applied("empty", "a,b") == ("a", "b")
  assert applied("empty", "3") == (3,)
  assert applied("mixed", "2,b") == (2, "b")
  assert error(applied, "empty", "(1") == "config key 'empty' takes a tuple; got '(1'"


def test_nested_keys_on_a_real_config():
  config = ov.load_config_file("experiments/configs/gnn_wordnet.py")
  out = ov.apply_overrides(config, [("sampling.fanouts", "15,5,5"), ("sampling.batch_size", "64"),
                                    ("sampling.enabled", None), ("model_kwargs.dropout", "0")])
  assert out.sampling.fanouts == (15, 5, 5)
  assert (out.sampling.batch_size, out.sampling.enabled) == (64, True)
  assert out.model_kwargs.dropout == 0.0 and type(out.model_kwargs.dropout) is float
  assert config.sampling.fanouts == (25, 10)  # the argument is left as it was


def test_locked_type_safe_config_accepts_parsed_values():
  config = ov.load_config_file("experiments/configs/word2vec_skipgram.py")
  config.lock()
  out = ov.apply_overrides(config, [("corpus", "wiki"), ("learning_rate", "1"), ("epochs", "2"),
                                    ("sample", "0")])
  assert out.is_locked and out.is_type_safe
  assert (out.corpus, out.learning_rate, out.epochs, out.sample) == (("wiki",), 1.0, 2, 0.0)
  assert type(out.learning_rate) is float


def test_later_overrides_win_and_references_follow():
  config = small()
  config.eval_epochs = config.get_ref("num_epochs")
  out = ov.apply_overrides(config, [("num_epochs", "1"), ("num_epochs", "4")])
  assert (out.num_epochs, out.eval_epochs) == (4, 4)


# --------------------------------------------------------------------------- first and on_first

def test_first_keys_then_hook_then_the_rest():
  seen = []

  def on_first(config):
    seen.append((config.task, config.model, config.num_epochs))
    with config.unlocked():
      config.model_kwargs.hidden = (256, 256) if config.model == "mlp" else (16,)
      config.model_kwargs.dropout = 0.0

  config = small()
  config.lock()
  out = ov.apply_overrides(config, [("num_epochs", "3"), ("model_kwargs.hidden", "64,64"),
                                    ("model", "mlp"), ("task", "t2"),
                                    ("model_kwargs.dropout", "0.5")], on_first=on_first)
  assert seen == [("t2", "mlp", 10)]
  assert out.model_kwargs.hidden == (64, 64) and out.model_kwargs.dropout == 0.5
  assert out.num_epochs == 3


def test_first_keys_keep_their_order_and_custom_first():
  out = ov.apply_overrides(small(), [("model", "a"), ("model", "b")])
  assert out.model == "b"
  order = []
  ov.apply_overrides(small(), [("name", "x"), ("num_epochs", "2")], first=("num_epochs",),
                     on_first=lambda c: order.append((c.name, c.num_epochs)))
  assert order == [("adam", 2)]


def test_hook_may_return_a_replacement():
  replacement = small()
  replacement.model_kwargs.width = 8
  out = ov.apply_overrides(small(), [("model_kwargs.width", "9")], on_first=lambda c: replacement)
  assert out.model_kwargs.width == 9


def test_without_the_hook_model_kwargs_keys_are_unknown():
  config = ov.load_config_file("experiments/configs/mnist_cnn.py")
  assert error(ov.apply_overrides, config, [("model_kwargs.hidden", "64,64")]) == (
      "unknown config key 'model_kwargs.hidden'; 'model_kwargs' has no keys yet")


# ------------------------------------------------------------------------------------- messages

@pytest.fixture
def wordnet():
  return ov.load_config_file("experiments/configs/gnn_wordnet.py")


@pytest.mark.parametrize("key, message", [
    ("num_epoch", "unknown config key 'num_epoch'; did you mean 'num_epochs'?"),
    ("Num_Epochs", "unknown config key 'Num_Epochs'; did you mean 'num_epochs'?"),
    ("sampling.fanout", "unknown config key 'sampling.fanout'; did you mean 'sampling.fanouts'?"),
    ("samplin.fanouts", "unknown config key 'samplin.fanouts'; did you mean 'sampling.fanouts'?"),
    ("fanouts", "unknown config key 'fanouts'; did you mean 'sampling.fanouts'?"),
    ("hidden", "unknown config key 'hidden'; did you mean 'model_kwargs.hidden'?"),
    ("sampling.zzz", "unknown config key 'sampling.zzz'; accepted keys: sampling.batch_size, "
     "sampling.enabled, sampling.eval, sampling.eval_batch_size, sampling.eval_subset, "
     "sampling.fanouts"),
    ("seeds.x", "unknown config key 'seeds.x'; 'seeds' is a value, not a group of keys"),
    ("sampling", "config key 'sampling' is a group of keys, not a value; set one of: "
     "sampling.batch_size, sampling.enabled, sampling.eval, sampling.eval_batch_size, "
     "sampling.eval_subset, sampling.fanouts"),
    ("sampling.fanouts", "config key 'sampling.fanouts' takes a tuple of ints; got 'wide'"),
])
def test_messages(wordnet, key, message):
  assert error(ov.apply_overrides, wordnet, [(key, "wide")]) == message


def test_unknown_key_without_a_close_match_lists_the_top_level_keys(wordnet):
  assert error(ov.apply_overrides, wordnet, [("zzz", "1")]) == (
      "unknown config key 'zzz'; accepted keys: " + ", ".join(wordnet.keys()))
  assert "checkpoint_every_steps, data_dir, dataset," in ", ".join(wordnet.keys())


def test_empty_group_message():
  assert error(applied, "model_kwargs", "3") == ("config key 'model_kwargs' is a group of keys, "
                                                 "not a value; it has no keys yet")


def test_the_first_bad_override_is_reported(wordnet):
  assert error(ov.apply_overrides, wordnet, [("seeds", "2"), ("seeds", "x"), ("zzz", "1")]) == (
      "config key 'seeds' takes an int; got 'x'")


def test_did_you_mean():
  assert ov.did_you_mean("gcnn", ["gcn", "gat", "mlp"]) == "did you mean 'gcn'?"
  assert ov.did_you_mean("SAGE_MEAN", ["sage_mean", "sage_lstm"]) == "did you mean 'sage_mean'?"
  assert ov.did_you_mean("transformer", ["gcn", "gat"]) == ""
  assert ov.did_you_mean("x", []) == ""


# --------------------------------------------------------------------------------- config_lines

def test_config_lines_small():
  config = ml_collections.ConfigDict({"b": 1, "a": "x", "g": {"t": (1, 2), "f": 0.5},
                                      "e": {}, "n": None})
  assert ov.config_lines(config) == ["a = 'x'", "b = 1", "e = {}", "g.f = 0.5", "g.t = (1, 2)",
                                     "n = None"]


def test_config_lines_real_configs(wordnet):
  lines = ov.config_lines(wordnet)
  assert "sampling.fanouts = (25, 10)" in lines and "data_dir = ''" in lines
  assert "model_kwargs.hidden = 64" in lines and "learning_rate = 0.01" in lines
  keys = [line.split(" = ")[0] for line in lines]
  assert keys == sorted(keys) and len(keys) == len(set(keys))
  assert "model_kwargs = {}" in ov.config_lines(ov.load_config_file("experiments/configs/"
                                                                     "mnist_cnn.py"))


def test_every_listed_key_can_be_set_back(wordnet):
  """Each line's key is accepted, and its value read back through its own type is the same."""
  for line in ov.config_lines(wordnet):
    key = line.partition(" = ")[0]
    value = wordnet
    for part in key.split("."):
      value = value[part]
    if isinstance(value, tuple):
      text = ",".join(map(str, value))
    else:
      text = str(value)
    out = ov.apply_overrides(wordnet, [(key, text)])
    assert ov.config_lines(out) == ov.config_lines(wordnet), key


def test_import_needs_no_jax():
  code = ("import sys, experiments.overrides; "
          "assert not [m for m in sys.modules if m.split('.')[0] in ('jax', 'flax')]")
  subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
