"""dl_jax.data.images.kanji: kanjidraw's strokes fetched, rendered as drawings and cached."""

import shutil

import numpy as np
import pytest

from dl_jax.data import cache, fetch
from dl_jax.data.images import kanji
from dl_jax.errors import ConfigError, DataError

SMALL = {"num_classes": 50, "drawings": 4, "size": 28, "seed": 0}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  """A fresh data directory holding only the .deb (fetched once into the default data dir)."""
  archive = fetch.fetch_debian_archive("python3-kanjidraw", kanji.KANJIDRAW_DEB_VERSION,
                                       kanji.KANJIDRAW_DEB_SHA256, fetch.data_dir())
  root = tmp_path_factory.mktemp("kanji")
  (root / fetch.ARCHIVES_SUBDIR).mkdir()
  shutil.copy(archive, root / fetch.ARCHIVES_SUBDIR)
  return root


@pytest.fixture(scope="module")
def strokes(data_dir):
  return kanji.load_strokes(str(data_dir))


@pytest.fixture(scope="module")
def small(data_dir):
  return kanji.load(str(data_dir), **SMALL)


def _keys(seed, characters, drawings):
  return np.array([[seed, c, d] for c in characters for d in drawings], np.int64)


def _render(strokes, keys, **kwargs):
  return kanji.render([strokes[int(k[1])] for k in keys], keys, **kwargs)


def _correlations(images):
  x = images.reshape(len(images), -1).astype(np.float64)
  x -= x.mean(1, keepdims=True)
  x /= np.linalg.norm(x, axis=1, keepdims=True)
  return x @ x.T


def test_strokes_are_segments_on_a_256_grid(strokes):
  assert len(strokes) == kanji.NUM_CHARACTERS
  assert min(strokes) >= 0x4E00 and max(strokes) <= 0x9FFF
  counts = np.array([len(s) for s in strokes.values()])
  assert counts.min() == 1 and counts.max() == kanji.MAX_STROKES
  coordinates = np.concatenate(list(strokes.values()))
  assert coordinates.shape[1] == 4 and coordinates.min() >= 0 and coordinates.max() <= 255
  (x0, y0, x1, y1), = strokes[ord("一")]  # one stroke, left to right
  assert x1 - x0 > 150 and abs(y1 - y0) < 20
  assert len(strokes[ord("三")]) == 3


def test_malformed_strokes_are_reported():
  with pytest.raises(DataError, match="not JSON"):
    kanji.parse_strokes(b"{", "x.json")
  with pytest.raises(DataError, match=r"'一' under '2'"):
    kanji.parse_strokes('{"2": {"一": [[1, 2, 3, 4]]}}'.encode(), "x.json")
  with pytest.raises(DataError, match="holds 1 characters"):
    kanji.parse_strokes('{"1": {"一": [[1, 2, 3, 4]]}}'.encode(), "x.json")


def test_layout_ink_and_centring(small, data_dir, strokes):
  n = SMALL["num_classes"] * SMALL["drawings"]
  images, labels, characters = small["images"], small["labels"], small["characters"]
  assert sorted(small) == ["characters", "images", "labels"]
  assert images.shape == (n, 28, 28) and images.dtype == np.uint8
  assert labels.dtype == np.int32 and characters.dtype == np.int32
  np.testing.assert_array_equal(labels, np.repeat(np.arange(50), 4))
  assert characters.shape == (50,) and (np.diff(characters) > 0).all()
  assert set(characters.tolist()) <= set(strokes)
  path = data_dir / f"kanji_28px_4x50_s0_{kanji.render_tag()}.npz"
  assert cache.sidecar(path).read_text().split()[0] == fetch.sha256_file(path)

  assert (images.reshape(n, -1).max(1) > 200).all()
  assert images.min() == 0 and 10 < images.mean() < 100
  border = np.ones((28, 28), bool)
  border[2:-2, 2:-2] = False
  ink = images.astype(np.float64)
  border_share = ink[:, border].sum(1) / ink.reshape(n, -1).sum(1)
  assert border_share.mean() < 0.03 and border_share.max() < 0.3
  rows, cols = (images > 64).any(2), (images > 64).any(1)
  for mask in (rows, cols):
    first, last = mask.argmax(1), 27 - mask[:, ::-1].argmax(1)
    centre = (first + last + 1) / 2
    assert np.abs(centre - 14).max() <= 4 and np.abs(centre - 14).mean() < 1.5
    assert 16 <= (last - first + 1).mean() <= 27


def test_reload_and_rendering_are_deterministic(small, data_dir, strokes):
  path = data_dir / f"kanji_28px_4x50_s0_{kanji.render_tag()}.npz"
  before = path.read_bytes()
  again = kanji.load(str(data_dir), **SMALL)
  assert path.read_bytes() == before
  for key in small:
    np.testing.assert_array_equal(again[key], small[key])
  # A drawing depends on (seed, character, drawing) only: alone or in another batch, the same.
  characters = small["characters"]
  keys = _keys(0, characters[[7, 3]], [2, 0])
  alone = np.concatenate([_render(strokes, k[None]) for k in keys])
  np.testing.assert_array_equal(alone, _render(strokes, keys))
  np.testing.assert_array_equal(alone[:2], small["images"][[7 * 4 + 2, 7 * 4]])
  np.testing.assert_array_equal(alone[2:], small["images"][[3 * 4 + 2, 3 * 4]])
  other_seed = _render(strokes, _keys(1, characters[[7]], [2]))
  assert not np.array_equal(other_seed[0], alone[0])


