"""The probability-flow ODE (Song et al. 2021, Eq. 13): its adaptive diffrax solve,
the ODE sampler and encoder, a driver with per-sample ends (`sampling`'s driver
signature) and Tweedie's denoising step that ends them.

Apart from `sampling.py` (whose drivers walk fixed grids) because it is one idea
that three layers share: the ODE sampler (`sampling.get_sampler`'s 'ode'), the
likelihood (`likelihood.py`, the ODE with its divergence) and DMCMC's finishers
(`dmcmc/integrators.py`). The drift itself is `sde.reverse(score_fn, True)`.
"""
from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp

import sde_lib
from errors import lookup
from sde_lib import bcast

Array = jax.Array

# name -> (diffrax solver, score evaluations per attempted step, evaluations at the start).
# Dopri5/Tsit5/Bosh3 are FSAL: the last stage of a step is the first of the next.
SOLVERS = {
    'dopri5': (diffrax.Dopri5, 6, 1),
    'tsit5': (diffrax.Tsit5, 6, 1),
    'bosh3': (diffrax.Bosh3, 3, 1),
    'heun': (diffrax.Heun, 2, 0),
}


def pf_ode_drift(sde: sde_lib.SDE, score_fn):
  """f~(x, t) = f - g^2 score / 2 of the probability-flow ODE (Eq. 13), scalar t."""
  rsde = sde.reverse(score_fn, probability_flow=True)
  return lambda x, t: rsde.sde(x, jnp.full((x.shape[0],), t))[0]


def solve_ode(vector_field, y0, t0: float, t1: float, *, rtol: float, atol: float,
              method: str, max_steps: int = 16384):
  """Adaptive diffrax solve of dy/dt = vector_field(t, y) from t0 to t1 (either direction).

  Returns:
    y(t1) and the number of vector-field evaluations (a scalar array).
  """
  solver_cls, per_step, at_start = lookup(SOLVERS, method, 'sampling.ode_method')
  sol = diffrax.diffeqsolve(
      diffrax.ODETerm(lambda t, y, args: vector_field(t, y)), solver_cls(), t0=t0, t1=t1,
      dt0=None, y0=y0, stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
      max_steps=max_steps)
  return jax.tree.map(lambda y: y[-1], sol.ys), at_start + per_step * sol.stats['num_steps']


def pf_ode_driver(key: Array, score_fn, sde: sde_lib.SDE, x_init: Array, grid: Array, *,
                  rtol: float = 1e-5, atol: float = 1e-5, method: str = 'dopri5'):
  """A `sampling` driver: the PF ODE from t_0 = grid[0] to t_1 = grid[-1], adaptive.

  grid: [2] or per sample [2, B]. Per-sample ends are one solve in u in [0, 1]:
  t(u) = t_0 + u (t_1 - t_0), dx/du = f~(x, t(u)) (t_1 - t_0) with f~ the PF drift
  (Eq. 13). The step-size controller sees the whole batch, so every sample gets the
  batch's NFE, which is a scalar array (adaptive), unlike the fixed-grid drivers'.
  """
  del key
  rsde = sde.reverse(score_fn, probability_flow=True)
  t0 = jnp.broadcast_to(grid[0], x_init.shape[:1])
  dt = jnp.broadcast_to(grid[-1], x_init.shape[:1]) - t0

  def field(u, x):
    return rsde.sde(x, t0 + u * dt)[0] * bcast(dt, x)

  return solve_ode(field, x_init, 0., 1., rtol=rtol, atol=atol, method=method)


def ode_sample(key: Array, score_fn, sde: sde_lib.SDE, shape: tuple[int, ...], *,
               z: Array | None = None, eps: float = 1e-3, rtol: float = 1e-5,
               atol: float = 1e-5, method: str = 'dopri5', denoise: bool = False):
  """Samples (or decodes a latent z) by the probability-flow ODE from T to eps (Sec. 4.3).

  Returns:
    x [B, ...] and the NFE (a scalar array: the solver is adaptive).
  """
  x = sde.prior_sampling(key, shape) if z is None else z
  drift = pf_ode_drift(sde, score_fn)
  x, nfe = solve_ode(lambda t, y: drift(y, t), x, sde.T, eps,
                     rtol=rtol, atol=atol, method=method)
  if denoise:
    x, nfe = sde.tweedie(score_fn, x, jnp.full((x.shape[0],), eps)), nfe + 1
  return x, nfe


def ode_encode(score_fn, sde: sde_lib.SDE, x: Array, *, eps: float = 1e-3, rtol: float = 1e-5,
               atol: float = 1e-5, method: str = 'dopri5'):
  """Data -> latent: the PF ODE from eps to T. `ode_sample(z=...)` inverts it."""
  drift = pf_ode_drift(sde, score_fn)
  return solve_ode(lambda t, y: drift(y, t), x, eps, sde.T,
                   rtol=rtol, atol=atol, method=method)
