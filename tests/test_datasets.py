"""Tests for datasets.py: splits, the step-indexed stream, augmentation maths,
toy moments and the offline TFDS path. All offline.

Moment checks compare a sample mean of n = 100_000 draws with its exact value
at 5 standard errors, the standard error estimated from the same sample (a
false alarm has probability ~6e-7 per check; the seeds are fixed anyway).
"""
import io
import json
import math
import shutil
import time

import numpy as np
from PIL import Image
import pytest

from configs.defaults import get_default_configs
import datasets
import toys
from errors import ConfigError, DataError

N_MOMENTS = 100_000


def _config(**data):
  config = get_default_configs()
  for key, value in data.items():
    config.data[key] = value
  return config


def _get(split='train', index=0, count=1, seed=None, **data):
  config = _config(**data)
  if seed is not None:
    config.seed = seed
  return datasets.get_dataset(config, split, process_index=index,
                              process_count=count)


def _rows(x):
  """Sorted row bytes: compares batches as multisets of examples."""
  return sorted(r.tobytes() for r in np.ascontiguousarray(x).reshape(len(x), -1))


def _assert_mean(values, want):
  values = np.asarray(values, np.float64)
  se = values.std() / math.sqrt(len(values))
  assert abs(values.mean() - want) < 5 * se + 1e-12, (values.mean(), want, se)


# ---------------------------------------------------------------- digits


def test_digits_split_is_a_fixed_partition():
  from sklearn.datasets import load_digits
  train = datasets._digits_images('train', 8)
  test = datasets._digits_images('test', 8)
  assert (len(train), len(test)) == (1500, 297)
  assert _get('train').num_examples == 1500 and _get('test').num_examples == 297
  # Same multiset as all 1797 digits with sizes adding up: each digit is in
  # exactly one split.
  everything = load_digits().images.astype(np.float32)[..., None] / 16.
  assert _rows(np.concatenate([train, test])) == _rows(everything)
  np.testing.assert_array_equal(train, datasets._digits_images('train', 8))


def test_digits_values_on_the_sixteenths_grid():
  x = _get().batch(0, 256)
  assert x.dtype == np.float32 and x.shape == (256, 8, 8, 1)
  assert x.min() >= 0. and x.max() <= 1.
  np.testing.assert_array_equal(x * 16, np.round(x * 16))


def test_batch_is_deterministic_and_resumable():
  kw = dict(random_flip=True, uniform_dequantization=True)
  run = [_get(**kw).batch(s, 128) for s in range(25)]
  other = _get(**kw)
  for s in (24, 3, 11, 12, 0):   # any order: the state is just the step
    np.testing.assert_array_equal(other.batch(s, 128), run[s])
  assert not np.array_equal(_get(seed=7, **kw).batch(3, 128), run[3])


