"""Iterative proportional fitting with mean matching (De Bortoli et al. 2021, Alg. 1).

Half-iteration h = 1, 2, ... of IPF iteration n = (h + 1) // 2 trains the backward
network when h is odd (on trajectories of the forward chain: the reference process
when n = 1, else the EMA forward network) and the forward network when h is even (on
trajectories of the EMA backward network started from the prior). Each half gets a
fresh Adam state (warm-up, clipping: `optim.get_optimizer`), optionally starts from
that direction's previous network (`dsb.warm_start`), and trains it with the shared train
step (`train_state.make_train_step`: optax update and EMA of the weights, as in score
training) on the mean-matching loss of minibatches of the trajectory cache.

Every random draw of half h comes from fold_in(key_h, ...) with key_h = fold_in(seed, h),
so a run resumed from the checkpoint after half h - 1 repeats half h exactly.
"""
from __future__ import annotations

import math
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

import optim
import parallel
import train_state
from dsb import cache as cache_lib
from dsb import losses as dsb_losses
from dsb import networks, schedule
from errors import ConfigError, TrainingError

Array = jax.Array
DIRECTIONS = ('backward', 'forward')


class Chain(NamedTuple):
  """A simulated chain: true draws at every grid point, and the last step's mean.

  Attributes:
    traj: [N + 1, B, ...] in grid order: draws of the chain's law at every point, the far
      end included (its last step's noise, variance 2 gamma, is in it).
    end: [B, ...] the far end's draws: traj[0] of a backward chain, traj[N] of a forward one.
    end_mean: [B, ...] the last step's mean (no last noise): the denoised picture that
      DSB's reference sampler shows; its variance is short of end's by 2 gamma_last.
  """
  traj: Array
  end: Array
  end_mean: Array


def half_direction(h: int) -> str:
  """Odd halves train the backward network, even halves the forward one (h from 1)."""
  return DIRECTIONS[(h - 1) % 2]


def check_config(config) -> None:
  """Config checks that need no data; raise ConfigError naming the field."""
  d = config.dsb
  for field in ('n_ipf', 'num_iter', 'batch_size', 'cache_size', 'cache_refresh', 'log_freq',
                'num_samples'):
    if getattr(d, field) < 1:
      raise ConfigError(f'dsb.{field}={getattr(d, field)} must be >= 1')
  for field in ('batch_size', 'cache_size', 'num_samples') + (
      ('estimate_size',) if d.estimate_prior else ()):
    if getattr(d, field) % jax.device_count():
      raise ConfigError(f'dsb.{field}={getattr(d, field)} is not divisible by the device count '
                        f'{jax.device_count()}; use a multiple of it')
  schedule.get_gammas(config)


