"""`--mode dsb`: n_ipf IPF iterations, checkpointed every half-iteration, resumable.

Writes under workdir/dsb/:
  checkpoints/<h>/              Orbax: both networks and their EMAs after half-iteration h
  metrics.json                  per half: losses, seconds; per iteration: sliced Wasserstein
                                distances to held-out data, seconds (plus run metadata)
  samples/iter_<n>.{png,npz}    after iteration n, dsb.num_samples of each: `samples` (backward
                                network from held-out prior draws: true draws, the last step's
                                noise included), `samples_mean` (that last step's mean), `forward`
                                and `forward_mean` (forward network from held-out data); the PNG
                                shows samples_mean for images
  samples/iter_<n>_trajectories.png, iter_<n>_density.png (2-D) or a trajectory grid (images)

A rerun with the same workdir resumes after the last checkpointed half; every random draw
of half h is a function of (seed, h), so the result equals that of an uninterrupted run.
"""
from __future__ import annotations

import json
import os
import time

import jax
import numpy as np
from absl import logging

import checkpointing
import datasets
import io_utils
import parallel
from dsb import data as dsb_data
from dsb import ipf as ipf_lib
from dsb import plots
from distances import sliced_wasserstein
from errors import ConfigError


def prior_moments(config, data, prior) -> tuple[np.ndarray, np.ndarray]:
  """The reference's N(m, v): from dsb.prior_mean/var, or estimated (dsb.estimate_prior).

  Estimated from the prior dataset when there is one (transfer), else from the data: the
  mean per dimension and a single variance, the average over dimensions, because some
  image pixels (digit corners) never vary and a per-pixel v = 0 would make the OU drift
  (x - m) / v blow up.
  """
  d = config.dsb
  if not d.estimate_prior:
    return np.float32(d.prior_mean), np.float32(d.prior_var)
  source = prior if d.prior != 'gaussian' else data
  # Every process gathers the whole batch, so all estimate the same moments.
  x = parallel.to_host(parallel.global_batch(source.batch(0, d.estimate_size),
                                             parallel.make_mesh())).astype(np.float64)
  return x.mean(0).astype(np.float32), np.float32(x.var(0).mean())


def _load_metrics(path: str, last_half: int) -> dict:
  """The metrics of halves <= last_half from a previous (interrupted) run, if any."""
  empty = {'halves': [], 'iterations': []}
  if last_half == 0 or not os.path.exists(path):
    return empty
  with open(path) as f:
    old = json.load(f)
  return {'halves': [r for r in old.get('halves', []) if r['half'] <= last_half],
          'iterations': [r for r in old.get('iterations', []) if 2 * r['iteration'] <= last_half]}


