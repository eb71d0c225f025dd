"""Reference statistics (fid_stats.py): `--mode fid_stats` on a split and on a folder of
images, and the loaders of score_sde's `pool_3` and pytorch-fid's `mu`/`sigma` files."""
import json
import os

import numpy as np
import pytest
from PIL import Image

import datasets
import fid_stats
import io_utils
import distances
import metrics
from configs.default_digits import get_digits_configs
from errors import ConfigError, DataError


def test_loads_score_sde_and_pytorch_fid_files(tmp_path):
  rng = np.random.default_rng(0)
  pool3 = rng.normal(size=(50, 6)).astype(np.float32)
  np.savez(tmp_path / 'cifar10_stats.npz', pool_3=pool3)        # score_sde's layout
  ref = fid_stats.load_reference(str(tmp_path / 'cifar10_stats.npz'))
  np.testing.assert_array_equal(ref.features, pool3)
  np.testing.assert_allclose(ref.mu, pool3.astype(np.float64).mean(0), rtol=1e-12)
  np.testing.assert_allclose(ref.cov, np.cov(pool3.astype(np.float64), rowvar=False),
                             rtol=1e-12)
  assert ref.provenance['format'] == 'score_sde pool_3' and ref.provenance['count'] == 50
  mu, sigma = rng.normal(size=6), np.eye(6) * 2.
  np.savez(tmp_path / 'fid.npz', mu=mu, sigma=sigma)            # pytorch-fid's layout
  ref = fid_stats.load_reference(str(tmp_path / 'fid.npz'))
  assert ref.features is None and ref.provenance['format'] == 'pytorch-fid mu/sigma'
  np.testing.assert_array_equal(ref.mu, mu)
  np.testing.assert_array_equal(ref.cov, sigma)
  # Against a moments-only reference: FD as usual, KID unavailable (None), IS from logits.
  config = get_digits_configs()
  ext = metrics.Extractor('net', None, None, {})
  feats = rng.normal(size=(20, 6))
  q = metrics.features_quality(config, feats, rng.normal(size=(20, 3)), ref, ext)
  assert q['digits_kid'] is None
  np.testing.assert_allclose(q['digits_fd'], distances.frechet_distance(
      *distances.feature_stats(feats), mu, sigma), rtol=1e-12)
  with pytest.raises(ConfigError, match='6-d features'):
    metrics.features_quality(config, feats[:, :4], feats[:, :3], ref, ext)
  np.savez(tmp_path / 'other.npz', activations=pool3)
  with pytest.raises(DataError, match='other.npz.*pool_3'):
    fid_stats.load_reference(str(tmp_path / 'other.npz'))
  (tmp_path / 'torn.npz').write_bytes(b'PK\x03\x04 not really')
  with pytest.raises(DataError, match='torn.npz'):
    fid_stats.load_reference(str(tmp_path / 'torn.npz'))


def test_fid_stats_mode_split_and_folder_agree(tmp_path):
  """The test split's statistics, and the same digits written as PNGs to a folder."""
  config = get_digits_configs()
  config.eval.stats_split = 'test'
  result = fid_stats.fid_stats_mode(config, str(tmp_path / 'w'))
  with np.load(result['path']) as f:
    saved = {k: f[k] for k in f.files}
  ext = metrics.get_extractor(config)
  assert result['count'] == 297 and str(saved['count']) == '297'
  assert str(saved['dataset']) == 'digits' and str(saved['source']) == 'split test'
  assert str(saved['feature_network']) == ext.name
  with open(result['path'][:-4] + '.json') as f:
    assert json.load(f)['feature_network'] == ext.name
  # mu and sigma are the moments of the stored features, which are the network's
  # features of the 8-bit test digits.
  mu, cov = distances.feature_stats(saved['features'])
  np.testing.assert_array_equal(saved['mu'], mu)
  np.testing.assert_array_equal(saved['sigma'], cov)
  inverse = datasets.get_data_inverse_scaler(config)
  test = np.concatenate([inverse(x[m]) for x, m in
                         datasets.get_dataset(config, 'test').iterate(128)])
  direct = np.asarray(ext.apply(ext.variables, io_utils.to_uint8(test) / np.float32(255.))[0])
  np.testing.assert_allclose(saved['features'], direct, rtol=1e-5, atol=1e-6)
  # Loaded back as an eval reference, provenance checked against the network.
  ref = fid_stats.load_reference(result['path'], ext)
  assert ref.provenance['format'] == 'fid_stats' and ref.features.shape == (297, 64)
  with pytest.raises(ConfigError, match='feature network'):
    fid_stats.load_reference(result['path'], ext._replace(name='inception_0000'))
  # The same images as grey PNG files: the same statistics (PNG is lossless 8-bit).
  folder = tmp_path / 'pngs'
  folder.mkdir()
  for i, img in enumerate(io_utils.to_uint8(test)):
    Image.fromarray(img[..., 0]).save(folder / f'{i:03d}.png')
  config.eval.stats_folder = str(folder)
  from_folder = fid_stats.fid_stats_mode(config, str(tmp_path / 'w'))
  with np.load(from_folder['path']) as f:
    np.testing.assert_allclose(f['mu'], saved['mu'], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f['sigma'], saved['sigma'], rtol=1e-4, atol=1e-6)
    assert str(f['source']).startswith('folder ')
  assert from_folder['path'] != result['path']


def test_bad_stats_fields_fail_before_touching_the_workdir(tmp_path):
  config = get_digits_configs()
  config.eval.stats_path = str(tmp_path / 'missing.npz')
  with pytest.raises(ConfigError, match='eval.stats_path'):
    fid_stats.fid_stats_mode(config, str(tmp_path / 'w'))
  config.eval.stats_path, config.eval.stats_folder = '', str(tmp_path / 'nope')
  with pytest.raises(ConfigError, match='eval.stats_folder'):
    fid_stats.fid_stats_mode(config, str(tmp_path / 'w'))
  assert not os.path.exists(tmp_path / 'w')
