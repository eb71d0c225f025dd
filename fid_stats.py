"""Reference statistics of real images: `--mode fid_stats`, and the published files.

`--mode fid_stats` computes the features of a dataset split (`eval.stats_split`
of `data.dataset`) or of a folder of image files (`eval.stats_folder`), with
the feature network `--mode eval` uses for that dataset (FID Inception-v3, or
the digits classifier), and writes workdir/fid_stats/<name>.npz holding

    mu [F] float64, sigma [F, F] float64   (pytorch-fid's keys: its tools read it)
    features [N, F] float32                (KID needs them)
    dataset, source, count, feature_network, image_size   (provenance, strings)

and <name>.json with the provenance. Images are quantised by io_utils.to_uint8
first, as the samples are. Pass the .npz to `--mode eval` as `eval.stats_path`.

`load_reference` also reads the published statistics: score_sde's
`cifar10_stats.npz` (`pool_3`: the features [N, 2048]; KID is then possible)
and pytorch-fid's `.npz` (`mu`, `sigma`; KID is then None). A published file
carries no provenance: it is only checked for its feature dimension.
"""
from __future__ import annotations

import json
import math
import os
import re
import time
import zipfile
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

import datasets
import io_utils
import distances
import metrics
import parallel
from errors import ConfigError, DataError

