"""Archive fetching, safe unpickling, cache verification and the real MNISTs."""

import hashlib
import pickle
import tarfile
import zipfile

import numpy as np
import pytest

from dl_jax.data import cache, fetch
from dl_jax.data.images import mnist
from dl_jax.errors import ConfigError, DataError


def _synthetic(train_label: int = 0) -> dict[str, np.ndarray]:
  arrays = {k: np.zeros(shape, dtype) for k, (shape, dtype)
            in mnist.SPEC.items()}
  arrays["train_labels"][0] = train_label
  return arrays


def test_safe_unpickle_accepts_numpy_arrays():
  x = np.arange(12, dtype=np.float32).reshape(3, 4)
  y = np.array([1, 2, 3], np.int64)
  for protocol in (2, pickle.HIGHEST_PROTOCOL):
    out_x, out_y = fetch.safe_unpickle(pickle.dumps((x, y), protocol))
    np.testing.assert_array_equal(out_x, x)
    np.testing.assert_array_equal(out_y, y)
    assert out_x.dtype == x.dtype and out_y.dtype == y.dtype


def test_safe_unpickle_reads_numpy1_pickles():
  # Protocol 2 as numpy 1.x writes it: numpy.core.multiarray._reconstruct.
  data = pickle.dumps(np.arange(5, dtype=np.uint8), 2).replace(
      b"numpy._core.multiarray", b"numpy.core.multiarray")
  assert b"numpy.core.multiarray" in data
  np.testing.assert_array_equal(fetch.safe_unpickle(data), np.arange(5))


def test_safe_unpickle_rejects_other_globals():
  evil = b"cos\nsystem\n(S'echo pwned'\ntR."
  with pytest.raises(DataError, match=r"os\.system"):
    fetch.safe_unpickle(evil)
  with pytest.raises(DataError, match=r"builtins\.eval"):
    fetch.safe_unpickle(pickle.dumps(eval))


def test_sha256_mismatch_names_both_hashes(tmp_path):
  path = tmp_path / "small.bin"
  path.write_bytes(b"hello")
  actual = hashlib.sha256(b"hello").hexdigest()
  assert fetch.sha256_file(path) == actual
  expected = "0" * 64
  with pytest.raises(DataError) as info:
    fetch.check_sha256(path, expected)
  assert str(path) in str(info.value)
  assert actual in str(info.value) and expected in str(info.value)


def test_download_with_wrong_hash_is_rejected(tmp_path, monkeypatch):
  def fake_run(cmd, cwd):
    (cwd / "pkg-1.0-py3-none-any.whl").write_bytes(b"tampered")
    return fetch.subprocess.CompletedProcess(cmd, 0, "", "")

  monkeypatch.setattr(fetch, "_run", fake_run)
  expected = hashlib.sha256(b"original").hexdigest()
  with pytest.raises(DataError) as info:
    fetch.fetch_pypi_archive("pkg", "1.0", expected, tmp_path)
  message = str(info.value)
  assert "pkg-1.0-py3-none-any.whl" in message
  assert expected in message
  assert hashlib.sha256(b"tampered").hexdigest() in message
  assert not list((tmp_path / "archives").iterdir())


def test_cached_archive_is_reused_without_network(tmp_path, monkeypatch):
  archives = tmp_path / "archives"
  archives.mkdir()
  wheel = archives / "pkg-1.0-py3-none-any.whl"
  wheel.write_bytes(b"original")

  def no_network(cmd, cwd):
    raise AssertionError(f"unexpected command {cmd}")

  monkeypatch.setattr(fetch, "_run", no_network)
  sha = hashlib.sha256(b"original").hexdigest()
  assert fetch.fetch_pypi_archive("pkg", "1.0", sha, tmp_path) == wheel


def test_read_member_zip_and_tar(tmp_path):
  whl = tmp_path / "a-1.0-py3-none-any.whl"
  with zipfile.ZipFile(whl, "w") as zf:
    zf.writestr("a/data/x.bin", b"zip-bytes")
  assert fetch.read_member(whl, "a/data/x.bin") == b"zip-bytes"
  src = tmp_path / "x.bin"
  src.write_bytes(b"tar-bytes")
  tgz = tmp_path / "b-1.0.tgz"
  with tarfile.open(tgz, "w:gz") as tf:
    tf.add(src, arcname="./package/x.bin")
  assert fetch.read_member(tgz, "package/x.bin") == b"tar-bytes"
  assert fetch.read_member(tgz, "./package/x.bin") == b"tar-bytes"
  with pytest.raises(DataError, match="no member package/missing"):
    fetch.read_member(tgz, "package/missing")


