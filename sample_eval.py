"""The papers' sample-quality protocol of `--mode eval`, resumable shard by shard.

What makes FID reproduce (and what breaks it in score_sde's successors):

- Sample i uses the key fold_in(PRNGKey(config.seed), i). The sampler is run on
  a batch of one and vmapped over the keys, so sample i is the same whatever
  the batch size, device count or process count (up to float rounding of a
  differently batched network). In particular Langevin correctors take the
  signal-to-noise step size from each sample's own norms, where score_sde
  averaged the norms over the batch (which ties a sample to its batch-mates).
- Samples are quantised by `io_utils.to_uint8`, the function that writes every
  PNG here, before they reach the feature network: the network scores exactly
  the images one would save (score_sde truncated, `astype(np.uint8)`, which
  darkens every pixel by half a level on average).
- Samples 0..N-1 are cut into shards of `sampling.batch_size`; shard k holds
  samples [k B, min((k + 1) B, N)). The last shard samples a whole batch and
  keeps its first N - k B rows: nothing is dropped and nothing counted twice.
- Each finished shard is written as workdir/eval/ckpt_<n>_shards/shard_<k>.npz
  (its uint8 samples, features and logits, NFE and seconds, and the settings it
  was made with). A rerun after preemption reads the shards whose settings
  match and computes only the missing ones, like `--mode likelihood`'s progress
  file. The workdir must be visible to every process.

Feature networks are those of `metrics.py`: the FID Inception-v3 (pool3, 1008
logits), or for digits the repo's digits classifier. The reference statistics
are `eval.stats_path` (a file of `fid_stats.py`, score_sde's `pool_3` or
pytorch-fid's `mu`/`sigma`) or else the split `eval.stats_split`.
"""
from __future__ import annotations

import json
import math
import os
import time
import zipfile
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

import datasets
import io_utils
import parallel
import sampling
import sde_lib
from models import utils as mutils

GRID_SIZE = 64   # samples in the PNG grid of every checkpoint


def sample_keys(seed: int, first: int, count: int) -> np.ndarray:
  """Keys of samples first..first+count-1: fold_in(PRNGKey(seed), i); uint32 [count, 2]."""
  base = jax.random.PRNGKey(seed)
  idx = jnp.arange(first, first + count, dtype=jnp.uint32)
  return np.asarray(jax.vmap(lambda i: jax.random.fold_in(base, i))(idx))


def make_indexed_sampler(config: ml_collections.ConfigDict, sde: sde_lib.SDE, model, mesh,
                         data_shape) -> Callable:
  """A jitted `sample(params, keys [B, 2]) -> (x [B, ...], nfe [B])`: one sample per key.

  The config's sampler (`sampling.get_sampler`) is built for a batch of one and
  vmapped over the keys; the batch is sharded over the mesh's 'data' axis.
  """
  sampler, _ = sampling.get_sampler(config, sde, (1,) + tuple(data_shape))

  def one(params, key):
    x, nfe = sampler(key, mutils.score_fn_from_config(config, sde, model, params))
    return x[0], jnp.asarray(nfe, jnp.int32)

  rep, data = parallel.replicated(mesh), parallel.data_sharding(mesh)
  return jax.jit(jax.vmap(one, in_axes=(None, 0)), in_shardings=(rep, data),
                 out_shardings=(data, data))


def shard_settings(config, step: int, feature_network: str | None) -> dict[str, Any]:
  """What a stored shard must match to be reused."""
  d = config.data
  return {'checkpoint_step': int(step), 'seed': int(config.seed),
          'shard_size': int(config.sampling.batch_size),
          'sampler': json.loads(json.dumps(config.sampling.to_dict(), default=str)),
          'dataset': d.dataset, 'image_size': int(d.get('image_size', 0) or 0),
          'feature_network': feature_network}


def _shard_path(shard_dir: str, k: int) -> str:
  return os.path.join(shard_dir, f'shard_{k:05d}.npz')


def load_shard(path: str, settings: dict, first: int, count: int) -> dict | None:
  """The shard at `path` if it is whole and was made with `settings` for those rows."""
  try:
    with np.load(path) as f:
      shard = {k: f[k] for k in f.files}
    ok = (json.loads(str(shard['settings'])) == settings and int(shard['first']) == first
          and int(shard['count']) == count and len(shard['samples']) == count)
  except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):   # torn or foreign file: recompute it
    return None
  return shard if ok else None


def _save_shard(path: str, **arrays) -> None:
  if not io_utils.is_writer():
    return
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + '.tmp', 'wb') as f:   # a file object: np.savez would append '.npz'
    np.savez(f, **arrays)
  os.replace(path + '.tmp', path)        # atomic: a preempted write leaves no shard


