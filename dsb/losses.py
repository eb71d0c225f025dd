"""Mean matching (De Bortoli et al. 2021, Prop. 3 and Alg. 1), for both directions.

Given a trajectory of the forward chain with means F_k, the backward mean B_{k+1}
regresses (Eq. 12)

  B_{k+1}(X_{k+1})  ~  X_{k+1} + F_k(X_k) - F_k(X_{k+1}),

whose conditional expectation given X_{k+1} is the time-reversed transition mean up to
O(gamma^2). Symmetrically, given a trajectory of the backward chain with means B_{k+1},
the forward mean regresses (Eq. 13)

  F_k(X_k)  ~  X_k + B_{k+1}(X_{k+1}) - B_{k+1}(X_k).

Both are the same formula with the roles of the two endpoints of a step swapped, so one
function serves both directions.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from dsb.schedule import MeanFn

Array = jax.Array


def mean_matching_pairs(sim_mean_fn: MeanFn, traj: Array, *, sim_forward: bool
                        ) -> tuple[Array, Array, Array]:
  """Regression inputs, step indices and targets for the direction opposite to the simulation.

  Args:
    sim_mean_fn: the mean of the chain that produced `traj` (F_k if sim_forward, else B_{k+1}).
    traj: [N + 1, M, ...] states X_0..X_N in grid order.
    sim_forward: whether `traj` comes from the forward chain (then we train the backward
      network) or from the backward chain (then we train the forward network).

  Returns:
    inputs [N, M, ...], indices [N, M] (int: k + 1 for the backward network, k for the
    forward one) and targets [N, M, ...], for the trained mean at (inputs, indices).
  """
  n, m = traj.shape[0] - 1, traj.shape[1]
  k = jnp.arange(n)
  if sim_forward:   # train B_{k+1} at X_{k+1}: the simulating F is evaluated at step k
    x_in, x_other, sim_k, train_k = traj[1:], traj[:-1], k, k + 1
  else:             # train F_k at X_k: the simulating B is evaluated at step k + 1
    x_in, x_other, sim_k, train_k = traj[:-1], traj[1:], k + 1, k
  flat = lambda x: x.reshape((n * m,) + x.shape[2:])
  idx = jnp.repeat(sim_k, m)
  target = x_in + (sim_mean_fn(flat(x_other), idx) - sim_mean_fn(flat(x_in), idx)).reshape(x_in.shape)
  return x_in, jnp.broadcast_to(train_k[:, None], (n, m)), target


def mean_matching_loss(mean_fn: MeanFn, x: Array, k: Array, target: Array) -> Array:
  """Mean squared error of the trained mean against the targets: scalar.

  Averaged over batch and dimensions (the reference code's mse_loss), so that one
  learning rate fits every data dimension.
  """
  return jnp.mean(jnp.square(mean_fn(x, k) - target))