def test_data_dir_override_and_unwritable(tmp_path, monkeypatch):
  monkeypatch.setenv(fetch.ENV_VAR, str(tmp_path / "from_env"))
  assert fetch.data_dir() == tmp_path / "from_env"
  assert fetch.data_dir("") == tmp_path / "from_env"
  assert fetch.data_dir(str(tmp_path / "flag")) == tmp_path / "flag"
  assert (tmp_path / "flag").is_dir()
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  with pytest.raises(DataError) as info:
    fetch.data_dir(str(blocker / "sub"))
  assert str(blocker / "sub") in str(info.value)
  assert "--config.data_dir" in str(info.value)
  assert fetch.ENV_VAR in str(info.value)


def test_unknown_dataset_lists_accepted_names(tmp_path):
  with pytest.raises(ConfigError) as info:
    mnist.load("cifar10", str(tmp_path))
  message = str(info.value)
  assert "cifar10" in message and "mnist" in message
  assert "fashion_mnist" in message


def test_parse_idx():
  images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
  buf = bytes([0, 0, 0x08, 3]) + np.array([2, 3, 4], ">u4").tobytes()
  np.testing.assert_array_equal(mnist.parse_idx(buf + images.tobytes()),
                                images)
  ints = np.array([-1, 7, 70000], np.int32)
  buf = bytes([0, 0, 0x0C, 1]) + np.array([3], ">u4").tobytes()
  out = mnist.parse_idx(buf + ints.astype(">i4").tobytes())
  np.testing.assert_array_equal(out, ints)
  assert out.dtype.isnative
  with pytest.raises(DataError, match="magic"):
    mnist.parse_idx(b"\x01\x00\x08\x01" + bytes(8))
  with pytest.raises(DataError, match="should have"):
    mnist.parse_idx(bytes([0, 0, 0x08, 1]) + np.array([5], ">u4").tobytes()
                    + bytes(4))


def test_cache_roundtrip_is_reproducible(tmp_path):
  path = tmp_path / "mnist.npz"
  arrays = _synthetic(train_label=3)
  cache.write(path, arrays)
  first = path.read_bytes()
  cache.write(path, arrays)
  assert path.read_bytes() == first
  loaded = mnist.load("mnist", str(tmp_path))
  assert loaded["train_labels"][0] == 3
  for key, (shape, dtype) in mnist.SPEC.items():
    assert loaded[key].shape == shape and loaded[key].dtype == dtype


def test_corrupted_cache_is_reported_and_left_untouched(tmp_path):
  path = tmp_path / "mnist.npz"
  cache.write(path, _synthetic())
  recorded = (tmp_path / "mnist.npz.sha256").read_text().split()[0]
  data = bytearray(path.read_bytes())
  data[len(data) // 2] ^= 0xFF
  path.write_bytes(bytes(data))
  with pytest.raises(DataError) as info:
    mnist.load("mnist", str(tmp_path))
  message = str(info.value)
  assert str(path) in message and "Delete it" in message
  assert recorded in message and fetch.sha256_file(path) in message
  assert path.read_bytes() == bytes(data)

  path.write_bytes(b"garbage")
  with pytest.raises(DataError, match="sha256"):
    mnist.load("mnist", str(tmp_path))
  assert path.read_bytes() == b"garbage"


def test_cache_with_bad_contents_is_reported(tmp_path):
  path = tmp_path / "fashion_mnist.npz"
  arrays = _synthetic()
  arrays["test_labels"] = arrays["test_labels"] + 10
  cache.write(path, arrays)
  with pytest.raises(DataError, match=r"test_labels range .* 10"):
    mnist.load("fashion_mnist", str(tmp_path))
  (tmp_path / "fashion_mnist.npz.sha256").unlink()
  with pytest.raises(DataError, match="missing"):
    mnist.load("fashion_mnist", str(tmp_path))
  assert path.exists()


def test_real_mnist_and_fashion():
  mnist_counts = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
  for name, first_train, first_test in (("mnist", 5, 7),
                                        ("fashion_mnist", 9, 9)):
    data = mnist.load(name)
    for key, (shape, dtype) in mnist.SPEC.items():
      assert data[key].shape == shape and data[key].dtype == dtype, key
    assert data["train_labels"][0] == first_train
    assert data["test_labels"][0] == first_test
    train_counts = np.bincount(data["train_labels"], minlength=10)
    test_counts = np.bincount(data["test_labels"], minlength=10)
    assert len(train_counts) == len(test_counts) == 10
    assert train_counts.min() > 5000 and test_counts.min() > 800
    if name == "mnist":
      assert train_counts.tolist() == mnist_counts
    else:
      assert (train_counts == 6000).all() and (test_counts == 1000).all()
    for key in ("train_images", "test_images"):
      assert data[key].min() == 0 and data[key].max() == 255
      assert 20 < data[key].mean() < 90
