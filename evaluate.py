"""`--mode likelihood` and `--mode eval`: bits/dim, test loss and sample quality.

`likelihood_mode` computes the bits/dim of the newest checkpoint's EMA params over
the split `eval.bpd_dataset`, `eval.num_repeats` times. `eval_mode` evaluates the
checkpoints `eval.begin_ckpt..eval.end_ckpt` (score_sde's checkpoint numbers: ckpt
n is the checkpoint at step n * training.snapshot_freq) and writes
workdir/eval/ckpt_<n>.json with the test loss, bits/dim and sample metrics.

Bits/dim follow score_sde's convention (`likelihood.bits_per_dim`): image data are
always dequantized for likelihoods, x = scaler((v + u) / L) with v the integer
level, L the number of levels (256 for 8-bit images, 17 for digits) and
u ~ U[0, 1)^D drawn afresh for every repeat, whether or not training used
`data.uniform_dequantization`; the offset log2(L / scale) is added. Toy data are
continuous: bits/dim is -log p(x) / (D ln 2) with no offset.

Randomness is a pure function of (config.seed, repeat r, batch b): batch b of
repeat r uses key fold_in(fold_in(PRNGKey(seed), r), b), split into
(dequantization key, Hutchinson probe key). Each finished (r, b) appends one line
to a progress file (per-image bits/dim, NFE, seconds), so a rerun skips the pairs
already done and reproduces the uninterrupted result exactly. The workdir must
be visible to every process (as the checkpoints are).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

import checkpointing
import datasets
import io_utils
import likelihood
import objectives
import parallel
import restore
import sample_eval
import sampling
import sde_lib
from errors import CheckpointError, ConfigError, lookup
from models import utils as mutils


def check_eval_config(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError for a bad eval.* field; touches nothing."""
  e = config.eval
  lookup(likelihood.PROBES, e.probe, 'eval.probe')
  lookup(sampling.SOLVERS, e.ode_method, 'eval.ode_method')
  if e.bpd_dataset not in datasets.SPLITS:
    raise ConfigError(f'eval.bpd_dataset={e.bpd_dataset!r} is unknown; valid: '
                      f'{", ".join(datasets.SPLITS)}')
  for field in ('num_repeats', 'batch_size'):
    if getattr(e, field) < 1:
      raise ConfigError(f'eval.{field}={getattr(e, field)} must be >= 1')
  if e.bpd_num_batches < 0:
    raise ConfigError(f'eval.bpd_num_batches={e.bpd_num_batches} must be >= 0 (0 = all)')
  for field in ('rtol', 'atol'):
    if not getattr(e, field) > 0:
      raise ConfigError(f'eval.{field}={getattr(e, field)} must be positive')
  if not 0 < e.eps < 1:
    raise ConfigError(f'eval.eps={e.eps} must be in (0, 1), e.g. 1e-5')
  parallel.check_batch_size(e.batch_size, 'eval.batch_size')


# ----------------------------------------------------------------------------- bits/dim


@dataclasses.dataclass(frozen=True)
class Quantization:
  """How model-space data relate to discrete data: x = scale * (v + u) / levels + shift.

  levels = 0 marks continuous (toy) data: no dequantization and no offset.
  """
  levels: int
  scale: float


def bpd_data(config: ml_collections.ConfigDict) -> tuple[datasets.Dataset, Quantization]:
  """The split `eval.bpd_dataset`, read without dequantization, and its quantization.

  The data come back at their quantized values v / (L - 1) (in model space); the
  dequantization noise is added on device per repeat by `make_bpd_fn`.
  """
  plain = copy.deepcopy(config)
  plain.data.uniform_dequantization = False
  ds = datasets.get_dataset(plain, config.eval.bpd_dataset)
  if not ds.is_image:
    return ds, Quantization(levels=0, scale=1.)
  deq = copy.deepcopy(config)
  deq.data.uniform_dequantization = True
  # datasets owns the level count (17 for digits, 256 for 8-bit TFDS images).
  levels = datasets.get_dataset(deq, config.eval.bpd_dataset).levels
  scaler = datasets.get_data_scaler(config)
  scale = float(scaler(np.float32(1.)) - scaler(np.float32(0.)))   # 2 if centred, else 1
  return ds, Quantization(levels=int(levels), scale=scale)


