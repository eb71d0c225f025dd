"""Finishers: take a chain state (x_hat, sigma_n) to data, then one Tweedie step.

Each finisher runs its N-step budget over [sigma_n, sigma_min] per sample and then
denoises with Tweedie's formula at sigma_min (one score call). The six:

| name              | scheme                                       | integrator NFE |
|-------------------|----------------------------------------------|----------------|
| edm_heun          | Karras et al. 2022, Algorithm 1               | 2N             |
| edm_stochastic    | Karras et al. 2022, Algorithm 2 (s_churn)     | 2N             |
| pf_ode_adaptive   | PF ODE (Eq. 13), diffrax adaptive, rtol/atol  | solver's count |
| pf_ode_fixed      | PF ODE, Euler, N steps linear in t            | N              |
| reverse_diffusion | Eq. 46 on a per-sample geometric sigma ladder | N              |
| euler_maruyama    | reverse SDE (Eq. 6), N steps linear in t      | N              |

Each is a per-sample grid from sigma_n (or t_n) to sigma_min, a driver of
`sampling`'s signature (key, score_fn, sde, x_init, grid) and Tweedie. EDM
finishers are edm.edm_sample with N + 1 levels sigma_n ... sigma_min, 0: its last
Euler step to sigma = 0 is x + (0 - sigma)(x - D)/sigma = D(x; sigma_min), which is
exactly the Tweedie step, so it is counted as such. The t-space finishers map
x_hat to x_t = alpha(t_n) x_hat, t_n = sde.t_from_ve_sigma(sigma_n), and run
sampling.pc_driver (euler_maruyama, no corrector) on per-sample time grids, or
ode.pf_ode_driver on per-sample ends; reverse_diffusion is `ve_reverse_diffusion`
on a per-sample sigma ladder.
"""
from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp

import edm
import ode
import sampling
import sde_lib
from errors import ConfigError, lookup
from sde_lib import bcast

Array = jax.Array
TWEEDIE_NFE = 1


def _t_grid(sde, sigma_start, sigma_min, n):
  """[n + 1, B] times linear in t from t(sigma_start) to t(sigma_min)."""
  t0 = sde.t_from_ve_sigma(sigma_start)
  t1 = sde.t_from_ve_sigma(jnp.full_like(sigma_start, sigma_min))
  frac = jnp.linspace(0., 1., n + 1)[:, None]
  return t0[None] + frac * (t1 - t0)[None]


def _to_x(sde, x_hat, t):
  return bcast(sde.alpha(t), x_hat) * x_hat


def _predictor_finisher(sde, score_fn, sigma_min, num_steps, *, probability_flow: bool):
  def finish(key, x_hat, sigma_start):
    ts = _t_grid(sde, sigma_start, sigma_min, num_steps)
    # corrector=None: a plain solver, each step's key to the predictor.
    x, nfe = sampling.pc_driver(key, score_fn, sde, _to_x(sde, x_hat, ts[0]), ts,
                                predictor='euler_maruyama', corrector=None,
                                probability_flow=probability_flow, denoise=False)
    return sde.tweedie(score_fn, x, ts[-1]), nfe

  return finish


def euler_maruyama(sde, score_fn, sigma_min, num_steps):
  """Euler-Maruyama on the reverse SDE from t(sigma_n) to t(sigma_min)."""
  return _predictor_finisher(sde, score_fn, sigma_min, num_steps, probability_flow=False)


def pf_ode_fixed(sde, score_fn, sigma_min, num_steps):
  """Euler on the probability-flow ODE from t(sigma_n) to t(sigma_min)."""
  return _predictor_finisher(sde, score_fn, sigma_min, num_steps, probability_flow=True)


def ve_reverse_diffusion(key, score_fn, sde, x_init, grid) -> tuple[Array, int]:
  """A driver (`sampling`'s signature): reverse diffusion of the VE view on the grid's levels.

  x_{i+1} = x_i + (sigma_i^2 - sigma_{i+1}^2) s(x_i, sigma_i) + sqrt(sigma_i^2 - sigma_{i+1}^2) z
  (Song et al. 2021, Eq. 46 for a VE SDE), x the VE view x_hat, s its score
  (`sde.ve_score`), grid the levels sigma_i: [N + 1] or per sample [N + 1, B].
  sampling.reverse_diffusion takes its steps from the SDE's own N-level ladder
  instead, so it cannot follow a per-sample ladder.
  """
  def step(k, x, s, s_next):
    var = jnp.maximum(s ** 2 - s_next ** 2, 0.)   # sigma_n = sigma_min: 0, not -ulp
    x_mean = x + bcast(var, x) * sde.ve_score(score_fn, x, s)
    return x_mean + bcast(jnp.sqrt(var), x) * jax.random.normal(k, x.shape), x_mean

  return sampling.pc_loop(key, x_init, step, None, grid)[0], grid.shape[0] - 1


