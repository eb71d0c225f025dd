"""`--mode dmcmc`: DLG chains with a trained score model and noise-level classifier.

Reads the EMA params of `dmcmc.score_workdir` (this config's model.*) and of
`dmcmc.classifier_workdir` (model.name = dmcmc.classifier_model), runs
`dmcmc.n_chains` persistent chains for num_outputs / n_chains blocks of n_skip DLG
steps, finishes each block's lowest-sigma states with `dmcmc.integrator`, and writes
workdir/dmcmc/:

  samples.{png,npz,json}  outputs; the JSON has the NFE per output (DLG + integrator
                          + Tweedie; initialisation separately), the sigma_n histogram
                          and wall times
  sigma_n.npz, sigma_n.png  each output's start level
  trajectory.png          2-D toys: the (x, sigma) paths of the first n_track chains
"""
from __future__ import annotations

import copy
import os
import time

import jax
import numpy as np
from absl import logging

import datasets
import io_utils
import parallel
import restore
import sde_lib
from dmcmc import classifier, dlg, integrators
from errors import ConfigError, lookup
from models import utils as mutils


def classifier_config(config):
  """The classifier's training config as seen from a run config (same dmcmc.*, optim.*)."""
  c = copy.deepcopy(config)
  c.model.name = config.dmcmc.classifier_model
  c.training.objective = 'noise_classifier'
  return c


def _finisher_options(d) -> dict:
  return {'s_churn': d.s_churn, 'rho': d.rho, 'rtol': d.rtol, 'atol': d.atol,
          'method': d.ode_method}


def check_config(config, sde: sde_lib.SDE) -> None:
  """Every dmcmc.* check, before anything touches the workdir."""
  d = config.dmcmc
  for field in ('score_workdir', 'classifier_workdir'):
    if not d[field]:
      raise ConfigError(f'dmcmc.{field} is empty; set it to the workdir of a --mode train run')
  lookup(dlg.SIGMA_UPDATES, d.sigma_update, 'dmcmc.sigma_update')
  lookup(dlg.ETA_SCALINGS, d.eta_scaling, 'dmcmc.eta_scaling')
  integrators.get_finisher(d.integrator, sde, None, d.sigma_min, d.integrator_steps,
                           **_finisher_options(d))
  if d.init_integrator:
    integrators.get_finisher(d.init_integrator, sde, None, d.sigma_min,
                             d.init_integrator_steps, field='dmcmc.init_integrator',
                             **_finisher_options(d))
  if d.n_chains < 1 or d.num_outputs < 1 or d.num_outputs % d.n_chains:
    raise ConfigError(f'dmcmc.num_outputs={d.num_outputs} must be a positive multiple of '
                      f'dmcmc.n_chains={d.n_chains}')
  parallel.check_batch_size(d.n_chains, 'dmcmc.n_chains')
  if d.n_skip < 1 or d.warmup_steps < 0:
    raise ConfigError(f'dmcmc.n_skip={d.n_skip} must be >= 1 and dmcmc.warmup_steps='
                      f'{d.warmup_steps} >= 0')
  if d.eta <= 0 or d.eta0 < 0 or d.init_noise < 0:
    raise ConfigError('dmcmc.eta must be > 0, dmcmc.eta0 and dmcmc.init_noise >= 0')
  if config.training.objective != 'score':
    raise ConfigError("--mode dmcmc takes the score model's config (training.objective="
                      f"'score'), not {config.training.objective!r}")