class IPF:
  """The fixed parts of a DSB run: grid, network, reference, optimizer, compiled steps.

  Args:
    config: the experiment config (`dsb.*`, `model.*`, `optim.*`).
    data_shape: one example's shape.
    prior_mean, prior_var: the reference's N(m, v), broadcastable to data_shape.
    mesh: the device mesh (default: all devices); networks and optimizer state are
      replicated on it, batches and trajectories are the caller's (sharded on 'data').
  """

  def __init__(self, config, data_shape: tuple, prior_mean, prior_var, mesh=None):
    check_config(config)
    d = config.dsb
    self.config = config
    self.data_shape = tuple(data_shape)
    self.gammas = schedule.get_gammas(config)
    self._g = jnp.asarray(self.gammas, jnp.float32)
    self.net = networks.make_network(config, self.data_shape, schedule.time_labels(self.gammas))
    self.reference = schedule.reference_mean_fn(d.reference, prior_mean, prior_var, self._g)
    self.optimizer = optim.get_optimizer(config)
    # A conv net's gradient in a while loop is ~20x slower on XLA:CPU (train_state.get_multi_step):
    # there, images train one jitted step at a time; everything else scans over a chunk.
    self._unroll = jax.default_backend() == 'cpu' and len(self.data_shape) > 1
    self._chunk = 1 if self._unroll else math.gcd(d.cache_refresh, d.log_freq)
    # Explicit replicated outputs: with several processes a state left to the default
    # (this process's first device) would not be one global array, and Orbax could not
    # save it.
    rep = parallel.replicated(mesh or parallel.make_mesh())
    self._build = jax.jit(self._build_impl, static_argnames=('sim_forward', 'use_reference'))
    self._train = jax.jit(self._train_impl, static_argnames=('n',), donate_argnums=0,
                          out_shardings=(rep, rep))
    self._simulate = jax.jit(self._simulate_impl, static_argnames=('forward', 'use_reference'))
    self._init_params = jax.jit(lambda key: self.net.init(key, self.data_shape),
                                out_shardings=rep)
    self._new_state = jax.jit(self._new_state_impl, out_shardings=rep)

  # ------------------------------------------------------------------ state

  def init_nets(self, key: Array) -> dict:
    """{'forward'|'backward': {'params', 'ema'}}: the checkpointed state of IPF."""
    kf, kb = jax.random.split(key)
    pf, pb = self._init_params(kf), self._init_params(kb)
    return {'forward': {'params': pf, 'ema': pf}, 'backward': {'params': pb, 'ema': pb}}

  def _new_state_impl(self, params, key) -> train_state.TrainState:
    # A jitted function returns fresh buffers, so params and EMA never alias (the train
    # step donates its state).
    return train_state.TrainState(
        step=jnp.zeros((), jnp.int32), params=params, ema_params=params,
        opt_state=self.optimizer.init(params), rng=jax.random.fold_in(key, 0))

  def _mean_fn(self, params, use_reference: bool):
    return self.reference if use_reference else self.net.mean_fn(params)

  # ------------------------------------------------------------------ compiled pieces

  def _build_impl(self, sim_params, x_start, key, *, sim_forward, use_reference):
    return cache_lib.build(self._mean_fn(sim_params, use_reference), x_start, self._g, key,
                           sim_forward=sim_forward)

  def _simulate_impl(self, params, x_start, key, *, forward, use_reference):
    traj, last_mean = schedule.simulate(self._mean_fn(params, use_reference), x_start, self._g,
                                        key, forward=forward, return_last_mean=True)
    return Chain(traj, traj[-1] if forward else traj[0], last_mean)

  def _train_impl(self, state: train_state.TrainState, cache: cache_lib.Cache, *, n: int):
    d, m = self.config.dsb, self.config.model

    def cache_loss(mean_fn, key, cache):   # a fresh minibatch of the cache at every step
      batch = cache_lib.minibatch(cache, key, d.batch_size)
      return dsb_losses.mean_matching_loss(mean_fn, batch.x, batch.k, batch.target)

    # The step's key splits into (minibatch key, dropout key) in network_loss.
    loss_fn = train_state.network_loss(cache_loss, self.net.mean_fn, train=True,
                                       parts=self.config.training.get('network_parts', 0))
    step = train_state.make_train_step(loss_fn, self.optimizer, m.ema_rate, m.ema_warmup)
    return train_state.get_multi_step(lambda state, _: step(state, cache), self._unroll)(
        state, jnp.arange(n))

  # ------------------------------------------------------------------ public

  def run_half(self, h: int, nets: dict, key: Array, start_batch: Callable[[int], Array],
               init_key: Array | None = None) -> tuple[dict, list[float]]:
    """Trains the network of half h; returns the updated nets and the logged losses.

    Args:
      h: half-iteration index from 1.
      nets: the current {'forward', 'backward'} params and EMAs.
      key: this half's key.
      start_batch: r -> [cache_size, ...] start states of the r-th cache refresh (data for a
        backward half, prior for a forward half), laid out as the caller wants them sharded.
      init_key: a fresh initialisation when dsb.warm_start is False (required then).
    """
    d = self.config.dsb
    direction = half_direction(h)
    other = 'forward' if direction == 'backward' else 'backward'
    use_reference = h == 1   # the first forward chain is the reference process
    if d.warm_start or init_key is None:
      params = nets[direction]['params']
    else:
      params = self._init_params(init_key)
    state = self._new_state(params, key)
    sim_params = nets[other]['ema']
    logged, pending, tic = [], [], time.time()
    step = 0
    while step < d.num_iter:
      if step % d.cache_refresh == 0:
        r = step // d.cache_refresh
        cache = self._build(sim_params, start_batch(r), jax.random.fold_in(key, 1 + r),
                            sim_forward=direction == 'backward', use_reference=use_reference)
      n = min(self._chunk - step % self._chunk, d.num_iter - step)
      state, values = self._train(state, cache, n=n)
      pending.append(values)
      step += n
      if step % d.log_freq == 0 or step == d.num_iter:
        value = float(jnp.mean(jnp.concatenate(pending)))
        if not np.isfinite(value):
          raise TrainingError(f'half-iteration {h} ({direction}): the mean-matching loss became '
                            f'{value} at step {step}; lower optim.lr or dsb.gamma_max')
        logged.append(value)
        pending = []
        logging.info('IPF half %d (%s)  step %d/%d  loss %.5f  %.1f steps/s', h, direction,
                     step, d.num_iter, value, d.log_freq / max(time.time() - tic, 1e-9))
        tic = time.time()
    nets = dict(nets)
    nets[direction] = {'params': state.params, 'ema': state.ema_params}
    return nets, logged

  def sample(self, nets: dict, x_prior: Array, key: Array) -> Chain:
    """Backward EMA network from prior draws [B, ...], one sample per draw.

    Returns:
      Chain: traj [N + 1, B, ...] in grid order ([N] = x_prior), end = traj[0] the samples
      (true draws of the learned p0, last noise included), end_mean their last step's mean.
    """
    return self._simulate(nets['backward']['ema'], x_prior, key, forward=False,
                          use_reference=False)

  def push_forward(self, nets: dict, x_data: Array, key: Array, use_reference: bool = False
                   ) -> Chain:
    """Forward EMA network (or the reference) from data [B, ...]: a Chain, end = traj[N]
    (true draws of the learned p1, last noise included), end_mean its last step's mean."""
    return self._simulate(nets['forward']['ema'], x_data, key, forward=True,
                          use_reference=use_reference)
