"""The trajectory cache: mean-matching pairs from M simulated trajectories.

A cache is simulated with the EMA copy of the opposite network (or the reference
process in the first half-iteration), held on device, and rebuilt from fresh
trajectories every `dsb.cache_refresh` training steps (`ipf.run_half`).

Minibatches are drawn uniformly over all M x N (trajectory, step) pairs. The reference
code instead reads its cache in order, each batch holding every step of a few
trajectories. Neighbouring states of one trajectory are nearly equal, so such a batch
carries far less information than its size suggests (a high-variance gradient), and
its steps are tied to each other. Shuffling across trajectories and steps makes every
minibatch close to independent draws from the joint (step, state) law the loss
integrates over, and lets the batch size be chosen independently of N.
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from dsb import losses
from dsb.schedule import MeanFn, simulate

Array = jax.Array


class Cache(NamedTuple):
  x: Array        # [N * M, ...] inputs of the trained mean
  k: Array        # [N * M] int step indices
  target: Array   # [N * M, ...] mean-matching targets


def build(sim_mean_fn: MeanFn, x_start: Array, gammas: Array, key: Array, *,
          sim_forward: bool) -> Cache:
  """Simulates M trajectories from x_start [M, ...] and returns their N * M pairs."""
  traj = simulate(sim_mean_fn, x_start, gammas, key, forward=sim_forward)
  x, k, target = losses.mean_matching_pairs(sim_mean_fn, traj, sim_forward=sim_forward)
  flat = lambda a: a.reshape((-1,) + a.shape[2:])
  return Cache(flat(x), flat(k), flat(target))


def minibatch(cache: Cache, key: Array, batch_size: int) -> Cache:
  """batch_size pairs drawn uniformly, with replacement, over trajectories and steps."""
  idx = jax.random.randint(key, (batch_size,), 0, cache.k.shape[0])
  return Cache(jnp.take(cache.x, idx, 0), jnp.take(cache.k, idx, 0),
               jnp.take(cache.target, idx, 0))
