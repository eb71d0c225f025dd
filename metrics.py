"""Sample-quality metrics: FID, KID, Inception Score, the digits FD, sliced Wasserstein.

The entry point is `sample_quality(config, samples)`. What it measures depends
on the data:

| data | feature network | keys |
|---|---|---|
| digits | models/digits_classifier.py (penultimate layer, 64-d) | digits_fd, digits_kid, digits_is |
| other images | FID Inception-v3 (pool3 2048-d, 1008 logits) | fid, kid, inception_score |
| 2-D toys | none | sliced_wasserstein, mmd |

The reference is the real data: `eval.stats_split` ('train' by default, as
score_sde's FID statistics of CIFAR-10) for images, the fixed held-out 'test'
set for toys. Reference features are computed once per process and kept in
memory; with `eval.stats_dir` they are also cached there as .npz.

Features are computed on device by a jitted network over batches sharded on the
mesh's 'data' axis; the statistics (means, covariances, kernels) are float64
numpy on the host.
"""
from __future__ import annotations

import functools
import math
import os
import re
import time
import zlib
from typing import Callable, Iterable, NamedTuple

from absl import logging
import jax
import ml_collections
import numpy as np

import datasets
import io_utils
import parallel
from distances import (feature_stats, frechet_distance, inception_score,
                       kernel_inception_distance, rbf_kernel, sliced_wasserstein, subset_mmd2)
from errors import ConfigError

# --------------------------------------------------------------------------
# Feature networks on device.


class Extractor(NamedTuple):
  """A feature network: `apply(variables, images [B, H, W, C]) -> (features, logits)`."""
  name: str            # network and weights' crc32: names the .npz reference cache
  apply: Callable      # jitted
  variables: dict      # replicated over the mesh
  info: dict           # reported beside the metrics


def _local_batches(x: np.ndarray, batch_size: int) -> Iterable[tuple[np.ndarray, np.ndarray]]:
  """This process's rows of x in padded batches of batch_size // process_count, with masks."""
  b = batch_size // jax.process_count()
  for start in range(0, len(x), b):
    real = x[start:start + b]
    pad = np.zeros((b, *x.shape[1:]), np.float32)
    pad[:len(real)] = real
    yield pad, np.arange(b) < len(real)


def ordered_batches(x: np.ndarray, batch_size: int) -> Iterable[tuple[np.ndarray, np.ndarray]]:
  """This process's slices of the global batches x[j B:(j + 1) B], padded, with masks.

  Every process holds all of x [N, ...]; process p feeds rows p b..(p + 1) b - 1
  (b = B / process count) of each global batch, so `compute_features` returns
  the rows in the order of x, whatever the process count.
  """
  rows_here = parallel.local_rows(batch_size)
  lo, b = rows_here.start, rows_here.stop - rows_here.start
  for start in range(0, len(x), batch_size):
    rows = np.arange(start + lo, start + lo + b)
    real = rows < len(x)
    pad = np.zeros((b, *x.shape[1:]), np.float32)
    pad[real] = x[rows[real]]
    yield pad, real