def dsb_mode(config, workdir: str, stop_after: int | None = None) -> dict:
  """Runs (or resumes) DSB for config.dsb.n_ipf iterations; returns the final nets.

  Args:
    stop_after: return after this half-iteration (a test hook that stands in for an
      interruption; the checkpoint of that half is written first).
  """
  # ------------------------------------------------------------------ setup (no writes)
  d = config.dsb
  ipf_lib.check_config(config)
  data, prior = dsb_data.get_endpoints(config)
  m, v = prior_moments(config, data, prior)
  if d.prior == 'gaussian':   # the prior is the reference's N(m, v), estimated or not
    prior = dsb_data.GaussianEndpoint(data.data_shape, m, v, config.seed, 'prior')
  mesh = parallel.make_mesh()
  ipf = ipf_lib.IPF(config, data.data_shape, m, v, mesh)
  rep, shard = parallel.replicated(mesh), parallel.data_sharding(mesh)
  is_2d = tuple(data.data_shape) == (2,)
  inverse_scaler = datasets.get_data_inverse_scaler(config)
  refreshes = -(-d.num_iter // d.cache_refresh)
  out_dir = os.path.join(workdir, 'dsb')
  metrics_path = os.path.join(out_dir, 'metrics.json')
  logging.info('DSB: %s -> %s, shape %s, N = %d, sum gamma = %.4f, %s reference, network %s',
               config.data.dataset, d.prior, tuple(data.data_shape), d.num_steps,
               ipf.gammas.sum(), d.reference, d.network)

  held_data = data.heldout(d.num_samples)
  held_prior = prior.heldout(d.num_samples)
  for name, held in ((config.data.dataset, held_data), (d.prior, held_prior)):
    if len(held) < d.num_samples:
      raise ConfigError(f'dsb.num_samples={d.num_samples} exceeds the {len(held)} held-out '
                        f'examples of {name!r}; lower it')

  # ------------------------------------------------------------------ state
  ckpt = checkpointing.Checkpointer(out_dir, max_to_keep=d.max_to_keep)
  base_key = jax.random.PRNGKey(config.seed)
  nets = ipf.init_nets(jax.random.fold_in(base_key, 0))     # replicated on the mesh
  done = ckpt.latest_step() or 0
  if done:
    nets = ckpt.restore(checkpointing.abstract_like(nets, rep))
    logging.info('Resumed DSB from %s after half-iteration %d', ckpt.directory, done)
  record = _load_metrics(metrics_path, done)
  n_params = sum(x.size for x in jax.tree.leaves(nets['forward']['params']))
  logging.info('%d parameters per direction', n_params)


  # ------------------------------------------------------------------ loop
  try:
    iter_tic = time.time()
    for h in range(done + 1, 2 * d.n_ipf + 1):
      tic = time.time()
      key = jax.random.fold_in(base_key, h)
      source = data if ipf_lib.half_direction(h) == 'backward' else prior
      start_batch = lambda r, s=source, h=h: parallel.global_batch(
          s.batch((h - 1) * refreshes + r, d.cache_size), mesh)
      nets, logged = ipf.run_half(h, nets, key, start_batch,
                                  init_key=jax.random.fold_in(key, 2**20))
      ckpt.save(h, nets, force=True)
      ckpt.wait()
      record['halves'].append({'half': h, 'iteration': (h + 1) // 2,
                               'direction': ipf_lib.half_direction(h), 'loss': logged[-1],
                               'losses': logged, 'seconds': time.time() - tic})
      if h % 2 == 0:
        record['iterations'].append(_evaluate(config, ipf, nets, h // 2, held_data, held_prior,
                                              mesh, shard, out_dir, is_2d, inverse_scaler,
                                              record, time.time() - iter_tic))
        iter_tic = time.time()
      io_utils.write_json(metrics_path, {**record, 'gammas': ipf.gammas.tolist()}, config)
      if stop_after is not None and h >= stop_after:
        logging.info('Stopping after half-iteration %d (stop_after)', h)
        break
  finally:
    ckpt.close()
  return nets


def _evaluate(config, ipf, nets, n, held_data, held_prior, mesh, shard, out_dir, is_2d,
              inverse_scaler, record, seconds) -> dict:
  """Samples both ways after iteration n; writes pictures and returns the metrics."""
  d = config.dsb
  key = jax.random.fold_in(jax.random.PRNGKey(config.seed + 1), n)
  k1, k2 = jax.random.split(key)
  back = jax.tree.map(parallel.to_host,
                      ipf.sample(nets, parallel.from_host(held_prior, shard), k1))
  fwd = jax.tree.map(parallel.to_host,
                     ipf.push_forward(nets, parallel.from_host(held_data, shard), k2))
  losses = {r['direction']: r['loss'] for r in record['halves'] if r['iteration'] == n}
  # The sliced Wasserstein distances compare laws, so they take true draws (the last step's
  # noise included); the image grids show the last step's mean, as DSB's sampler does.
  result = {'iteration': n, 'loss_backward': losses.get('backward'),
            'loss_forward': losses.get('forward'),
            'sw_data': sliced_wasserstein(back.end, held_data, order=2,
                                          num_projections=d.sw_projections),
            'sw_prior': sliced_wasserstein(fwd.end, held_prior, order=2,
                                           num_projections=d.sw_projections),
            'seconds': seconds}
  logging.info('IPF iteration %d/%d: SW(samples, data) %.4f  SW(forward(data), prior) %.4f  '
               '%.1fs', n, d.n_ipf, result['sw_data'], result['sw_prior'], seconds)
  prefix = os.path.join(out_dir, 'samples', f'iter_{n}')
  if io_utils.is_writer():
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    np.savez_compressed(prefix + '.npz', samples=back.end, samples_mean=back.end_mean,
                        forward=fwd.end, forward_mean=fwd.end_mean)
    samples = back.end
    if is_2d:
      io_utils.save_scatter(prefix + '.png', samples, held_data, f'iteration {n}')
      plots.trajectories_2d(prefix + '_trajectories.png', back.traj,
                            f'backward chain, IPF iteration {n}')
      plots.density_2d(prefix + '_density.png', samples, held_data, f'iteration {n}')
    elif len(samples.shape) == 4:
      images = np.clip(inverse_scaler(back.end_mean[:64]), 0., 1.)
      io_utils.save_image_grid(prefix + '.png', images, upscale=max(1, 64 // samples.shape[1]))
      plots.trajectories_images(prefix + '_trajectories.png', back.traj, inverse_scaler)
    else:   # vectors of another dimension: the first two coordinates
      io_utils.save_scatter(prefix + '.png', samples[:, :2], held_data[:, :2], f'iteration {n}')
  return result