def make_bpd_fn(config, sde: sde_lib.SDE, model, mesh, quant: Quantization) -> Callable:
  """A jitted `bpd(params, key, x) -> (bpd [B], nfe)`: one whole PF-ODE solve on device.

  Args (of the returned function):
    params: network params, replicated.
    key: split into the dequantization key and the Hutchinson probe key.
    x: [B, ...] quantized data in model space, sharded over 'data'.
  """
  e = config.eval
  scaler = datasets.get_data_scaler(config)
  inverse_scaler = datasets.get_data_inverse_scaler(config)

  def bpd(params, key, x):
    deq_key, probe_key = jax.random.split(key)
    if quant.levels:
      u = jax.random.uniform(deq_key, x.shape, x.dtype)
      x = scaler(datasets.dequantize(inverse_scaler(x), u, quant.levels))
    score_fn = mutils.score_fn_from_config(config, sde, model, params)
    result = likelihood.log_likelihood(probe_key, score_fn, sde, x, eps=e.eps, rtol=e.rtol,
                                       atol=e.atol, method=e.ode_method, probe=e.probe)
    return likelihood.bits_per_dim(result.logp, x.shape, levels=quant.levels or 1,
                                   scale=quant.scale), result.nfe

  rep, data = parallel.replicated(mesh), parallel.data_sharding(mesh)
  return jax.jit(bpd, in_shardings=(rep, rep, data), out_shardings=(data, rep))


def batch_key(seed: int, repeat: int, batch: int) -> jax.Array:
  """The key of batch `batch` of repeat `repeat` (see the module docstring)."""
  return jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), repeat), batch)