def compute_features(extractor: Extractor, batches, mesh,
                     total: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Runs the feature network over batches sharded on 'data'; all processes' rows.

  Args:
    batches: iterable of (x [b, H, W, C] this process's slice of a global
      batch, mask [b]); every process yields the same number of batches.
    total: the number of batches, if known: progress lines then carry an ETA.

  Returns:
    (features [N, F], logits [N, K]) float32, the real rows of every process.
  """
  feats, logits, pending, tic = [], [], None, time.time()

  def fetch(out, mask):
    keep = parallel.to_host(mask)
    feats.append(parallel.to_host(out[0])[keep])
    logits.append(parallel.to_host(out[1])[keep])

  for i, (x, mask) in enumerate(batches):
    out = extractor.apply(extractor.variables, parallel.global_batch(x, mesh))
    if pending is not None:   # fetch batch i - 1 while batch i runs (dispatch is async)
      fetch(*pending)
    pending = out, parallel.global_batch(mask, mesh)
    if i % 50 == 0 and i:
      eta = (f'  eta {io_utils.fmt_eta((time.time() - tic) / i * (total - i))}'
             if total > i else '')
      logging.info('%s features: batch %d%s%s', extractor.name, i,
                   f'/{total}' if total else '', eta)
  if pending is not None:
    fetch(*pending)
  return np.concatenate(feats), np.concatenate(logits)


@functools.lru_cache(maxsize=4)
def _digits_extractor(path: str, mtime: float) -> Extractor:
  from models import digits_classifier  # pylint: disable=g-import-not-at-top
  del mtime   # only part of the cache key
  params, acc = digits_classifier.load_or_train(path)
  logging.info('digits classifier %s: test accuracy %.4f', path, acc)
  model = digits_classifier.DigitsClassifier()
  mesh = parallel.make_mesh()
  variables = jax.device_put({'params': params}, parallel.replicated(mesh))
  return Extractor(f'digits_classifier_{_crc(params)}', jax.jit(model.apply), variables,
                   {'digits_classifier_test_accuracy': acc})


@functools.lru_cache(maxsize=2)
def _inception_extractor(path: str, mtime: float) -> Extractor:
  from models import inception  # pylint: disable=g-import-not-at-top
  del mtime
  mesh = parallel.make_mesh()
  host = inception.load_variables(path)
  variables = jax.device_put(host, parallel.replicated(mesh))
  name = f'inception_{_crc(host)}'
  return Extractor(name, jax.jit(inception.FIDInceptionV3().apply), variables, {})


def _crc(tree) -> str:
  """crc32 of a pytree's arrays: names the reference cache, so new weights miss the old one."""
  crc = 0
  for leaf in jax.tree.leaves(jax.device_get(tree)):
    crc = zlib.crc32(np.ascontiguousarray(leaf).tobytes(), crc)
  return f'{crc:08x}'


def _mtime(path: str) -> float:
  return os.path.getmtime(path) if os.path.exists(path) else 0.


def get_extractor(config: ml_collections.ConfigDict) -> Extractor:
  """The feature network for config.data.dataset (images only); checks config first."""
  check_config(config)
  if config.data.dataset == 'digits':
    from models import digits_classifier  # pylint: disable=g-import-not-at-top
    path = os.path.abspath(config.eval.digits_classifier_path or digits_classifier.DEFAULT_PATH)
    return _digits_extractor(path, _mtime(path))
  path = os.path.abspath(os.path.expanduser(config.eval.inception_path))
  return _inception_extractor(path, _mtime(path))


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for eval.* fields that sample_quality cannot use. Cheap."""
  e = config.eval
  if e.stats_split not in datasets.SPLITS:
    raise ConfigError(f'eval.stats_split={e.stats_split!r} is unknown; valid: '
                      f'{", ".join(datasets.SPLITS)}')
  for field in ('feature_batch_size', 'kid_subset_size', 'kid_num_subsets', 'is_splits'):
    if e[field] <= 0:
      raise ConfigError(f'eval.{field}={e[field]} must be positive')
  parallel.check_batch_size(e.feature_batch_size, 'eval.feature_batch_size')
  if config.data.dataset in datasets.TOYS or config.data.dataset == 'digits':
    return
  how = ('produce it with `python tools/convert_inception_weights.py --src '
         'pt_inception-2015-12-05-6726825d.pth --out inception_fid.npz` (the .pth is '
         'pytorch-fid\'s FID Inception release) and pass --config.eval.inception_path')
  if not e.inception_path:
    raise ConfigError(f'eval.inception_path is not set: FID/KID/IS on '
                      f'{config.data.dataset!r} need FID Inception-v3 weights; {how}')
  if not os.path.isfile(os.path.expanduser(e.inception_path)):
    raise ConfigError(f'eval.inception_path={e.inception_path!r} does not exist; {how}')


# --------------------------------------------------------------------------
# Reference statistics of the real data.


class Reference(NamedTuple):
  features: np.ndarray | None   # [N, F] float32 (KID needs them); None from a moments-only file
  mu: np.ndarray                # [F] float64
  cov: np.ndarray               # [F, F] float64
  provenance: dict | None = None   # dataset, split or folder, count, feature network


def _reference_config(config):
  """The config with dequantization off: statistics of the real images themselves."""
  cfg = config.copy_and_resolve_references()
  cfg.data.uniform_dequantization = False
  return cfg


def _real_batches(config, split: str, limit: int):
  """The split as 8-bit images in [0, 1], (x, mask) batches; its first `limit` if > 0.

  Real images go through `io_utils.to_uint8` as the samples do (a no-op on
  8-bit data; digits' v / 16 become the levels of their PNGs).
  """
  cfg = _reference_config(config)
  inverse = datasets.get_data_inverse_scaler(cfg)
  batch = config.eval.feature_batch_size
  for k, (x, mask) in enumerate(datasets.get_dataset(cfg, split).iterate(batch)):
    if limit:
      # Row r of process p's part of batch k is example k B + p b + r (Dataset.iterate).
      if k * batch >= limit:           # the same on every process: collectives stay in step
        break
      first = k * batch + parallel.local_rows(batch).start
      mask = mask & (first + np.arange(len(mask)) < limit)
    yield io_utils.to_uint8(inverse(x)) / np.float32(255.), mask


def _cache_path(config, extractor: Extractor) -> str:
  e, d = config.eval, config.data
  tag = (f'{d.dataset}_{d.image_size}px_{e.stats_split}_n{e.num_stats_examples}_u8_'
         f'{extractor.name}')
  return os.path.join(e.stats_dir, re.sub(r'[^A-Za-z0-9_.-]', '_', tag) + '.npz')


_REFERENCES: dict[tuple, Reference] = {}   # in-memory cache of reference_stats


def reference_stats(config: ml_collections.ConfigDict) -> Reference:
  """Features and moments of the real split `eval.stats_split`, computed once.

  Cached in memory per process, keyed by everything the features depend on
  (dataset, image size, split, count, feature network and the crc32 of its
  weights file); with `eval.stats_dir` also as an .npz there under a name made
  of the same, which later processes read back.
  """
  e, d = config.eval, config.data
  extractor = get_extractor(config)
  key = (d.dataset, d.image_size, d.num_channels, d.data_dir, e.stats_split,
         e.num_stats_examples, extractor.name)
  if key in _REFERENCES:
    return _REFERENCES[key]
  path = _cache_path(config, extractor) if e.stats_dir else ''
  if path and os.path.exists(path):
    logging.info('reference statistics from %s', path)
    with np.load(path) as f:
      ref = Reference(f['features'], f['mu'], f['cov'])
  else:
    logging.info('computing reference features of %s/%s', d.dataset, e.stats_split)
    ds = datasets.get_dataset(_reference_config(config), e.stats_split)
    count = min(ds.num_examples, e.num_stats_examples or ds.num_examples)
    feats, _ = compute_features(
        extractor, _real_batches(config, e.stats_split, e.num_stats_examples),
        parallel.make_mesh(), total=math.ceil(count / e.feature_batch_size))
    ref = Reference(feats, *feature_stats(feats))
    if path and jax.process_index() == 0:
      os.makedirs(e.stats_dir, exist_ok=True)
      with open(path + '.tmp', 'wb') as f:
        np.savez(f, features=ref.features, mu=ref.mu, cov=ref.cov)
      os.replace(path + '.tmp', path)
  ref = ref._replace(provenance={
      'dataset': d.dataset, 'image_size': int(d.image_size), 'split': e.stats_split,
      'count': int(len(ref.features)), 'feature_network': extractor.name})
  _REFERENCES[key] = ref
  return ref


# --------------------------------------------------------------------------
# The API used by evaluate.py.


def sample_quality(config: ml_collections.ConfigDict, samples: np.ndarray) -> dict[str, float]:
  """Sample-quality metrics of samples against the real data.

  Args:
    config: the experiment config (data.*, eval.*).
    samples: this process's samples in data space: images float32
      [N, H, W, C] in [0, 1] (after datasets.get_data_inverse_scaler), or toy
      points [N, D]. With several processes each passes the same N; the
      metrics use all processes' samples.

  Returns:
    digits: {'digits_fd', 'digits_kid', 'digits_kid_std', 'digits_is',
    'digits_is_std', 'digits_classifier_test_accuracy'};
    other images: {'fid', 'kid', 'kid_std', 'inception_score',
    'inception_score_std'}; toys: {'sliced_wasserstein', 'mmd'} against the
    held-out test set (sliced W_2 over 256 directions; unbiased RBF MMD^2 with
    the median-distance bandwidth, over 10 subsets of 1000). Images are
    quantised by io_utils.to_uint8, as their saved PNGs. Samples holding NaN or inf give NaN for every metric.

  Raises:
    ConfigError: bad eval.* fields, a missing Inception weights file, or
      fewer than 2 samples.
  """
  check_config(config)
  samples = np.asarray(samples, np.float32)
  if len(samples) * jax.process_count() < 2:
    raise ConfigError(f'sample metrics need at least 2 samples, got {len(samples)}; '
                      'raise eval.num_samples')
  e = config.eval
  digits = config.data.dataset == 'digits'
  keys = (('digits_fd', 'digits_kid', 'digits_kid_std', 'digits_is', 'digits_is_std')
          if digits else ('sliced_wasserstein', 'mmd') if config.data.dataset in datasets.TOYS
          else ('fid', 'kid', 'kid_std', 'inception_score', 'inception_score_std'))
  if not _all_finite(samples):
    # A diverged checkpoint should not end an eval over many checkpoints.
    logging.warning('samples hold NaN or inf; their sample-quality metrics are NaN')
    return dict.fromkeys(keys, float('nan'))
  if config.data.dataset in datasets.TOYS:
    return _toy_quality(config, samples)
  # Scored as the 8-bit images they would be saved as (pytorch-fid scores PNGs).
  samples = io_utils.to_uint8(samples) / np.float32(255.)
  extractor = get_extractor(config)
  ref = reference_stats(config)
  feats, logits = compute_features(extractor, _local_batches(samples, e.feature_batch_size),
                                   parallel.make_mesh())
  return features_quality(config, feats, logits, ref, extractor)


def features_quality(config: ml_collections.ConfigDict, feats: np.ndarray, logits: np.ndarray,
                     ref: Reference, extractor: Extractor) -> dict[str, float | None]:
  """FD, KID and IS of sample features [N, F] and logits [N, K] against `ref`.

  KID needs the reference's features: with a moments-only reference (pytorch-fid's
  mu/sigma) it is None. IS is over `eval.is_splits` splits in sample order.
  Keys are prefixed 'digits_' for digits (see `sample_quality`).
  """
  e = config.eval
  if feats.shape[1] != ref.mu.shape[0]:
    raise ConfigError(f'the reference statistics have {ref.mu.shape[0]}-d features, the '
                      f'feature network {extractor.name} gives {feats.shape[1]}-d; use '
                      f'statistics made with the same network (--mode fid_stats)')
  fd = frechet_distance(*feature_stats(feats), ref.mu, ref.cov)
  kid = kid_std = None
  if ref.features is not None:
    kid, kid_std = kernel_inception_distance(feats, ref.features, e.kid_num_subsets,
                                             e.kid_subset_size, seed=config.seed)
  score, score_std = inception_score(logits, e.is_splits)
  if config.data.dataset == 'digits':
    return {'digits_fd': fd, 'digits_kid': kid, 'digits_kid_std': kid_std,
            'digits_is': score, 'digits_is_std': score_std, **extractor.info}
  return {'fid': fd, 'kid': kid, 'kid_std': kid_std, 'inception_score': score,
          'inception_score_std': score_std}


def _all_finite(x: np.ndarray) -> bool:
  """Whether every process's samples are finite (all processes take the same branch)."""
  ok = np.array([np.isfinite(x).all()])
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    ok = multihost_utils.process_allgather(ok)
  return bool(np.all(ok))


def _toy_quality(config, samples: np.ndarray) -> dict[str, float]:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
    samples = np.asarray(multihost_utils.process_allgather(samples, tiled=True))
  ref = _toy_reference(config)
  rng = np.random.default_rng(config.seed)
  pool = np.concatenate([samples[rng.choice(len(samples), min(len(samples), 500), False)],
                         ref[rng.choice(len(ref), 500, False)]])
  d = np.sqrt(((pool[:, None] - pool[None]) ** 2).sum(-1))
  bandwidth = float(np.median(d[np.triu_indices(len(pool), 1)]))
  mmd, _ = subset_mmd2(samples, ref, rbf_kernel(bandwidth), 10, 1000, seed=config.seed)
  return {'sliced_wasserstein': sliced_wasserstein(samples, ref, order=2, seed=config.seed),
          'mmd': mmd}


_TOY_REFERENCES: dict[tuple, np.ndarray] = {}


def _toy_reference(config) -> np.ndarray:
  """The toy's fixed held-out test set [TOY_HELDOUT_SIZE, D], built once."""
  d = config.data
  key = (d.dataset, d.dim, config.seed)
  if key not in _TOY_REFERENCES:
    ds = datasets.get_dataset(config, 'test', process_index=0, process_count=1)
    _TOY_REFERENCES[key] = np.concatenate(
        [x[m] for x, m in ds.iterate(datasets.TOY_HELDOUT_SIZE)])
  return _TOY_REFERENCES[key]