_PROVENANCE = ('dataset', 'source', 'count', 'feature_network', 'image_size')


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for bad eval.stats_path / eval.stats_folder; touches nothing."""
  e = config.eval
  if e.stats_path and not os.path.isfile(os.path.expanduser(e.stats_path)):
    raise ConfigError(f'eval.stats_path={e.stats_path!r} does not exist; make it with '
                      f'--mode fid_stats, or pass score_sde\'s cifar10_stats.npz or a '
                      f'pytorch-fid .npz (mu, sigma)')
  if e.stats_folder and not os.path.isdir(os.path.expanduser(e.stats_folder)):
    raise ConfigError(f'eval.stats_folder={e.stats_folder!r} is not a directory; pass a '
                      f'folder of PNG/JPEG files, or leave it empty to use eval.stats_split')


def save_stats(path: str, features: np.ndarray, provenance: dict[str, Any]) -> None:
  """Writes features [N, F], their mean and covariance and the provenance to `path`."""
  if not io_utils.is_writer():
    return
  mu, sigma = distances.feature_stats(features)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path + '.tmp', 'wb') as f:   # a file object: np.savez would append '.npz'
    np.savez(f, mu=mu, sigma=sigma, features=np.asarray(features, np.float32),
             **{k: np.asarray(str(provenance[k])) for k in _PROVENANCE})
  os.replace(path + '.tmp', path)


def load_reference(path: str, extractor: metrics.Extractor | None = None) -> metrics.Reference:
  """Reference statistics from a file of `save_stats`, score_sde or pytorch-fid.

  Args:
    path: the .npz.
    extractor: if given, a file that names its feature network must name this
      one (a different network's statistics give a meaningless FID).

  Raises:
    DataError: unreadable, or none of the known layouts.
    ConfigError: made with another feature network.
  """
  try:
    with np.load(os.path.expanduser(path)) as f:
      data = {k: f[k] for k in f.files}
  except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
    raise DataError(f'cannot read reference statistics {path}: {e}') from None
  if 'pool_3' in data:        # score_sde: Inception pool3 features of the whole split
    feats = np.asarray(data['pool_3'], np.float32).reshape(len(data['pool_3']), -1)
    mu, cov = distances.feature_stats(feats)
    prov = {'file': path, 'format': 'score_sde pool_3', 'count': len(feats)}
  elif 'mu' in data and 'sigma' in data:
    feats = np.asarray(data['features'], np.float32) if 'features' in data else None
    mu, cov = np.asarray(data['mu'], np.float64), np.asarray(data['sigma'], np.float64)
    known = {k: str(data[k]) for k in _PROVENANCE if k in data}
    prov = {'file': path, 'format': 'fid_stats' if known else 'pytorch-fid mu/sigma', **known}
  else:
    raise DataError(f'reference statistics {path} hold {sorted(data)}; want pool_3 '
                    f'(score_sde), mu and sigma (pytorch-fid) or a --mode fid_stats file')
  if mu.ndim != 1 or cov.shape != (mu.shape[0],) * 2:
    raise DataError(f'reference statistics {path}: mu {mu.shape} and sigma {cov.shape} '
                    f'are not [F] and [F, F]')
  net = prov.get('feature_network')
  if extractor is not None and net is not None and net != extractor.name:
    raise ConfigError(f'eval.stats_path={path!r} was made with the feature network {net}, '
                      f'this run uses {extractor.name}; recompute it with --mode fid_stats')
  return metrics.Reference(feats, mu, cov, prov)


def reference_for_eval(config, extractor: metrics.Extractor) -> metrics.Reference:
  """`eval.stats_path` if set, else the statistics of the split `eval.stats_split`."""
  if config.eval.stats_path:
    return load_reference(config.eval.stats_path, extractor)
  return metrics.reference_stats(config)


def _folder_batches(config, folder: str, batch_size: int):
  """The folder's images, cropped square and resized to data.image_size, as 8-bit batches."""
  files = datasets._FolderExamples('eval.stats_folder', folder,  # pylint: disable=protected-access
                                   config.data.image_size)
  n, channels = len(files), config.data.num_channels

  def gen():
    for start in range(0, n, batch_size):
      x = files[np.arange(start, min(start + batch_size, n))]
      x = x[..., :1] if channels == 1 else x
      yield from metrics.ordered_batches(io_utils.to_uint8(x) / np.float32(255.), batch_size)

  return n, gen()


def fid_stats_mode(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """`--mode fid_stats`: workdir/fid_stats/<name>.npz (see the module docstring)."""
  metrics.check_config(config)
  check_config(config)
  e, d = config.eval, config.data
  if d.dataset in datasets.TOYS:
    raise ConfigError(f'--mode fid_stats needs image data; data.dataset={d.dataset!r} is a '
                      f'toy (its metrics compare samples with the held-out set directly)')
  extractor = metrics.get_extractor(config)
  tic, mesh = time.time(), parallel.make_mesh()
  if e.stats_folder:
    folder = os.path.abspath(os.path.expanduser(e.stats_folder))
    count, batches = _folder_batches(config, folder, e.feature_batch_size)
    source = f'folder {folder}'
    tag = f'folder_{os.path.basename(folder.rstrip(os.sep))}'
  else:
    # pylint: disable=protected-access
    ds = datasets.get_dataset(metrics._reference_config(config), e.stats_split)
    count = min(ds.num_examples, e.num_stats_examples or ds.num_examples)
    batches = metrics._real_batches(config, e.stats_split, e.num_stats_examples)
    source, tag = f'split {e.stats_split}', f'{e.stats_split}_n{count}'
  feats, _ = metrics.compute_features(extractor, batches, mesh,
                                      total=math.ceil(count / e.feature_batch_size))
  prov = {'dataset': d.dataset, 'source': source, 'count': int(len(feats)),
          'feature_network': extractor.name, 'image_size': int(d.image_size)}
  name = re.sub(r'[^A-Za-z0-9_.-]', '_', f'{d.dataset}_{d.image_size}px_{tag}_{extractor.name}')
  path = os.path.join(workdir, 'fid_stats', name + '.npz')
  save_stats(path, feats, prov)
  result = {**prov, 'path': path, 'seconds': time.time() - tic}
  io_utils.write_json(os.path.join(workdir, 'fid_stats', name + '.json'), result, config)
  logging.info('reference statistics of %d images (%s) -> %s', len(feats), source, path)
  if jax.process_index() == 0:
    print(path)
  return result


def main(argv: list[str]) -> None:
  """`python fid_stats.py A.npz B.npz`: the Frechet distance (and KID) between two files."""
  if len(argv) != 3:
    raise SystemExit('usage: python fid_stats.py A.npz B.npz  (fid_stats, score_sde or '
                     'pytorch-fid files)')
  a, b = (load_reference(p) for p in argv[1:])
  out = {'fd': distances.frechet_distance(a.mu, a.cov, b.mu, b.cov), 'a': a.provenance,
         'b': b.provenance}
  if a.features is not None and b.features is not None:
    out['kid'], out['kid_std'] = distances.kernel_inception_distance(a.features, b.features)
  print(json.dumps(out, indent=2, default=str))


if __name__ == '__main__':
  import sys  # pylint: disable=g-import-not-at-top
  main(sys.argv)
