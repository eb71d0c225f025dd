"""`--mode train`: train_and_evaluate(config, workdir), top to bottom.

Sections: setup (SDE, model, data, mesh) -> compiled steps -> state (created
replicated, or restored) -> loop (log, eval, snapshot, checkpoint). Every config
check happens before the workdir is touched.
"""
from __future__ import annotations

import os
import signal
import time

import jax
import ml_collections
import numpy as np
from absl import logging

import checkpointing
import datasets
import generate
import io_utils
import objectives
import optim
import parallel
import restore
import sde_lib
import train_state
from errors import ConfigError, TrainingError
from models import create_model


def init_state(config, model, optimizer, data_shape, mesh) -> train_state.TrainState:
  """Creates the TrainState directly in its replicated layout (big_vision style)."""
  init = restore.init_fn(config, model, optimizer, data_shape)
  return jax.jit(init, out_shardings=parallel.replicated(mesh))(jax.random.PRNGKey(config.seed))


def _check_frequencies(config) -> None:
  t = config.training
  n = t.n_jitted_steps
  if n < 1:
    raise ConfigError(f'training.n_jitted_steps={n} must be >= 1')
  for field in ('n_iters', 'log_freq', 'eval_freq', 'snapshot_freq', 'snapshot_freq_for_preemption'):
    if getattr(t, field) % n:
      raise ConfigError(f'training.{field}={getattr(t, field)} must be a multiple of '
                        f'training.n_jitted_steps={n}; change either')


