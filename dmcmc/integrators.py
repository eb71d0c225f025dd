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

EDM finishers are edm.edm_sample with N + 1 levels sigma_n ... sigma_min, 0: its last
Euler step to sigma = 0 is x + (0 - sigma)(x - D)/sigma = D(x; sigma_min), which is
exactly the Tweedie step, so it is counted as such. The t-space finishers map
x_hat to x_t = alpha(t_n) x_hat, t_n = sde.t_from_ve_sigma(sigma_n), and reuse
sampling's predictors and solver with per-sample time grids.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

import edm
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
  step = sampling.euler_maruyama(sde, score_fn, probability_flow)

  def finish(key, x_hat, sigma_start):
    ts = _t_grid(sde, sigma_start, sigma_min, num_steps)
    x = _to_x(sde, x_hat, ts[0])
    x, _ = jax.lax.scan(lambda x, a: (step(a[0], x, a[1], a[2])[0], None), x,
                        (jax.random.split(key, num_steps), ts[:-1], ts[1:]))
    return sde.tweedie(score_fn, x, ts[-1]), num_steps

  return finish


def euler_maruyama(sde, score_fn, sigma_min, num_steps, **_):
  """Euler-Maruyama on the reverse SDE from t(sigma_n) to t(sigma_min)."""
  return _predictor_finisher(sde, score_fn, sigma_min, num_steps, probability_flow=False)


def pf_ode_fixed(sde, score_fn, sigma_min, num_steps, **_):
  """Euler on the probability-flow ODE from t(sigma_n) to t(sigma_min)."""
  return _predictor_finisher(sde, score_fn, sigma_min, num_steps, probability_flow=True)


def reverse_diffusion(sde, score_fn, sigma_min, num_steps, **_):
  """Reverse diffusion (Song et al. 2021, Eq. 46) of the VE view on a per-sample ladder.

  sigma_i geometric from sigma_n to sigma_min (SMLD's ladder shape), and
  x_{i+1} = x_i + (sigma_i^2 - sigma_{i+1}^2) s(x_i, sigma_i) + sqrt(sigma_i^2 - sigma_{i+1}^2) z:
  for a VE SDE this is sampling.reverse_diffusion on that ladder.
  """

  def finish(key, x_hat, sigma_start):
    sig = sde_lib.geometric_sigmas(sigma_start, sigma_min, num_steps + 1)   # [N + 1, B]

    def body(x, a):
      k, s, s_next = a
      var = jnp.maximum(s ** 2 - s_next ** 2, 0.)   # sigma_n = sigma_min: 0, not -ulp
      x = (x + bcast(var, x) * sde.ve_score(score_fn, x, s)
           + bcast(jnp.sqrt(var), x) * jax.random.normal(k, x.shape))
      return x, None

    x, _ = jax.lax.scan(body, x_hat, (jax.random.split(key, num_steps), sig[:-1], sig[1:]))
    return sde.ve_denoise(score_fn, x, sig[-1]), num_steps

  return finish


def _edm(sde, score_fn, sigma_min, num_steps, *, s_churn, rho=7., **_):
  def finish(key, x_hat, sigma_start):
    x, nfe = edm.edm_sample(key, score_fn, sde, x_hat, sigma_max=sigma_start,
                            sigma_min=sigma_min, num_steps=num_steps + 1, rho=rho,
                            s_churn=s_churn)
    return x, nfe - TWEEDIE_NFE

  return finish


def edm_heun(sde, score_fn, sigma_min, num_steps, rho=7., **_):
  """Karras et al. 2022, Algorithm 1 over [sigma_n, sigma_min], then Tweedie."""
  return _edm(sde, score_fn, sigma_min, num_steps, s_churn=0., rho=rho)


def edm_stochastic(sde, score_fn, sigma_min, num_steps, s_churn=40., rho=7., **_):
  """Karras et al. 2022, Algorithm 2 (churn s_churn) over [sigma_n, sigma_min], then Tweedie."""
  if s_churn <= 0:
    raise ConfigError(f'dmcmc.s_churn={s_churn} must be > 0 for edm_stochastic '
                      '(0 is edm_heun)')
  return _edm(sde, score_fn, sigma_min, num_steps, s_churn=s_churn, rho=rho)


def pf_ode_adaptive(sde, score_fn, sigma_min, num_steps=None, rtol=1e-5, atol=1e-5,
                    method='dopri5', **_):
  """The PF ODE, adaptive (diffrax), per-sample start: t(u) = t_n + u (t_min - t_n), u in [0, 1].

  dx/du = f~(x, t(u)) (t_min - t_n) with f~ the PF drift (sde.reverse, Eq. 13). The
  step-size controller sees the whole batch, so every sample gets the batch's NFE.
  """
  del num_steps
  rsde = sde.reverse(score_fn, probability_flow=True)

  def finish(key, x_hat, sigma_start):
    del key
    t0 = sde.t_from_ve_sigma(sigma_start)
    t1 = sde.t_from_ve_sigma(jnp.full_like(sigma_start, sigma_min))
    dt = t1 - t0

    def field(u, x):
      return rsde.sde(x, t0 + u * dt)[0] * bcast(dt, x)

    x, nfe = sampling.solve_ode(field, _to_x(sde, x_hat, t0), 0., 1., rtol=rtol, atol=atol,
                                method=method)
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


def get_finisher(name: str, sde: sde_lib.SDE, score_fn, sigma_min: float, num_steps: int,
                 field: str = 'dmcmc.integrator', **options):
  """`finish(key, x_hat [B, ...], sigma_start [B]) -> (x0 [B, ...], integrator_nfe)`.

  The Tweedie step (TWEEDIE_NFE score calls) is included in x0, not in the NFE.
  options: s_churn, rho (EDM); rtol, atol, method (adaptive PF ODE).
  """
  build = lookup(FINISHERS, name, field)
  if name != 'pf_ode_adaptive' and num_steps < 1:
    raise ConfigError(f'{field} {name!r} needs a step budget >= 1, got {num_steps}')
  return build(sde, score_fn, sigma_min, num_steps, **options)


def static_nfe(name: str, num_steps: int) -> int | None:
  """Integrator NFE known before running (None for the adaptive solver)."""
  if name == 'pf_ode_adaptive':
    return None
  return 2 * num_steps if name.startswith('edm') else num_steps
