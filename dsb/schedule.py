"""The DSB time grid and the reference process (De Bortoli et al. 2021, Sec. 3.1).

The chain runs over N steps with step sizes gamma_1..gamma_N (`gammas[k]` is the
step k -> k+1), and every transition, forward or backward, is Gaussian with
variance 2 gamma (Eq. 3 and Alg. 1):

  forward   X_{k+1} = F_k(X_k)         + sqrt(2 gamma_{k+1}) Z
  backward  X_k     = B_{k+1}(X_{k+1}) + sqrt(2 gamma_{k+1}) Z

The reference forward mean F_k is the Euler step of a Langevin diffusion towards
N(m, v) (the discretised Ornstein-Uhlenbeck process the first IPF pass uses), or
of a Brownian motion (F_k = identity). A Brownian reference sigma W_t on [0, 1]
in the notation of Shi et al. 2023 is this chain with sum_k gamma_k = sigma^2 / 2.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from errors import ConfigError, lookup

Array = jax.Array
MeanFn = Callable[[Array, Array], Array]   # (x [B, ...], k [B] int) -> mean [B, ...]


def _constant(n: int, lo: float, hi: float) -> np.ndarray:
  del lo
  return np.full(n, hi)


def _symmetric(ramp: Callable[[float, float, int], np.ndarray]):
  """Ramps up from gamma_min to gamma_max over the first half and back down (the reference
  code's symmetric schedule), so that both ends of the bridge get fine steps."""

  def schedule(n: int, lo: float, hi: float) -> np.ndarray:
    half = ramp(lo, hi, (n + 1) // 2)
    return np.concatenate([half, half[::-1][n % 2:]])

  return schedule


GAMMA_SCHEDULES = {
    'constant': _constant,
    'linear': _symmetric(np.linspace),
    'geometric': _symmetric(np.geomspace),
}


def get_gammas(config) -> np.ndarray:
  """Step sizes gamma_1..gamma_N as float64 [N] from `config.dsb`.

  `dsb.gamma_total > 0` rescales the grid so that sum_k gamma_k equals it (the total
  time of the reference; for a Brownian reference sigma W on [0, 1], sigma^2 / 2).
  """
  d = config.dsb
  if d.num_steps < 1:
    raise ConfigError(f'dsb.num_steps={d.num_steps} must be >= 1')
  if not 0. < d.gamma_min <= d.gamma_max:
    raise ConfigError(f'dsb.gamma_min={d.gamma_min}, dsb.gamma_max={d.gamma_max}: need '
                      '0 < gamma_min <= gamma_max')
  gammas = lookup(GAMMA_SCHEDULES, d.gamma_schedule, 'dsb.gamma_schedule')(
      d.num_steps, d.gamma_min, d.gamma_max).astype(np.float64)
  if d.gamma_total > 0:
    gammas *= d.gamma_total / gammas.sum()
  return gammas


def time_labels(gammas: np.ndarray) -> np.ndarray:
  """The label the networks see at grid point k = 0..N: 999 t_k / t_N, t_k = sum_{j<=k} gamma_j.

  Shape [N + 1], in score_sde's 0..999 range for the sinusoidal/Fourier embeddings.
  """
  t = np.concatenate([[0.], np.cumsum(gammas)])
  return (999. * t / t[-1]).astype(np.float32)


# ----------------------------------------------------------------------------- reference

def _ou(m: Array, v: Array, gammas: Array) -> MeanFn:
  # Euler step of dX = grad log N(x; m, v) dt + sqrt(2) dW (Langevin towards N(m, v)).
  def mean(x, k):
    g = gammas[k].reshape((-1,) + (1,) * (x.ndim - 1))
    return x - g * (x - m) / v
  return mean


def _brownian(m: Array, v: Array, gammas: Array) -> MeanFn:
  del m, v, gammas
  return lambda x, k: x


REFERENCES = {'ou': _ou, 'brownian': _brownian}


def reference_mean_fn(kind: str, m: Array, v: Array, gammas: Array) -> MeanFn:
  """The reference forward mean F_k(x) [B, ...] for x [B, ...], k [B].

  Args:
    kind: 'ou' (Langevin towards N(m, v)) or 'brownian'.
    m, v: prior mean and variance, broadcastable to one example's shape.
    gammas: [N] step sizes.
  """
  return lookup(REFERENCES, kind, 'dsb.reference')(
      jnp.asarray(m, jnp.float32), jnp.asarray(v, jnp.float32), jnp.asarray(gammas, jnp.float32))


# ----------------------------------------------------------------------------- simulation

def simulate(mean_fn: MeanFn, x_start: Array, gammas: Array, key: Array, *,
             forward: bool, last_mean: bool = False, return_last_mean: bool = False):
  """Runs the chain with Gaussian transitions of variance 2 gamma; one `lax.scan`.

  Args:
    mean_fn: F_k (forward: called with k, the step's start) or B_{k+1} (backward:
      called with k + 1, the index of the state it starts from).
    x_start: [B, ...], X_0 (forward) or X_N (backward).
    gammas: [N].
    forward: direction.
    last_mean: put the last step's mean in place of its noisy draw (then the end state is
      not a draw of the chain's law: its variance lacks the last step's 2 gamma).
    return_last_mean: also return the last step's mean, computed in the same pass (the
      same network call), beside the trajectory of true draws.

  Returns:
    [N + 1, B, ...] states in grid order X_0..X_N, whichever end they started from; with
    return_last_mean, (that trajectory, the last step's mean [B, ...]).
  """
  n = gammas.shape[0]
  steps = jnp.arange(n) if forward else jnp.arange(n, 0, -1)   # the index fed to mean_fn
  keys = jax.random.split(key, n)
  b = x_start.shape[0]

  def step(x, inp):
    i, j, k = inp
    gamma = gammas[k if forward else k - 1]
    mean = mean_fn(x, jnp.full((b,), k))
    noise = jnp.sqrt(2. * gamma) * jax.random.normal(j, x.shape)
    x = mean + noise * (1. - (last_mean & (i == n - 1)))
    return x, (x, mean)

  _, (xs, means) = jax.lax.scan(step, x_start, (jnp.arange(n), keys, steps))
  traj = jnp.concatenate([x_start[None], xs])
  traj = traj if forward else traj[::-1]
  return (traj, means[-1]) if return_last_mean else traj