class _Preemption:
  """Turns SIGTERM into a flag the loop checks, so it can checkpoint before exiting."""

  def __init__(self):
    self.requested = False
    try:
      self._old = signal.signal(signal.SIGTERM, self._handle)
    except ValueError:  # not the main thread (e.g. some test runners): no handler
      self._old = None

  def _handle(self, signum, frame):
    del signum, frame
    self.requested = True

  def restore(self):
    if self._old is not None:
      signal.signal(signal.SIGTERM, self._old)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> train_state.TrainState:
  """Trains `config` in `workdir`, resuming from its newest checkpoint if any."""
  # ------------------------------------------------------------------ setup
  _check_frequencies(config)
  checkpointing.check_import_record(config, workdir)   # resuming an import needs its options
  t = config.training
  parallel.check_batch_size(t.batch_size, 'training.batch_size')
  parallel.check_microbatches(t.batch_size, t.get('microbatches', 1), 'training.batch_size',
                              t.get('network_parts', 0))
  sde, _ = sde_lib.get_sde(config)
  model = create_model(config)
  optimizer = optim.get_optimizer(config)
  train_ds = datasets.get_dataset(config, 'train')
  eval_ds = datasets.get_dataset(config, 'test')
  inverse_scaler = datasets.get_data_inverse_scaler(config)
  mesh = parallel.make_mesh()
  logging.info('%d devices over %d processes; global batch %d', jax.device_count(),
               jax.process_count(), t.batch_size)

  # ------------------------------------------------------------------ compiled steps
  rep, batch_sh = parallel.replicated(mesh), parallel.data_sharding(mesh)
  stacked_sh = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, 'data'))
  # training.objective picks the loss (objectives.OBJECTIVES); every objective shares the step.
  train_step = jax.jit(train_state.get_multi_step(objectives.get_train_step(config, sde, model,
                                                                          optimizer)),
                       in_shardings=(rep, stacked_sh), out_shardings=(rep, rep),
                       donate_argnums=0)
  eval_loss = jax.jit(objectives.eval_loss_fn(config, sde, model),
                      in_shardings=(rep, rep, batch_sh), out_shardings=rep)
  snapshot = (generate.make_snapshot_sampler(config, sde, model, mesh, train_ds.data_shape)
              if t.snapshot_sampling and t.get('objective', 'score') == 'score' else None)
  eval_key = jax.random.PRNGKey(config.seed + 1)

  # ------------------------------------------------------------------ state
  ckpt = checkpointing.Checkpointer(workdir, max_to_keep=t.max_to_keep,
                                    keep_period=t.snapshot_freq)
  if ckpt.latest_step() is not None:   # restored into the traced layout: nothing initialised
    state = ckpt.restore(restore.abstract_state(config, model, train_ds.data_shape, mesh))
    logging.info('Resumed from %s at step %d', ckpt.directory, int(state.step))
  else:
    state = init_state(config, model, optimizer, train_ds.data_shape, mesh)
  start = int(state.step)
  n_params = sum(x.size for x in jax.tree.leaves(state.params))
  logging.info('%s: %.2fM parameters', config.model.name, n_params / 1e6)

  # ------------------------------------------------------------------ loop
  writer = None
  if io_utils.is_writer():
    from tensorboardX import SummaryWriter  # pure-python event writer: no TensorFlow needed
    writer = SummaryWriter(os.path.join(workdir, 'tensorboard'))
  preempt = _Preemption()
  n = t.n_jitted_steps
  pending, last_saved = [], ckpt.latest_step()
  tic, tic_step = time.time(), start

  def save(step, force=False):
    nonlocal last_saved
    if pending:  # never write NaN parameters over a good checkpoint
      _check_finite(pending, step, ckpt, last_saved)
    ckpt.save(step, state, force=force)
    last_saved = step

  # A time-dependent classifier (guidance.py) trains on (x, labels) batches.
  labelled = t.get('objective', 'score') == 'time_classifier'
  read = ((lambda ds, s: ds.batch(s, t.batch_size, with_labels=True)) if labelled else
          (lambda ds, s: ds.batch(s, t.batch_size)))
  try:
    for step in range(start, t.n_iters, n):
      local = jax.tree.map(lambda *b: np.stack(b), *[read(train_ds, s)
                                                     for s in range(step, step + n)])
      state, loss = train_step(state, jax.tree.map(
          lambda b: parallel.global_batch(b, mesh, axis=1), local))
      pending.append(loss)
      done = step + n

      if done % t.log_freq == 0 or done == t.n_iters:
        mean_loss = _check_finite(pending, done, ckpt, last_saved)
        pending = []
        rate = (done - tic_step) / max(time.time() - tic, 1e-9)
        tic, tic_step = time.time(), done
        logging.info('step %d/%d  loss %.5f  %.1f steps/s  eta %s', done, t.n_iters, mean_loss,
                     rate, io_utils.fmt_eta((t.n_iters - done) / max(rate, 1e-9)))
        if writer:
          writer.add_scalar('train/loss', mean_loss, done)
          writer.add_scalar('train/steps_per_sec', rate, done)
          io_utils.append_jsonl(os.path.join(workdir, 'metrics.jsonl'),
                                {'step': done, 'loss': mean_loss, 'steps_per_sec': rate})

      if done % t.eval_freq == 0 and config.eval.enable_loss:
        eval_batch = jax.tree.map(lambda b: parallel.global_batch(b, mesh),
                                  read(eval_ds, done))
        value = float(eval_loss(state.ema_params, jax.random.fold_in(eval_key, done), eval_batch))
        logging.info('step %d  eval loss (EMA) %.5f', done, value)
        if writer:
          writer.add_scalar('eval/loss', value, done)
          io_utils.append_jsonl(os.path.join(workdir, 'metrics.jsonl'),
                                {'step': done, 'eval_loss': value})

      if done % t.snapshot_freq_for_preemption == 0 or done % t.snapshot_freq == 0 or \
         done == t.n_iters:
        save(done, force=done == t.n_iters)
      if snapshot and (done % t.snapshot_freq == 0 or done == t.n_iters):
        _write_snapshot(config, workdir, snapshot, state, done, train_ds, inverse_scaler)
      if preempt.requested:
        if last_saved != done:  # saving the same step twice is an error in orbax
          save(done, force=True)
        logging.warning('SIGTERM: checkpointed step %d to %s; rerun the same command to '
                        'resume', done, ckpt.directory)
        break
  finally:
    preempt.restore()
    ckpt.close()
    if writer:
      writer.close()
  return state


def _check_finite(pending, step, ckpt, last_saved) -> float:
  values = np.concatenate([np.asarray(jax.device_get(v)).reshape(-1) for v in pending])
  if not np.all(np.isfinite(values)):
    where = (f'the last good checkpoint is step {last_saved} in {ckpt.directory}'
             if last_saved is not None else 'no checkpoint was written')
    raise TrainingError(f'loss became {values[~np.isfinite(values)][0]} by step {step}; {where}. '
                        'Lower optim.lr or set optim.grad_clip, then rerun to resume')
  return float(values.mean())


def _write_snapshot(config, workdir, snapshot, state, step, train_ds, inverse_scaler):
  tic = time.time()
  x, nfe = snapshot(jax.random.PRNGKey(config.seed + step), state.ema_params)
  x = parallel.to_host(x)
  reference = None if train_ds.is_image else train_ds.batch(0, len(x) * jax.process_count())
  prefix = os.path.join(workdir, 'samples', f'step_{step}')
  paths = io_utils.save_samples(
      prefix, x, is_image=train_ds.is_image, inverse_scaler=inverse_scaler, reference=reference,
      meta={'step': step, 'nfe': nfe, 'seconds': time.time() - tic, 'num_samples': len(x),
            'sampler': config.sampling.to_dict()}, config=config)
  logging.info('step %d  samples -> %s (%d NFE, %.1fs)', step, paths['png'], nfe,
               time.time() - tic)