def dmcmc_mode(config, workdir: str) -> dict:
  """Runs DMCMC as configured and writes workdir/dmcmc/ (see the module docstring)."""
  # ------------------------------------------------------------------ checks and models
  sde, _ = sde_lib.get_sde(config)
  check_config(config, sde)
  d = config.dmcmc
  sigmas = classifier.ladder_from_config(config)
  classifier.check_ladder(sde, sigmas)
  ds = datasets.get_dataset(config, 'train')
  mesh = parallel.make_mesh()
  score = restore.restore_run(config, d.score_workdir, shape=ds.data_shape, mesh=mesh)
  clf = restore.restore_run(classifier_config(config), d.classifier_workdir,
                            shape=ds.data_shape, mesh=mesh)
  params, step, cparams, cstep = score.ema_params, score.step, clf.ema_params, clf.step
  logging.info('score model step %d from %s; classifier step %d from %s', step,
               d.score_workdir, cstep, d.classifier_workdir)
  init, block = chain_programs(config, sde, score.model, clf.model, sigmas, ds.data_shape, mesh)

  # ------------------------------------------------------------------ run
  key = jax.random.PRNGKey(config.seed)
  tic = time.time()
  chains, init_cost = init(jax.random.fold_in(key, 0), params, cparams)
  init_cost = jax.tree.map(int, init_cost)
  jax.block_until_ready(chains)
  init_seconds = time.time() - tic
  logging.info('initialised %d chains in %.1fs (%s)', d.n_chains, init_seconds, init_cost)
  num_blocks = d.num_outputs // d.n_chains
  outs, levels, trajs, nfes = [], [], [], []
  tic = time.time()
  for b in range(num_blocks):
    chains, x0, k, traj, nfe = block(jax.random.fold_in(key, b + 1), chains, params, cparams)
    outs.append(parallel.to_host(x0))
    levels.append(parallel.to_host(k))
    trajs.append(jax.device_get(traj))
    nfes.append(int(nfe))
    if (b + 1) % max(1, num_blocks // 10) == 0 or b + 1 == num_blocks:
      logging.info('block %d/%d  mean sigma_n %.4f  %.1fs', b + 1, num_blocks,
                   float(np.mean(np.asarray(sigmas)[levels[-1]])), time.time() - tic)
  sample_seconds = time.time() - tic

  # ------------------------------------------------------------------ write
  x = np.concatenate(outs)
  k = np.concatenate(levels)
  sigma_n = np.asarray(sigmas)[k]
  result = _write(config, workdir, x, k, sigma_n, trajs, nfes, init_cost, init_seconds,
                  sample_seconds, ds, step, cstep, np.asarray(sigmas))
  logging.info('wrote %d DMCMC samples (%.1f NFE each) to %s', len(x),
               result['nfe_per_output']['total'], result['paths']['png'])
  return result


def chain_programs(config, sde: sde_lib.SDE, model, cmodel, sigmas: jax.Array,
                   data_shape: tuple[int, ...], mesh):
  """The jitted chain programs, data-parallel: chains sharded P('data'), networks P().

  Args:
    model, cmodel: the score network and the noise-level classifier network.
    sigmas: the ladder [L].
    data_shape: per-example shape; the chains are [dmcmc.n_chains, *data_shape].
    mesh: the one mesh (parallel.make_mesh); n_chains must divide over its devices.

  Returns:
    init(key, params, cparams) -> (chains, cost per chain) and
    block(key, chains, params, cparams) -> (chains, x0 [C, ...], level k [C],
    trajectory of the first n_track chains, integrator NFE). Every per-chain array
    (chains, x0, k) is split over 'data'; costs and trajectories are replicated.
  """
  d = config.dmcmc
  shape = (d.n_chains,) + tuple(data_shape)
  n_track = min(d.n_track, d.n_chains) if len(data_shape) == 1 else 0

  def parts(params, cparams):
    score_fn = mutils.score_fn_from_config(config, sde, model, params)
    logits_fn = classifier.logits_fn_from_model(cmodel, cparams)
    step = dlg.make_step(dlg.ve_score_fn(sde, score_fn), logits_fn, sigmas,
                         sigma_update=d.sigma_update, eta_scaling=d.eta_scaling)
    finish = integrators.get_finisher(d.integrator, sde, score_fn, d.sigma_min,
                                      d.integrator_steps, **_finisher_options(d))
    return score_fn, logits_fn, step, finish

  def init(key, params, cparams):
    score_fn, logits_fn, step, _ = parts(params, cparams)
    finisher = None
    if d.init_integrator:
      finisher = integrators.get_finisher(d.init_integrator, sde, score_fn, d.sigma_min,
                                          d.init_integrator_steps, **_finisher_options(d))
    return dlg.init_chains(key, step, logits_fn, sigmas, shape, finisher=finisher,
                           init_noise=d.init_noise, eta0=d.eta0, warmup_steps=d.warmup_steps)

  def block(key, chains, params, cparams):
    _, _, step, finish = parts(params, cparams)
    b_key, f_key = jax.random.split(key)
    chains, best, traj = dlg.run_block(step, b_key, chains, d.eta, d.n_skip,
                                       include_start=d.include_start, n_track=n_track)
    x0, nfe = finish(f_key, best.x, sigmas[best.k])
    return chains, x0, best.k, traj, nfe

  rep, batch = parallel.replicated(mesh), parallel.data_sharding(mesh)
  return (jax.jit(init, in_shardings=(rep, rep, rep), out_shardings=(batch, rep)),
          jax.jit(block, in_shardings=(rep, batch, rep, rep),
                  out_shardings=(batch, batch, batch, rep, rep)))


def _write(config, workdir, x, k, sigma_n, trajs, nfes, init_cost, init_seconds,
           sample_seconds, ds, step, cstep, sigmas) -> dict:
  d = config.dmcmc
  out_dir = os.path.join(workdir, 'dmcmc')
  integrator_nfe = float(np.mean(nfes))
  per_output = {'dlg_score': d.n_skip, 'integrator': integrator_nfe,
                'tweedie': integrators.TWEEDIE_NFE,
                'total': d.n_skip + integrator_nfe + integrators.TWEEDIE_NFE,
                'dlg_classifier_calls': d.n_skip}
  counts, edges = np.histogram(np.log10(sigma_n), bins=30,
                               range=(np.log10(sigmas[0]), np.log10(sigmas[-1])))
  meta = {
      'num_samples': int(len(x)), 'score_checkpoint_step': step,
      'classifier_checkpoint_step': cstep,
      'nfe_per_output': per_output,
      'init_per_chain': {**init_cost, 'amortised_score_nfe_per_output':
                         init_cost['score_nfe'] * d.n_chains / len(x)},
      'integrator_nfe_per_block': nfes,
      'sigma_n_histogram': {'log10_bin_edges': edges.tolist(), 'counts': counts.tolist()},
      'sigma_n_mean': float(sigma_n.mean()), 'sigma_n_median': float(np.median(sigma_n)),
      'seconds': {'init': init_seconds, 'sampling': sample_seconds,
                  'total': init_seconds + sample_seconds},
      'dmcmc': d.to_dict(),
  }
  reference = None if ds.is_image else ds.batch(0, len(x))
  paths = io_utils.save_samples(os.path.join(out_dir, 'samples'), x, is_image=ds.is_image,
                                inverse_scaler=datasets.get_data_inverse_scaler(config),
                                reference=reference, meta=meta, config=config)
  if io_utils.is_writer():
    np.savez_compressed(os.path.join(out_dir, 'sigma_n.npz'), sigma_n=sigma_n, level=k)
    paths['sigma_png'] = _plot_sigma_hist(os.path.join(out_dir, 'sigma_n.png'), sigma_n, edges)
    if trajs and trajs[0][0].shape[1] > 0:
      tx = np.concatenate([t[0] for t in trajs])       # [steps, n_track, 2]
      tk = np.concatenate([t[1] for t in trajs])       # [steps, n_track]
      paths['trajectory_png'] = _plot_trajectory(os.path.join(out_dir, 'trajectory.png'),
                                                 tx, sigmas[tk], d.n_skip)
  return {**meta, 'paths': paths}


def _pyplot():
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  return plt


def _plot_sigma_hist(path, sigma_n, log_edges) -> str:
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(5, 3.5))
  ax.hist(sigma_n, bins=10 ** log_edges)
  ax.set_xscale('log')
  ax.set_xlabel(r'$\sigma_n$ of each output')
  ax.set_ylabel('outputs')
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def _plot_trajectory(path, xs, sigma, n_skip) -> str:
  """Left: the chains' paths in the plane; right: their sigma against DLG step."""
  plt = _pyplot()
  fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.5))
  for c in range(xs.shape[1]):
    a.plot(xs[:, c, 0], xs[:, c, 1], lw=0.5, alpha=0.7)
    b.plot(np.arange(1, len(sigma) + 1), sigma[:, c], lw=0.6, alpha=0.7)
  a.set_title('x (VE view), one line per chain')
  a.set_aspect('equal')
  b.set_yscale('log')
  b.set_xlabel(f'DLG step ({n_skip} per output block)')
  b.set_ylabel(r'$\sigma$')
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path