@pytest.mark.parametrize('count', [2, 4])
def test_process_slices_concatenate_to_the_global_batch(count):
  kw = dict(random_flip=True, uniform_dequantization=True, centered=True)
  single = _get(**kw)
  shards = [_get(index=p, count=count, **kw) for p in range(count)]
  for step in (0, 11, 12, 40):   # step 11 crosses the epoch boundary at 1500
    parts = [d.batch(step, 128) for d in shards]
    assert all(p.shape == (128 // count, 8, 8, 1) for p in parts)
    np.testing.assert_array_equal(np.concatenate(parts), single.batch(step, 128))


def test_each_epoch_is_a_permutation_of_the_train_split():
  train = datasets._digits_images('train', 8)
  ds = _get()
  epoch0 = np.concatenate([ds.batch(s, 100) for s in range(15)])
  epoch1 = np.concatenate([ds.batch(s, 100) for s in range(15, 30)])
  assert _rows(epoch0) == _rows(train) == _rows(epoch1)
  assert not np.array_equal(epoch0, epoch1)   # reshuffled per epoch
  # Batches of 128 cross epochs: the stream's first 1500 rows are one epoch.
  stream = np.concatenate([ds.batch(s, 128) for s in range(12)])
  assert _rows(stream[:1500]) == _rows(train)


def test_dequantization_of_17_levels():
  plain = np.concatenate([_get().batch(s, 128) for s in range(8)])
  deq = np.concatenate(
      [_get(uniform_dequantization=True).batch(s, 128) for s in range(8)])
  # Documented convention: v / 16 -> (v + u) / 17 with u ~ U[0, 1).
  u = deq * 17 - plain * 16
  assert u.min() >= -1e-5 and u.max() < 1 + 1e-5
  _assert_mean(u.ravel(), 0.5)            # so E[x'] = (v + 1/2) / 17
  assert abs(u.var() - 1 / 12) < 0.01
  test = [x for x, _ in _get('test', uniform_dequantization=True).iterate(99)]
  u = np.concatenate(test) * 17 - datasets._digits_images('test', 8) * 16
  assert u.min() >= -1e-5 and u.max() < 1 + 1e-5


def test_random_flip_mirrors_about_half_the_training_images():
  plain = np.concatenate([_get().batch(s, 128) for s in range(10)])
  flip = np.concatenate([_get(random_flip=True).batch(s, 128) for s in range(10)])
  mirror = plain[:, :, ::-1]
  assert np.all(np.all(flip == plain, axis=(1, 2, 3))
                | np.all(flip == mirror, axis=(1, 2, 3)))
  asym = ~np.all(plain == mirror, axis=(1, 2, 3))
  _assert_mean(np.all(flip == mirror, axis=(1, 2, 3))[asym], 0.5)
  # Never on the test split.
  np.testing.assert_array_equal(_get('test', random_flip=True).batch(0, 64),
                                _get('test').batch(0, 64))


def test_centred_range_and_scalers():
  plain, centred = _get().batch(5, 256), _get(centered=True).batch(5, 256)
  assert centred.min() == -1. and centred.max() == 1.
  np.testing.assert_allclose(centred, 2 * plain - 1, atol=1e-6)
  for data in (dict(centered=True), dict(centered=False),
               dict(dataset='moons', centered=True)):
    config = _config(**data)
    x = np.random.default_rng(0).uniform(size=(4, 8, 8, 1))
    scale = datasets.get_data_scaler(config)
    inverse = datasets.get_data_inverse_scaler(config)
    np.testing.assert_allclose(inverse(scale(x)), x, atol=1e-12)
  inverse = datasets.get_data_inverse_scaler(_config(centered=True))
  np.testing.assert_allclose(inverse(centred), plain, atol=1e-6)


@pytest.mark.parametrize('count', [1, 2, 3])
def test_iterate_covers_the_test_split_once(count):
  test = datasets._digits_images('test', 8)
  runs = [list(_get('test', index=p, count=count).iterate(60))
          for p in range(count)]
  assert len({len(r) for r in runs}) == 1      # same number of batches
  real = []
  for run in runs:
    for x, mask in run:
      assert x.shape == (60 // count, 8, 8, 1) and mask.dtype == bool
      assert not np.any(x[~mask])              # padding is zeros
      real.append(x[mask])
  assert _rows(np.concatenate(real)) == _rows(test)


def test_resize_keeps_range_and_mean():
  small = datasets._digits_images('train', 8)
  big = datasets._digits_images('train', 16)
  assert big.shape == (1500, 16, 16, 1) and big.min() >= 0 and big.max() <= 1
  # Bilinear upsampling is a convex average of neighbours: per-image means
  # agree up to edge effects.
  np.testing.assert_allclose(big.mean((1, 2, 3)), small.mean((1, 2, 3)), atol=0.03)
  assert _get(image_size=16).batch(0, 8).shape == (8, 16, 16, 1)


def test_config_errors():
  with pytest.raises(ConfigError, match='data.num_channels'):
    _get(num_channels=3)
  with pytest.raises(ConfigError, match='digits'):
    _get(dataset='cifar100')
  with pytest.raises(ConfigError, match='training.batch_size'):
    _get(index=0, count=2).batch(0, 127)
  with pytest.raises(ConfigError, match='eval.batch_size'):
    next(_get(index=0, count=2).iterate(3))
  with pytest.raises(ConfigError, match='split'):
    _get('validation')
  with pytest.raises(ConfigError, match='data.dim'):
    _get(dataset='moons', dim=3)


# ---------------------------------------------------------------- toys


def _draw(name, n=N_MOMENTS, **kw):
  return datasets.TOYS[name](np.random.default_rng(0), n, **kw)


def test_8gaussians_moments():
  x = _draw('8gaussians')
  r, s = toys.EIGHT_GAUSSIANS_RADIUS, toys.EIGHT_GAUSSIANS_STD
  _assert_mean(x[:, 0], 0.)
  _assert_mean(x[:, 1], 0.)
  _assert_mean(x[:, 0] ** 2, r ** 2 / 2 + s ** 2)
  _assert_mean(x[:, 0] * x[:, 1], 0.)
  # The residual from the nearest mean is N(0, s^2 I).
  angle = np.round(np.arctan2(x[:, 1], x[:, 0]) / (np.pi / 4)) * np.pi / 4
  res = x - r * np.stack([np.cos(angle), np.sin(angle)], 1)
  _assert_mean(res.ravel() ** 2, s ** 2)


def test_circles_moments():
  x = _draw('circles')
  _assert_mean(x[:, 0], 0.)
  _assert_mean(x[:, 1], 0.)
  # E|x|^2 = mean of the squared radii (1.5, 0.75) + 2 * 0.12^2.
  _assert_mean((x ** 2).sum(1), (1.5 ** 2 + 0.75 ** 2) / 2 + 2 * 0.12 ** 2)


def test_moons_moments():
  x = _draw('moons')
  _assert_mean(x[:, 0], 0.)
  _assert_mean(x[:, 1], 0.15)   # means (0, 2/pi) and (1, 1/2 - 2/pi), mapped
  _assert_mean((x ** 2).sum(1), 1.355 - 1 / np.pi)


def test_swissroll_moments():
  x = _draw('swissroll')
  # t ~ U[1.5 pi, 4.5 pi]: E[t cos t] = 2, E[t sin t] = 2 / (3 pi),
  # E[t^2] = 9.75 pi^2; plus N(0, I) noise; all / 10.
  _assert_mean(x[:, 0], 0.2)
  _assert_mean(x[:, 1], 2 / (3 * np.pi) / 10)
  _assert_mean((x ** 2).sum(1), (9.75 * np.pi ** 2 + 2) / 100)


def test_pinwheel_moments():
  x = _draw('pinwheel')
  assert _draw('pinwheel', 7).shape == (7, 2)   # any n, not only multiples of 5
  _assert_mean(x[:, 0], 0.)     # five arms cancel
  _assert_mean(x[:, 1], 0.)
  _assert_mean((x ** 2).sum(1), 1. + 0.3 ** 2 + 0.1 ** 2)   # rotations keep |f|


def test_scurve_moments():
  x = _draw('scurve')
  _assert_mean(x[:, 0], 0.)
  _assert_mean(x[:, 1], 0.)
  _assert_mean(x[:, 0] ** 2, 0.5 + 0.01)
  _assert_mean(x[:, 1] ** 2, 1.5 + 4 / (3 * np.pi) + 0.01)


def test_checkerboard_support_and_moments():
  x = _draw('checkerboard')
  assert np.all(np.abs(x) <= 1.)
  assert np.all((np.floor(2 * x[:, 0]) + np.floor(2 * x[:, 1])) % 2 == 0)
  cell = (np.floor(2 * x[:, 0]) + 2) * 4 + np.floor(2 * x[:, 1]) + 2
  assert len(np.unique(cell)) == 8
  for c in np.unique(cell):
    _assert_mean(cell == c, 1 / 8)
  for d in (0, 1):
    _assert_mean(x[:, d], 0.)
    _assert_mean(x[:, d] ** 2, 1 / 3)


@pytest.mark.parametrize('dim', [1, 2, 3])
def test_gmm_mean_and_covariance_match_its_parameters(dim):
  weights, means, stds = datasets.toy_gmm_params(dim)
  assert weights.shape == (4,) and means.shape == (4, dim) and stds.shape == (4,)
  assert np.isclose(weights.sum(), 1.)
  x = datasets.sample_gmm(np.random.default_rng(0), N_MOMENTS, dim)
  mean = weights @ means
  second = (np.einsum('k,ki,kj->ij', weights, means, means)
            + np.sum(weights * stds ** 2) * np.eye(dim))
  for i in range(dim):
    _assert_mean(x[:, i], mean[i])
    for j in range(dim):
      _assert_mean(x[:, i] * x[:, j], second[i, j])
  ds = _get(dataset='gmm', dim=dim)
  assert ds.data_shape == (dim,) and ds.batch(0, 6).shape == (6, dim)


@pytest.mark.parametrize('name', sorted(datasets.TOYS))
def test_toy_streams_are_deterministic_and_process_independent(name):
  ds = _get(dataset=name)
  assert ds.num_examples is None and not ds.is_image and ds.data_shape == (2,)
  np.testing.assert_array_equal(ds.batch(9, 64), _get(dataset=name).batch(9, 64))
  assert not np.array_equal(ds.batch(9, 64), ds.batch(10, 64))
  halves = [_get(dataset=name, index=p, count=2).batch(9, 64) for p in (0, 1)]
  np.testing.assert_array_equal(np.concatenate(halves), ds.batch(9, 64))
  held = np.concatenate([x[m] for x, m in ds.iterate(4096)])
  assert held.shape == (datasets.TOY_HELDOUT_SIZE, 2)
  test = _get('test', dataset=name)
  assert test.num_examples == datasets.TOY_HELDOUT_SIZE
  test_set = np.concatenate([x[m] for x, m in test.iterate(4096)])
  assert not np.array_equal(held, test_set)


def test_toy_fixed_train_set():
  ds = _get(dataset='moons', num_train=300)
  assert ds.num_examples == 300
  fixed = np.concatenate([x for x, _ in ds.iterate(300)])
  epoch = np.concatenate([ds.batch(s, 60) for s in range(5)])
  assert _rows(epoch) == _rows(fixed)
  assert _rows(np.concatenate([ds.batch(s, 60) for s in range(5, 10)])) == _rows(fixed)


# ---------------------------------------------------------------- TFDS


def _png(image):
  buffer = io.BytesIO()
  Image.fromarray(image[..., 0]).save(buffer, format='png')
  return buffer.getvalue()


@pytest.fixture(scope='module')
def mnist_dir(tmp_path_factory):
  """A fake 'mnist' (20 train, 7 test random images) prepared as array_record
  by the real TFDS builder, offline and without TensorFlow (images are passed
  as PNG bytes, so TFDS does not need TF to encode them)."""
  import tensorflow_datasets as tfds
  from tensorflow_datasets.image_classification import mnist
  data_dir = tmp_path_factory.mktemp('tfds')
  images = {split: np.random.default_rng(i).integers(0, 256, (n, 28, 28, 1),
                                                    np.uint8)
            for i, (split, n) in enumerate([('train', 20), ('test', 7)])}

  with tfds.core.registered.skip_registration():
    class FakeMnist(mnist.MNIST):   # pylint: disable=unused-variable
      name = 'mnist'

      def _split_generators(self, dl_manager):
        return {split: self._generate(x) for split, x in images.items()}

      def _generate(self, x):
        for i, image in enumerate(x):
          yield i, {'image': _png(image), 'label': i % 10}

  FakeMnist(data_dir=str(data_dir), file_format='array_record').download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  return data_dir, images


def _mnist(data_dir, split='train', **kw):
  return _get(split, dataset='mnist', image_size=28, num_channels=1,
              data_dir=str(data_dir), **kw)


def test_tfds_mnist_reads_through_get_dataset(mnist_dir):
  data_dir, images = mnist_dir
  train = images['train'].astype(np.float32) / 255.
  ds = _mnist(data_dir)
  assert ds.num_examples == 20 and ds.data_shape == (28, 28, 1) and ds.is_image
  epoch = np.concatenate([ds.batch(s, 4) for s in range(5)])
  assert _rows(epoch) == _rows(train)
  halves = [_mnist(data_dir, index=p, count=2).batch(7, 4) for p in (0, 1)]
  np.testing.assert_array_equal(np.concatenate(halves), ds.batch(7, 4))
  test = [x[m] for x, m in _mnist(data_dir, 'test').iterate(4)]
  want = images['test'].astype(np.float32) / 255.
  assert _rows(np.concatenate(test)) == _rows(want)


def test_tfds_resize(mnist_dir):
  data_dir, images = mnist_dir
  x = _get(dataset='mnist', image_size=14, num_channels=1,
           data_dir=str(data_dir)).batch(0, 20)
  assert x.shape == (20, 14, 14, 1) and x.min() >= 0 and x.max() <= 1
  # An antialiased 2x shrink averages neighbourhoods: the overall mean stays.
  assert abs(x.mean() - images['train'].mean() / 255.) < 0.01


def test_tfds_non_array_record_is_a_data_error(mnist_dir, tmp_path):
  data_dir, _ = mnist_dir
  shutil.copytree(data_dir / 'mnist', tmp_path / 'mnist')
  (info_path,) = tmp_path.glob('mnist/*/dataset_info.json')
  info = json.loads(info_path.read_text())
  info['fileFormat'] = 'tfrecord'
  info_path.write_text(json.dumps(info))
  with pytest.raises(DataError, match='--file_format=array_record'):
    _mnist(tmp_path)


def test_missing_tfds_dataset_fails_fast_offline(tmp_path):
  start = time.perf_counter()
  with pytest.raises(DataError) as error:
    _get(dataset='cifar10', image_size=32, num_channels=3, data_dir=str(tmp_path))
  assert time.perf_counter() - start < 5.
  message = str(error.value)
  assert '\n' not in message
  for part in ('cifar10', str(tmp_path), 'tfds build cifar10', 'digits', 'moons'):
    assert part in message
  with pytest.raises(ConfigError, match='data.num_channels'):
    _get(dataset='cifar10', num_channels=1, data_dir=str(tmp_path))


def _write_faces(folder, n=6, shape=(12, 16)):
  """n random RGB PNGs, every other one in a subfolder, and a non-image file."""
  rng = np.random.default_rng(0)
  images = {}
  for i in range(n):
    pixels = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    name = f'sub/{i:02d}.png' if i % 2 else f'{i:02d}.png'
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(folder / name)
    images[name] = pixels
  (folder / 'notes.txt').write_text('not an image')
  return images


def test_image_folder_dataset_reads_every_file_cropped_and_resized(tmp_path):
  images = _write_faces(tmp_path)
  data = _get(dataset='ffhq', image_size=12, num_channels=3, data_dir=str(tmp_path),
              random_flip=False, uniform_dequantization=False)
  assert data.num_examples == len(images)
  # One epoch of the stream is a permutation of the files; each image is the
  # central 12x12 crop of its 12x16 file, exactly (no resize at the crop size).
  expected = {name: px[:, 2:14].astype(np.float32) / 255. for name, px in images.items()}
  seen = data.batch(0, len(images))
  for x in seen:
    assert sum(np.array_equal(x, e) for e in expected.values()) == 1
  # 'test' is the same folder (no held-out split), in sorted file order.
  test = _get('test', dataset='celeb_a_hq', image_size=12, num_channels=3,
              data_dir=str(tmp_path), uniform_dequantization=False)
  x, mask = next(test.iterate(len(images)))
  assert mask.all()
  np.testing.assert_array_equal(x, np.stack([expected[k] for k in sorted(expected)]))
  # A larger image size resizes the square crop (values stay in [0, 1]).
  big = _get(dataset='ffhq', image_size=24, num_channels=3, data_dir=str(tmp_path)).batch(0, 2)
  assert big.shape == (2, 24, 24, 3) and 0 <= big.min() and big.max() <= 1


def test_image_folder_dataset_errors_name_the_field(tmp_path):
  for folder in (str(tmp_path / 'missing'), ''):
    with pytest.raises(DataError, match='data.data_dir') as error:
      _get(dataset='ffhq', image_size=8, num_channels=3, data_dir=folder)
    assert '\n' not in str(error.value)
  with pytest.raises(DataError, match='holds no image files'):
    _get(dataset='celeb_a_hq', image_size=8, num_channels=3, data_dir=str(tmp_path))
  with pytest.raises(ConfigError, match='data.num_channels'):
    _get(dataset='ffhq', image_size=8, num_channels=1, data_dir=str(tmp_path))