def num_batches(config, ds: datasets.Dataset) -> int:
  """Batches of one pass (`Dataset.iterate`'s count, capped by eval.bpd_num_batches)."""
  n = ds.num_examples or datasets.TOY_HELDOUT_SIZE   # an infinite toy stream reads its fixed set
  per_process = math.ceil(n / jax.process_count())
  total = math.ceil(per_process / (config.eval.batch_size // jax.process_count()))
  cap = config.eval.bpd_num_batches
  return min(total, cap) if cap else total


def _settings(config, ckpt_step: int, quant: Quantization) -> dict[str, Any]:
  """What a progress record must match to be reused."""
  e = config.eval
  return {'checkpoint_step': ckpt_step, 'dataset': config.data.dataset, 'split': e.bpd_dataset,
          'batch_size': e.batch_size, 'eps': e.eps, 'rtol': e.rtol, 'atol': e.atol,
          'ode_method': e.ode_method, 'probe': e.probe, 'seed': config.seed,
          'levels': quant.levels, 'scale': quant.scale}


def load_progress(path: str, settings: dict) -> dict[tuple[int, int], dict]:
  """Finished (repeat, batch) records in `path` that match `settings`.

  A line cut short by an interruption is dropped, and the file is rewritten
  without it so that later appends start on a fresh line. The first record of a
  pair wins, so nothing is ever counted twice.
  """
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    text = f.read()
  records, good, bad, other = {}, [], 0, 0
  for line in text.splitlines():
    try:
      rec = json.loads(line)
      key = (int(rec['repeat']), int(rec['batch']))
    except (ValueError, KeyError, TypeError):
      bad += 1
      continue
    good.append(line)
    if rec.get('settings') != settings:
      other += 1
    elif key not in records:
      records[key] = rec
  if (bad or (text and not text.endswith('\n'))) and io_utils.is_writer():
    logging.warning('%s: dropping %d unreadable line(s) left by an interruption', path, bad)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
      f.write(''.join(line + '\n' for line in good))
    os.replace(tmp, path)
  if other:
    logging.warning('%s: ignoring %d record(s) from another checkpoint or eval.* settings',
                    path, other)
  return records


def summarize(records: dict[tuple[int, int], dict], repeats: int, batches: int) -> dict:
  """Mean bits/dim and its standard error from the per-image records.

  The standard error is over images: each image's bits/dim is first averaged over
  the repeats (the repeats of one image are not independent), then
  SE = std(per-image means) / sqrt(number of images).
  """
  per_image = []
  for b in range(batches):
    per_image.append(np.mean([np.asarray(records[r, b]['bpd'], np.float64)
                              for r in range(repeats)], axis=0))
  per_image = np.concatenate(per_image)
  values = [records[r, b] for r in range(repeats) for b in range(batches)]
  n = len(per_image)
  return {
      'bpd': float(np.mean(per_image)),
      'bpd_stderr': float(np.std(per_image, ddof=1) / np.sqrt(n)) if n > 1 else float('nan'),
      'num_images': n,
      'num_repeats': repeats,
      'nfe_mean': float(np.mean([v['nfe'] for v in values])),
      'seconds': float(sum(v['seconds'] for v in values)),
  }


def bpd_over_split(config, params, *, bpd_fn: Callable, ds: datasets.Dataset,
                   quant: Quantization, mesh, ckpt_step: int, progress_path: str,
                   label: str = 'bpd') -> dict:
  """Bits/dim of `params` over the bpd split, resuming from `progress_path`.

  Args:
    params: replicated network params (EMA).
    bpd_fn: `make_bpd_fn`'s jitted solve, built once per run.
    ds, quant: from `bpd_data(config)`.
    ckpt_step: recorded with every progress line; lines of other steps are ignored.
    progress_path: append-only JSON lines, one per finished (repeat, batch).
    label: prefix of the progress log lines.

  Returns:
    summarize()'s dict plus the settings used.
  """
  e = config.eval
  repeats, batches = e.num_repeats, num_batches(config, ds)
  settings = _settings(config, ckpt_step, quant)
  if io_utils.is_writer():
    os.makedirs(os.path.dirname(progress_path), exist_ok=True)
  records = load_progress(progress_path, settings)
  todo = repeats * batches - sum((r, b) in records for r in range(repeats)
                                 for b in range(batches))
  if todo < repeats * batches:
    logging.info('%s: resuming, %d of %d batches already in %s', label,
                 repeats * batches - todo, repeats * batches, progress_path)
  done_now, tic = 0, time.time()
  for r in range(repeats):
    if all((r, b) in records for b in range(batches)):
      continue   # finished before an interruption: do not even read its data
    # The batch index restarts at 0 on every repeat: the pass is over the same images.
    for b, (x, mask) in enumerate(ds.iterate(e.batch_size)):
      if b >= batches:
        break
      if (r, b) in records:
        continue
      start = time.time()
      bpd, nfe = bpd_fn(params, batch_key(config.seed, r, b), parallel.global_batch(x, mesh))
      bpd = parallel.to_host(bpd)[parallel.to_host(parallel.global_batch(mask, mesh))]
      rec = {'repeat': r, 'batch': b, 'count': int(bpd.size),
             'sum_bpd': float(np.sum(bpd, dtype=np.float64)), 'nfe': int(nfe),
             'seconds': time.time() - start, 'bpd': [float(v) for v in bpd],
             'settings': settings}
      io_utils.append_jsonl(progress_path, rec)
      records[r, b] = rec
      done_now += 1
      running = np.mean(np.concatenate([v['bpd'] for v in records.values()]))
      eta = (time.time() - tic) / done_now * (todo - done_now)
      logging.info('%s: repeat %d/%d batch %d/%d  bpd %.4f (running mean %.4f)  nfe %d  eta %s',
                   label, r + 1, repeats, b + 1, batches, rec['sum_bpd'] / max(rec['count'], 1),
                   running, rec['nfe'], io_utils.fmt_eta(eta))
  return {**summarize(records, repeats, batches), **settings}


def likelihood_mode(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """`--mode likelihood`: writes workdir/eval/likelihood.json for the newest checkpoint."""
  check_eval_config(config)
  ds, quant = bpd_data(config)
  run = restore.restore_run(config, workdir, shape=ds.data_shape)
  tic = time.time()
  bpd_fn = make_bpd_fn(config, run.sde, run.model, run.mesh, quant)
  result = bpd_over_split(config, run.ema_params, bpd_fn=bpd_fn, ds=ds, quant=quant,
                          mesh=run.mesh, ckpt_step=run.step, progress_path=os.path.join(workdir, 'eval', 'likelihood_progress.jsonl'))
  result['wall_seconds'] = time.time() - tic
  path = os.path.join(workdir, 'eval', 'likelihood.json')
  io_utils.write_json(path, result, config)
  logging.info('bits/dim %.4f +- %.4f over %d images x %d repeats (mean NFE %.0f) -> %s',
               result['bpd'], result['bpd_stderr'], result['num_images'],
               result['num_repeats'], result['nfe_mean'], path)
  return result


# ----------------------------------------------------------------------------- eval mode


def make_test_loss_fn(config, sde: sde_lib.SDE, model, mesh) -> Callable:
  """A jitted `loss(params, key, x, mask) -> (sum, count)` of per-example eval losses.

  `objectives.eval_loss_fn` averages over its batch; applied to batches of one
  (vmapped), it gives each example's loss, so padding is masked out exactly.
  """
  eval_loss = objectives.eval_loss_fn(config, sde, model)

  def loss(params, key, x, mask):
    keys = jax.random.split(key, x.shape[0])
    per_example = jax.vmap(lambda k, xi: eval_loss(params, k, xi[None]))(keys, x)
    return jnp.sum(jnp.where(mask, per_example, 0.)), jnp.sum(mask)

  rep, data = parallel.replicated(mesh), parallel.data_sharding(mesh)
  return jax.jit(loss, in_shardings=(rep, rep, data, data), out_shardings=(rep, rep))


def mean_test_loss(config, params, loss_fn: Callable, ds: datasets.Dataset, mesh) -> float:
  """Mean eval loss over the whole test split; batch b uses fold_in(PRNGKey(seed + 1), b)."""
  total, count = 0., 0
  key = jax.random.PRNGKey(config.seed + 1)
  for b, (x, mask) in enumerate(ds.iterate(config.eval.batch_size)):
    s, n = loss_fn(params, jax.random.fold_in(key, b), parallel.global_batch(x, mesh),
                   parallel.global_batch(mask, mesh))
    total, count = total + float(s), count + int(n)
  return total / count


def checkpoints_in_range(config, ckpt: checkpointing.Checkpointer) -> list[tuple[int, int]]:
  """(ckpt number n, step) for the saved steps n * snapshot_freq with begin <= n <= end."""
  e, freq = config.eval, config.training.snapshot_freq
  steps = ckpt.all_steps()
  if not steps:
    raise CheckpointError(f'no checkpoint in {ckpt.directory}; train first with --mode train')
  chosen = [(s // freq, s) for s in steps if s % freq == 0 and e.begin_ckpt <= s // freq <= e.end_ckpt]
  if not chosen:
    raise CheckpointError(
        f'no checkpoint numbered {e.begin_ckpt}..{e.end_ckpt} (eval.begin_ckpt..eval.end_ckpt; '
        f'ckpt n = step n * training.snapshot_freq={freq}) in {ckpt.directory}, which holds steps '
        f'{steps}; change eval.begin_ckpt/eval.end_ckpt')
  return chosen


def eval_mode(config: ml_collections.ConfigDict, workdir: str) -> list[dict]:
  """`--mode eval`: workdir/eval/ckpt_<n>.json for each checkpoint in range not yet done."""
  checkpointing.check_import_record(config, workdir)   # before any check: nothing is restored yet
  check_eval_config(config)
  e = config.eval
  if e.enable_sampling:
    import fid_stats  # pylint: disable=g-import-not-at-top  (Inception etc. only when sampling)
    import metrics  # pylint: disable=g-import-not-at-top
    if e.num_samples < 2:
      raise ConfigError(f'eval.num_samples={e.num_samples} must be >= 2 (the papers use 50000)')
    if config.data.dataset in datasets.TOYS and e.num_samples % jax.process_count():
      # The toy metrics split the samples evenly over the processes.
      raise ConfigError(f'eval.num_samples={e.num_samples} must be a multiple of the process '
                        f'count {jax.process_count()} for toy data')
    parallel.check_batch_size(config.sampling.batch_size, 'sampling.batch_size')
    metrics.check_config(config)
    fid_stats.check_config(config)
  mesh = parallel.make_mesh()
  test_ds = datasets.get_dataset(config, 'test')
  bpd_ds, quant = bpd_data(config)
  ckpt = checkpointing.Checkpointer(workdir, create=False)
  try:
    chosen = checkpoints_in_range(config, ckpt)
  finally:
    ckpt.close()
  eval_dir = os.path.join(workdir, 'eval')
  fns, results = None, []
  for n, step in chosen:
    path = os.path.join(eval_dir, f'ckpt_{n}.json')
    if os.path.exists(path):
      logging.info('ckpt %d (step %d): %s exists, skipping', n, step, path)
      continue
    tic = time.time()
    run = restore.restore_run(config, workdir, step=step, shape=test_ds.data_shape, mesh=mesh)
    params = run.ema_params
    if fns is None:   # built once, at the first checkpoint to do: nothing left, nothing compiled
      fns = (make_test_loss_fn(config, run.sde, run.model, mesh),
             make_bpd_fn(config, run.sde, run.model, mesh, quant),
             sample_eval.make_indexed_sampler(config, run.sde, run.model, mesh, run.data_shape)
             if e.enable_sampling else None)
    loss_fn, bpd_fn, sampler = fns
    result = {'ckpt': n, 'step': step}
    if e.enable_loss:
      result['test_loss'] = mean_test_loss(config, params, loss_fn, test_ds, mesh)
      logging.info('ckpt %d (step %d): test loss %.5f', n, step, result['test_loss'])
    if e.enable_bpd:
      bpd = bpd_over_split(config, params, bpd_fn=bpd_fn, ds=bpd_ds, quant=quant, mesh=mesh,
                           ckpt_step=step, label=f'ckpt {n} bpd', progress_path=os.path.join(
                               eval_dir, f'ckpt_{n}_bpd_progress.jsonl'))
      result.update({f'bpd_{k}' if not k.startswith('bpd') else k: v for k, v in bpd.items()})
    if e.enable_sampling:
      result.update(sample_eval.sample_quality_protocol(
          config, params, sampler=sampler, mesh=mesh, step=step, eval_dir=eval_dir, ckpt_n=n))
    result['seconds'] = time.time() - tic
    io_utils.write_json(path, result, config)
    logging.info('ckpt %d (step %d) -> %s', n, step, path)
    results.append(result)
  return results
