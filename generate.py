"""`--mode sample`: load the newest checkpoint's EMA params and write samples.

Writes workdir/samples/<name>.{png,npz,json}. The JSON records NFE, wall time
and the sampler config.
"""
from __future__ import annotations

import os
import time

import jax
import ml_collections
from absl import logging

import checkpointing
import datasets
import io_utils
import optim
import parallel
import sde_lib
import train
from models import create_model


def load_ema_params(config, workdir: str, model, data_shape, mesh):
  """EMA params of the newest readable checkpoint in workdir (CheckpointError if none).

  ConfigError if workdir is an import whose required model options `config` lacks
  (checkpointing.check_import_record); sample, likelihood, inpaint, colorize and
  dmcmc all restore through here.
  """
  checkpointing.check_import_record(config, workdir)
  ckpt = checkpointing.Checkpointer(workdir, create=False)
  abstract = jax.eval_shape(
      lambda: train.init_state(config, model, optim.get_optimizer(config), data_shape, mesh))
  state = ckpt.restore(checkpointing.abstract_like(abstract, parallel.replicated(mesh)))
  ckpt.close()
  return state.ema_params, int(state.step)


def sample(config: ml_collections.ConfigDict, workdir: str, name: str | None = None) -> dict:
  """Draws `config.sampling.batch_size` samples and writes them under workdir/samples.

  With `sampling.classifier_workdir` set the samples are class-conditional
  (guidance.conditional_sample).
  """
  if config.sampling.get('classifier_workdir'):
    import guidance  # pylint: disable=g-import-not-at-top
    return guidance.conditional_sample(config, workdir, name)
  sde, _ = sde_lib.get_sde(config)
  model = create_model(config)
  ds = datasets.get_dataset(config, 'train')
  mesh = parallel.make_mesh()
  sampler = train.make_snapshot_sampler(config, sde, model, mesh, ds.data_shape)
  params, step = load_ema_params(config, workdir, model, ds.data_shape, mesh)
  tic = time.time()
  x, nfe = sampler(jax.random.PRNGKey(config.seed), params)
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