def test_drawings_of_a_class_differ_but_resemble_each_other(small):
  drawings = SMALL["drawings"]
  images = small["images"].reshape(-1, drawings, 28 * 28)
  assert all(len({d.tobytes() for d in c}) == drawings for c in images)
  corr = _correlations(small["images"])
  same = small["labels"][:, None] == small["labels"][None, :]
  off_diagonal = ~np.eye(len(corr), dtype=bool)
  within, between = corr[same & off_diagonal].mean(), corr[~same].mean()
  assert within > between + 0.04, (within, between)
  own = np.array([corr[k, same[k] & off_diagonal[k]].mean() for k in range(len(corr))])
  others = np.array([corr[k, ~same[k]].mean() for k in range(len(corr))])
  assert (own > others).mean() > 0.7
  # The most correlated other drawing is of the same class ten times more often than chance
  # (3 in 199): pixels alone recognize a character poorly, as they do on Omniglot.
  nearest = np.where(off_diagonal, corr, -np.inf).argmax(1)
  assert (small["labels"][nearest] == small["labels"]).mean() > 0.15


def test_distortions_are_the_only_source_of_variation(small, strokes):
  keys = _keys(0, small["characters"][:10], range(3))
  plain = _render(strokes, keys, affine=False, jitter=False).reshape(10, 3, 28, 28)
  assert all((c == c[0]).all() for c in plain)
  for kwargs in ({"affine": True, "jitter": False}, {"affine": False, "jitter": True}):
    varied = _render(strokes, keys, **kwargs).reshape(10, 3, 28, 28)
    assert not any((c == c[0]).all() for c in varied), kwargs
  # Undistorted, the longer side of the character's box spans FILL of the image, plus the line
  # width and the pixel the span counts at its end.
  ink = plain[:, 0] > 64
  extent = [max(np.ptp(np.where(m)[0]), np.ptp(np.where(m)[1])) + 1 for m in ink]
  assert np.abs(np.array(extent) - (kanji.FILL + kanji.WIDTH) * 28 - 1).max() <= 1.5


def test_train_test_classes():
  train, test = kanji.train_test_classes(1623)
  assert len(train) == 1298 and len(test) == 325
  assert train.dtype == test.dtype == np.int32
  assert (np.diff(train) > 0).all() and (np.diff(test) > 0).all()
  np.testing.assert_array_equal(np.union1d(train, test), np.arange(1623))
  again = kanji.train_test_classes(1623, 0.2, 0)
  np.testing.assert_array_equal(again[0], train)
  np.testing.assert_array_equal(again[1], test)
  assert not np.array_equal(kanji.train_test_classes(1623, seed=1)[1], test)
  train, test = kanji.train_test_classes(50, test_fraction=0.5, seed=3)
  assert len(train) == len(test) == 25 and not set(train) & set(test)
  assert [len(p) for p in kanji.train_test_classes(10, test_fraction=0.01)] == [9, 1]


@pytest.mark.parametrize("call, name", [
    (lambda: kanji.load(num_classes=0), "num_classes=0"),
    (lambda: kanji.load(num_classes=6395), "num_classes=6395"),
    (lambda: kanji.load(num_classes=True), "num_classes=True"),
    (lambda: kanji.load(drawings=0), "drawings=0"),
    (lambda: kanji.load(size=4), "size=4"),
    (lambda: kanji.load(size=28.0), "size=28.0"),
    (lambda: kanji.load(seed=-1), "seed=-1"),
    (lambda: kanji.train_test_classes(1), "num_classes=1"),
    (lambda: kanji.train_test_classes(10, test_fraction=1.0), "test_fraction=1.0"),
    (lambda: kanji.train_test_classes(10, test_fraction=0), "test_fraction=0"),
])
def test_bad_arguments_name_the_value(call, name):
  with pytest.raises(ConfigError) as info:
    call()
  message = str(info.value)
  assert message.startswith(name + " ") and "accepted: " in message and "\n" not in message


def test_cache_with_a_bad_layout_is_reported(tmp_path):
  path = tmp_path / f"kanji_28px_4x50_s0_{kanji.render_tag()}.npz"
  cache.write(path, {"images": np.zeros((200, 28, 28), np.uint8),
                     "labels": np.tile(np.arange(50, dtype=np.int32), 4),
                     "characters": np.arange(0x4E00, 0x4E00 + 50, dtype=np.int32)})
  with pytest.raises(DataError, match="labels are not 0..49 each repeated 4 times"):
    kanji.load(str(tmp_path), **SMALL)


def test_default_dataset(small, data_dir):
  data = kanji.load(str(data_dir))
  assert data["images"].shape == (1623 * 20, 28, 28) and data["characters"].shape == (1623,)
  np.testing.assert_array_equal(np.bincount(data["labels"]), np.full(1623, 20))
  # The small set's characters are among the default's, drawn the same way.
  index = np.searchsorted(data["characters"], small["characters"])
  np.testing.assert_array_equal(data["characters"][index], small["characters"])
  images = data["images"].reshape(1623, 20, 28, 28)[index, :4].reshape(-1, 28, 28)
  np.testing.assert_array_equal(images, small["images"])
  assert (data["images"].reshape(len(data["images"]), -1).max(1) > 200).all()


def test_the_cache_name_follows_the_rendering_constants(monkeypatch):
  tag = kanji.render_tag()
  assert len(tag) == 8 and tag == kanji.render_tag()
  monkeypatch.setattr(kanji, "MAX_SHIFT", kanji.MAX_SHIFT + 0.01)
  assert kanji.render_tag() != tag