def run_shards(config, params, *, sampler: Callable, mesh, step: int, shard_dir: str,
               inverse_scaler, extractor=None) -> dict[str, np.ndarray | float]:
  """Samples 0..eval.num_samples-1 shard by shard, reusing the finished shards.

  Args:
    params: replicated network params (EMA).
    sampler: `make_indexed_sampler`'s function.
    step: the checkpoint's step (part of the shard settings).
    shard_dir: where the shards live.
    inverse_scaler: model space -> data space ([0, 1] for images).
    extractor: the feature network (metrics.Extractor) for images; None for toys.

  Returns:
    {'samples': uint8 [N, H, W, C] for images (float32 [N, D] for toys),
     'features', 'logits' (images), 'nfe' [N] per sample, 'sampling_seconds' and
     'feature_seconds' summed over all shards, 'shards_reused'}.
  """
  import metrics  # pylint: disable=g-import-not-at-top  (Inception etc. only when sampling)
  n, b = config.eval.num_samples, config.sampling.batch_size
  num = math.ceil(n / b)
  settings = shard_settings(config, step, extractor.name if extractor else None)
  shards = [load_shard(_shard_path(shard_dir, k), settings, k * b, min(b, n - k * b))
            for k in range(num)]
  reused = sum(s is not None for s in shards)
  if reused:
    logging.info('sampling: resuming, %d of %d shards already in %s', reused, num, shard_dir)
  todo, done_now, tic = num - reused, 0, time.time()
  for k in range(num):
    if shards[k] is not None:
      continue
    first, count = k * b, min(b, n - k * b)
    start = time.time()
    keys = parallel.from_host(sample_keys(config.seed, first, b), parallel.data_sharding(mesh))
    x, nfe = sampler(params, keys)
    x, nfe = parallel.to_host(x)[:count], parallel.to_host(nfe)[:count]
    x = np.asarray(inverse_scaler(x), np.float32)
    sampled = time.time()
    # A diverged sample would quantise to arbitrary bytes: counted, so its metrics are NaN.
    bad = int(np.sum(~np.isfinite(x.reshape(count, -1)).all(1)))
    shard = {'first': first, 'count': count, 'nfe': nfe, 'settings': json.dumps(settings),
             'sampling_seconds': sampled - start, 'num_nonfinite': bad}
    if extractor is None:
      shard['samples'] = x
    else:
      shard['samples'] = io_utils.to_uint8(x)
      shard['features'], shard['logits'] = metrics.compute_features(
          extractor, metrics.ordered_batches(shard['samples'] / np.float32(255.),
                                             config.eval.feature_batch_size), mesh)
    shard['feature_seconds'] = time.time() - sampled
    _save_shard(_shard_path(shard_dir, k), **shard)
    shards[k] = shard
    done_now += 1
    eta = (time.time() - tic) / done_now * (todo - done_now)
    logging.info('sampling: shard %d/%d (%d samples, %.1f s sampling + %.1f s features, '
                 'mean NFE %.0f)  eta %s', k + 1, num, count, shard['sampling_seconds'],
                 shard['feature_seconds'], float(np.mean(nfe)), io_utils.fmt_eta(eta))
  out = {key: np.concatenate([np.asarray(s[key]) for s in shards])
         for key in ('samples', 'nfe') + (('features', 'logits') if extractor else ())}
  for key in ('sampling_seconds', 'feature_seconds', 'num_nonfinite'):
    out[key] = float(sum(float(s[key]) for s in shards))
  out['shards_reused'] = reused
  return out


def sample_quality_protocol(config, params, *, sampler: Callable, mesh, step: int,
                            eval_dir: str, ckpt_n: int) -> dict[str, Any]:
  """eval.num_samples samples of checkpoint `ckpt_n` by the protocol above, scored.

  Writes eval_dir/ckpt_<n>_samples.png (the first 64 samples) and the shards
  under eval_dir/ckpt_<n>_shards/.

  Returns:
    The metrics (metrics.features_quality's keys, or the toys' sliced
    Wasserstein and MMD), the reference's provenance, and the protocol's
    facts: num_samples, seed, sample_keys, sampler, nfe_per_sample, seconds.
  """
  import fid_stats  # pylint: disable=g-import-not-at-top
  import metrics  # pylint: disable=g-import-not-at-top
  is_image = config.data.dataset not in datasets.TOYS
  extractor = metrics.get_extractor(config) if is_image else None
  tic = time.time()
  res = run_shards(config, params, sampler=sampler, mesh=mesh, step=step,
                   shard_dir=os.path.join(eval_dir, f'ckpt_{ckpt_n}_shards'),
                   inverse_scaler=datasets.get_data_inverse_scaler(config), extractor=extractor)
  png = os.path.join(eval_dir, f'ckpt_{ckpt_n}_samples.png')
  if is_image and res['num_nonfinite']:
    # A diverged checkpoint should not end an eval over many checkpoints.
    logging.warning('%d samples hold NaN or inf; their sample-quality metrics are NaN',
                    res['num_nonfinite'])
    keys = ('digits_fd', 'digits_kid', 'digits_is') if config.data.dataset == 'digits' else (
        'fid', 'kid', 'inception_score')
    quality = dict.fromkeys(keys, float('nan'))
  elif is_image:
    first = res['samples'][:GRID_SIZE]
    io_utils.save_image_grid(png, first / np.float32(255.), upscale=max(1, 64 // first.shape[1]))
    ref = fid_stats.reference_for_eval(config, extractor)
    quality = metrics.features_quality(config, res['features'], res['logits'], ref, extractor)
    quality['reference'] = ref.provenance
  else:
    io_utils.save_scatter(png, res['samples'])
    # metrics.sample_quality takes each process's own share and gathers them itself.
    mine = res['samples'][parallel.local_rows(len(res['samples']))]
    quality = dict(metrics.sample_quality(config, mine))
  return {**quality, 'num_samples': int(len(res['nfe'])), 'seed': int(config.seed),
          'sample_keys': 'fold_in(PRNGKey(seed), i) for sample i = 0..num_samples-1',
          'sampler': config.sampling.to_dict(), 'nfe_per_sample': float(np.mean(res['nfe'])),
          'sampling_seconds': res['sampling_seconds'], 'feature_seconds': res['feature_seconds'],
          'num_nonfinite': int(res['num_nonfinite']), 'shards_reused': res['shards_reused'],
          'protocol_wall_seconds': time.time() - tic}
