"""Samplers: small pure step functions composed by `lax.scan`.

A predictor and a corrector share one signature:

    step(key, x, t, t_next) -> (x, x_mean)

where `t, t_next: [B]` are consecutive points of the time grid (the step size is
taken from the grid itself; score_sde uses dt = -1/N, which disagrees with its
own grid of N points on [eps, T] by a factor (T - eps) N / (N - 1)).
Any `score_fn(x, t)` works, including the exact ones in `tests/exact.py`.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp

import sde_lib
from errors import ConfigError, lookup
from sde_lib import bcast

Array = jax.Array
Step = Callable[[Array, Array, Array, Array], tuple[Array, Array]]


# ----------------------------------------------------------------------------- predictors

def euler_maruyama(sde: sde_lib.SDE, score_fn, probability_flow: bool = False) -> Step:
  """Euler-Maruyama on the reverse SDE (or Euler on the PF ODE)."""
  rsde = sde.reverse(score_fn, probability_flow)

  def step(key, x, t, t_next):
    dt = bcast(t_next - t, x)  # negative: integrating from T to eps
    drift, diffusion = rsde.sde(x, t)
    x_mean = x + drift * dt
    z = jax.random.normal(key, x.shape)
    return x_mean + bcast(diffusion, x) * jnp.sqrt(-dt) * z, x_mean

  return step


def reverse_diffusion(sde: sde_lib.SDE, score_fn, probability_flow: bool = False) -> Step:
  """Reverse of the forward discretisation (Song et al. 2021, Eq. 46)."""
  rsde = sde.reverse(score_fn, probability_flow)

  def step(key, x, t, t_next):
    f, g = rsde.discretize(x, t)
    x_mean = x - f
    z = jax.random.normal(key, x.shape)
    return x_mean + bcast(g, x) * z, x_mean

  return step


def no_predictor(sde, score_fn, probability_flow=False) -> Step:
  del sde, score_fn, probability_flow
  return lambda key, x, t, t_next: (x, x)


PREDICTORS = {
    'euler_maruyama': euler_maruyama,
    'reverse_diffusion': reverse_diffusion,
    'none': no_predictor,
}


# ----------------------------------------------------------------------------- correctors

def langevin(sde: sde_lib.SDE, score_fn, snr: float, n_steps: int) -> Step:
  """Langevin MCMC with the signal-to-noise step rule (Song et al. 2021, Algorithm 5).

  eps_i = 2 alpha_i (snr |z| / |score|)^2 with alpha_i = 1 for VE and
  alpha_i = 1 - beta_i for VP (the DDPM per-step alpha). For sub-VP the reference
  indexes `sde.alphas`, which it never defines, and crashes; we use alpha = 1 for
  it, like VE, since sub-VP has no discrete Markov chain of its own.
  """

  def step(key, x, t, t_next):
    del t_next
    if isinstance(sde, sde_lib.VPSDE):
      alpha = 1. - sde.discrete_betas[sde.timestep(t)]
    else:
      alpha = jnp.ones_like(t)

    def one(carry, k):
      x, _ = carry
      grad = score_fn(x, t)
      z = jax.random.normal(k, x.shape)
      grad_norm = jnp.linalg.norm(grad.reshape(grad.shape[0], -1), axis=-1).mean()
      noise_norm = jnp.linalg.norm(z.reshape(z.shape[0], -1), axis=-1).mean()
      step_size = 2 * alpha * (snr * noise_norm / grad_norm) ** 2
      x_mean = x + bcast(step_size, x) * grad
      return (x_mean + bcast(jnp.sqrt(2 * step_size), x) * z, x_mean), None

    (x, x_mean), _ = jax.lax.scan(one, (x, x), jax.random.split(key, n_steps))
    return x, x_mean

  return step


def no_corrector(sde, score_fn, snr, n_steps) -> Step:
  del sde, score_fn, snr, n_steps
  return lambda key, x, t, t_next: (x, x)


CORRECTORS = {'langevin': langevin, 'none': no_corrector}


# ----------------------------------------------------------------------------- drivers

def time_grid(sde: sde_lib.SDE, eps: float, num_steps: int) -> Array:
  """N points from T down to eps: [N]."""
  return jnp.linspace(sde.T, eps, num_steps)


def pc_sample(key: Array, score_fn, sde: sde_lib.SDE, shape: tuple[int, ...], *,
              predictor: str = 'euler_maruyama', corrector: str = 'none', snr: float = 0.16,
              n_steps_each: int = 1, probability_flow: bool = False, denoise: bool = True,
              eps: float = 1e-3, num_steps: int | None = None) -> tuple[Array, int]:
  """Predictor-corrector sampling (Song et al. 2021, Algorithm 1 / 2).

  Each grid point runs the corrector then the predictor, as score_sde does.

  Args:
    shape: global sample shape [B, ...].
    denoise: return the mean of the last predictor step (no noise added at eps).
  Returns:
    Samples [B, ...] and the number of score evaluations (a Python int).
  """
  n = num_steps or sde.N
  # The discrete predictors/correctors step along the sampler's own N-level grid.
  # score_fn keeps the SDE it was built with, so discrete models keep their labels.
  sde = dataclasses.replace(sde, N=n)
  pred = lookup(PREDICTORS, predictor, 'sampling.predictor')(sde, score_fn, probability_flow)
  corr = lookup(CORRECTORS, corrector, 'sampling.corrector')(sde, score_fn, snr, n_steps_each)
  grid = time_grid(sde, eps, n)
  t_next = jnp.concatenate([grid[1:], jnp.zeros((1,))])  # the last step ends at 0

  def body(carry, inputs):
    x, _ = carry
    k, t, tn = inputs
    kc, kp = jax.random.split(k)
    vec = lambda s: jnp.full((shape[0],), s)
    x, _ = corr(kc, x, vec(t), vec(tn))
    x, x_mean = pred(kp, x, vec(t), vec(tn))
    return (x, x_mean), None

  init_key, key = jax.random.split(key)
  x = sde.prior_sampling(init_key, shape)
  (x, x_mean), _ = jax.lax.scan(body, (x, x), (jax.random.split(key, n), grid, t_next))
  return (x_mean if denoise else x), pc_nfe(n, predictor, corrector, n_steps_each)


def pc_nfe(num_steps: int, predictor: str, corrector: str, n_steps_each: int) -> int:
  """Score evaluations of a PC run: one per predictor step, n_steps_each per corrector."""
  return num_steps * ((predictor != 'none') + (corrector != 'none') * n_steps_each)


def get_sampler(config, sde: sde_lib.SDE, shape: tuple[int, ...]):
  """Binds `config.sampling.*` into `sample(key, score_fn) -> (x, nfe)`.

  Returns:
    The sampler and its NFE (a Python int, known before running it).
  """
  s = config.sampling
  lookup(PREDICTORS, s.predictor, 'sampling.predictor')
  lookup(CORRECTORS, s.corrector, 'sampling.corrector')
  if s.method != 'pc':
    raise ConfigError(f"sampling.method={s.method!r} is unknown; valid: pc")
  sampler = functools.partial(
      pc_sample, sde=sde, shape=shape, predictor=s.predictor, corrector=s.corrector,
      snr=s.snr, n_steps_each=s.n_steps_each, probability_flow=s.probability_flow,
      denoise=s.noise_removal, eps=s.eps, num_steps=s.num_steps or None)
  return sampler, pc_nfe(s.num_steps or sde.N, s.predictor, s.corrector, s.n_steps_each)