def reverse_diffusion(sde, score_fn, sigma_min, num_steps):
  """Reverse diffusion (Eq. 46) of the VE view on a per-sample geometric ladder:
  sigma_i from sigma_n to sigma_min (SMLD's ladder shape), `ve_reverse_diffusion`."""
  def finish(key, x_hat, sigma_start):
    sig = sde_lib.geometric_sigmas(sigma_start, sigma_min, num_steps + 1)   # [N + 1, B]
    x, nfe = ve_reverse_diffusion(key, score_fn, sde, x_hat, sig)
    return sde.ve_denoise(score_fn, x, sig[-1]), nfe

  return finish


def _edm(sde, score_fn, sigma_min, num_steps, *, s_churn, rho):
  def finish(key, x_hat, sigma_start):
    grid = edm.karras_sigmas(sigma_start, sigma_min, num_steps + 1, rho)   # [N + 2, B]
    x, nfe = edm.edm_sample(key, score_fn, sde, x_hat, grid, s_churn=s_churn)
    return x, nfe - TWEEDIE_NFE

  return finish


def edm_heun(sde, score_fn, sigma_min, num_steps, *, rho=7.):
  """Karras et al. 2022, Algorithm 1 over [sigma_n, sigma_min], then Tweedie."""
  return _edm(sde, score_fn, sigma_min, num_steps, s_churn=0., rho=rho)


def edm_stochastic(sde, score_fn, sigma_min, num_steps, *, s_churn=40., rho=7.):
  """Karras et al. 2022, Algorithm 2 (churn s_churn) over [sigma_n, sigma_min], then Tweedie."""
  if s_churn <= 0:
    raise ConfigError(f'dmcmc.s_churn={s_churn} must be > 0 for edm_stochastic '
                      '(0 is edm_heun)')
  return _edm(sde, score_fn, sigma_min, num_steps, s_churn=s_churn, rho=rho)


def pf_ode_adaptive(sde, score_fn, sigma_min, num_steps=None, *, rtol=1e-5, atol=1e-5,
                    method='dopri5'):
  """The PF ODE, adaptive (diffrax, `ode.pf_ode_driver`), from t(sigma_n) to t(sigma_min)."""
  del num_steps

  def finish(key, x_hat, sigma_start):
    t0 = sde.t_from_ve_sigma(sigma_start)
    t1 = sde.t_from_ve_sigma(jnp.full_like(sigma_start, sigma_min))
    x, nfe = ode.pf_ode_driver(key, score_fn, sde, _to_x(sde, x_hat, t0), jnp.stack([t0, t1]),
                               rtol=rtol, atol=atol, method=method)
    return sde.tweedie(score_fn, x, t1), nfe

  return finish


FINISHERS = {
    'edm_heun': edm_heun,
    'edm_stochastic': edm_stochastic,
    'pf_ode_adaptive': pf_ode_adaptive,
    'pf_ode_fixed': pf_ode_fixed,
    'reverse_diffusion': reverse_diffusion,
    'euler_maruyama': euler_maruyama,
}


def _options(build) -> set[str]:
  """The keyword options a finisher builder takes (those after num_steps)."""
  return set(list(inspect.signature(build).parameters)[4:])


OPTIONS = sorted(set().union(*map(_options, FINISHERS.values())))   # the dmcmc.* fields


def get_finisher(name: str, sde: sde_lib.SDE, score_fn, sigma_min: float, num_steps: int,
                 field: str = 'dmcmc.integrator', **options):
  """`finish(key, x_hat [B, ...], sigma_start [B]) -> (x0 [B, ...], integrator_nfe)`.

  The Tweedie step (TWEEDIE_NFE score calls) is included in x0, not in the NFE.
  options: any of OPTIONS, the dmcmc.* fields (s_churn, rho: EDM; rtol, atol, method:
  adaptive PF ODE); each finisher takes its own and ignores the rest, so one config
  serves every finisher. Any other name is a ConfigError.
  """
  build = lookup(FINISHERS, name, field)
  for option in options:
    if option not in OPTIONS:
      raise ConfigError(f'dmcmc.{option} is not a finisher option; the options are '
                        f'{", ".join(OPTIONS)}')
  if name != 'pf_ode_adaptive' and num_steps < 1:
    raise ConfigError(f'{field} {name!r} needs a step budget >= 1, got {num_steps}')
  own = _options(build)
  return build(sde, score_fn, sigma_min, num_steps,
               **{k: v for k, v in options.items() if k in own})


def static_nfe(name: str, num_steps: int) -> int | None:
  """Integrator NFE known before running (None for the adaptive solver)."""
  if name == 'pf_ode_adaptive':
    return None
  return 2 * num_steps if name.startswith('edm') else num_steps
