"""`--mode sample`: restore the newest checkpoint's EMA params and write samples.

Writes workdir/samples/<name>.{png,npz,json}. The JSON records NFE, wall time
and the sampler config.
"""
from __future__ import annotations

import os
import time

import jax
import ml_collections
from absl import logging

import datasets
import io_utils
import parallel
import restore
import sampling
from models import utils as mutils


def make_snapshot_sampler(config, sde, model, mesh, data_shape):
  """A jitted `sample(key, params) -> (x, nfe)` with the config's sampler, x batch-sharded.

  Used by `sample` and by training's snapshots (train.py), with any params.
  """
  shape = (config.sampling.batch_size,) + tuple(data_shape)
  parallel.check_batch_size(shape[0], 'sampling.batch_size')
  sampler, _ = sampling.get_sampler(config, sde, shape)

  def sample(key, params):
    return sampler(key, mutils.score_fn_from_config(config, sde, model, params))

  compiled = jax.jit(sample, out_shardings=(parallel.data_sharding(mesh), parallel.replicated(mesh)))

  def run(key, params):
    x, nfe = compiled(key, params)
    return x, int(nfe)   # static for PC samplers; what the adaptive solver used for 'ode'

  return run


def sample(config: ml_collections.ConfigDict, workdir: str, name: str | None = None) -> dict:
  """Draws `config.sampling.batch_size` samples and writes them under workdir/samples.

  With `sampling.classifier_workdir` set the samples are class-conditional
  (guidance.conditional_sample).
  """
  if config.sampling.get('classifier_workdir'):
    import guidance  # pylint: disable=g-import-not-at-top
    return guidance.conditional_sample(config, workdir, name)
  ds = datasets.get_dataset(config, 'train')
  run = restore.restore_run(config, workdir)
  sampler = make_snapshot_sampler(config, run.sde, run.model, run.mesh, run.data_shape)
  step = run.step
  tic = time.time()
  x, nfe = sampler(jax.random.PRNGKey(config.seed), run.ema_params)
  x = parallel.to_host(x)
  seconds = time.time() - tic
  s = config.sampling
  kind = f'{s.predictor}_{s.corrector}' if s.method == 'pc' else s.method
  name = name or f'{kind}_ckpt{step}'
  reference = None if ds.is_image else ds.batch(0, len(x) * jax.process_count())
  meta = {'checkpoint_step': step, 'nfe': nfe, 'seconds': seconds, 'num_samples': len(x),
          'sampler': config.sampling.to_dict()}
  paths = io_utils.save_samples(os.path.join(workdir, 'samples', name), x,
                                is_image=ds.is_image,
                                inverse_scaler=datasets.get_data_inverse_scaler(config),
                                reference=reference, meta=meta, config=config)
  logging.info('Wrote %d samples (%d NFE, %.1fs) to %s', len(x), nfe, seconds, paths['png'])
  return {**meta, 'paths': paths}
