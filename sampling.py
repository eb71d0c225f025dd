"""Samplers: small pure step functions composed by `lax.scan`.

A predictor and a corrector share one signature:

    step(key, x, t, t_next) -> (x, x_mean)

where `t, t_next: [B]` are consecutive points of the time grid (the step size is
taken from the grid itself; score_sde uses dt = -1/N, which disagrees with its
own grid of N points on [eps, T] by a factor (T - eps) N / (N - 1)).
Any `score_fn(x, t)` works, including the exact ones in `tests/exact.py`.

Two drivers turn steps into samplers: `pc_sample` (Song et al. 2021, PC) and
`annealed_langevin_ncsn` (Song & Ermon 2019, NCSN v1). `get_sampler` picks one
from `config.sampling.method` (the `SAMPLERS` registry).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import diffrax
import jax
import jax.numpy as jnp
from absl import logging

import edm
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


def ancestral_sampling(sde: sde_lib.SDE, score_fn, probability_flow: bool = False) -> Step:
  """Ancestral sampling of the SDE's own Markov chain on its N-level ladder.

  `sde.ancestral_step` (Song et al. 2021, Eq. 47: SMLD's chain for VE, DDPM's for VP).
  Sub-VP has no discrete chain, hence no ancestral scheme: a ConfigError, raised
  here when the step is built.
  """
  if probability_flow:
    raise ConfigError('sampling.predictor=ancestral_sampling samples a Markov chain; it has '
                      'no probability-flow form: set sampling.probability_flow=False')
  if sde.discrete_scheme is None:
    raise ConfigError('sampling.predictor=ancestral_sampling has no scheme for '
                      f'{type(sde).__name__} (only VESDE and VPSDE have a discrete chain); '
                      'use reverse_diffusion or euler_maruyama')

  def step(key, x, t, t_next):
    del t_next
    return sde.ancestral_step(x, score_fn(x, t), t, jax.random.normal(key, x.shape))

  return step


def no_predictor(sde, score_fn, probability_flow=False) -> Step:
  del sde, score_fn, probability_flow
  return lambda key, x, t, t_next: (x, x)


PREDICTORS = {
    'euler_maruyama': euler_maruyama,
    'reverse_diffusion': reverse_diffusion,
    'ancestral_sampling': ancestral_sampling,
    'none': no_predictor,
}


# ----------------------------------------------------------------------------- correctors

def langevin_update(x: Array, score: Array, z: Array, step_size: Array) -> tuple[Array, Array]:
  """One Langevin step x + eps s + sqrt(2 eps) z with step size eps: [B] or scalar.

  For a target N(m, v) and a fixed eps this is the AR(1) chain
  x' - m = (1 - eps/v)(x - m) + sqrt(2 eps) z, whose stationary variance is
  v / (1 - eps / (2 v)): the discretisation bias that MALA would correct.

  Returns:
    The new x and its mean x + eps s (both like x).
  """
  x_mean = x + bcast(step_size, x) * score
  return x_mean + bcast(jnp.sqrt(2. * step_size), x) * z, x_mean


def _langevin_chain(score_fn, n_steps: int, step_size_fn) -> Step:
  """`n_steps` Langevin updates at a fixed t; step_size_fn(t, grad, z) -> [B]."""

  def step(key, x, t, t_next):
    del t_next

    def one(carry, k):
      x, _ = carry
      grad = score_fn(x, t)
      z = jax.random.normal(k, x.shape)
      return langevin_update(x, grad, z, step_size_fn(t, grad, z)), None

    (x, x_mean), _ = jax.lax.scan(one, (x, x), jax.random.split(key, n_steps))
    return x, x_mean

  return step


def _batch_norm_mean(v: Array) -> Array:
  return jnp.linalg.norm(v.reshape(v.shape[0], -1), axis=-1).mean()


def langevin(sde: sde_lib.SDE, score_fn, snr: float, n_steps: int) -> Step:
  """Langevin MCMC with the signal-to-noise step rule (Song et al. 2021, Algorithm 5).

  eps_i = 2 alpha_i (snr |z| / |score|)^2, norms averaged over the batch as in
  score_sde; alpha_i from `sde.langevin_alpha` (1 - beta_i for VP, else 1).
  """

  def step_size(t, grad, z):
    return 2. * sde.langevin_alpha(t) * (snr * _batch_norm_mean(z) / _batch_norm_mean(grad)) ** 2

  return _langevin_chain(score_fn, n_steps, step_size)


def ald(sde: sde_lib.SDE, score_fn, snr: float, n_steps: int) -> Step:
  """Annealed Langevin dynamics as a corrector (score_sde's AnnealedLangevinDynamics).

  eps_i = 2 alpha_i (snr sigma_t)^2 with sigma_t the marginal std at t: Song &
  Ermon's alpha_i proportional to sigma_i^2 (2019, Algorithm 1) written with the SNR
  constant; alpha_i from `sde.langevin_alpha` (1 for VE and sub-VP).
  """

  def step_size(t, grad, z):
    del grad, z
    return 2. * sde.langevin_alpha(t) * (snr * sde.marginal_std(t)) ** 2

  return _langevin_chain(score_fn, n_steps, step_size)


def no_corrector(sde, score_fn, snr, n_steps) -> Step:
  del sde, score_fn, snr, n_steps
  return lambda key, x, t, t_next: (x, x)


CORRECTORS = {'langevin': langevin, 'ald': ald, 'none': no_corrector}


# ----------------------------------------------------------------------------- PC driver

def time_grid(sde: sde_lib.SDE, eps: float, num_steps: int) -> Array:
  """N points from T down to eps: [N]."""
  return jnp.linspace(sde.T, eps, num_steps)


def _pc_steps(sde, score_fn, predictor, corrector, snr, n_steps_each, probability_flow):
  """Builds (predictor step, corrector step); an impossible SDE/step pair raises here."""
  problem = sde.discrete_chain_problem()   # these steps use the chain's levels
  if problem and (corrector in ('langevin', 'ald') or
                  predictor in ('reverse_diffusion', 'ancestral_sampling')):
    raise ConfigError(f'sampling.num_steps={sde.N} is too few for {predictor}/{corrector}: '
                      f'{problem}, or euler_maruyama/none')
  pred = lookup(PREDICTORS, predictor, 'sampling.predictor')(sde, score_fn, probability_flow)
  corr = lookup(CORRECTORS, corrector, 'sampling.corrector')(sde, score_fn, snr, n_steps_each)
  return pred, corr


def pc_sample(key: Array, score_fn, sde: sde_lib.SDE, shape: tuple[int, ...], *,
              predictor: str = 'euler_maruyama', corrector: str = 'none', snr: float = 0.16,
              n_steps_each: int = 1, probability_flow: bool = False, denoise: bool = True,
              eps: float = 1e-3, num_steps: int | None = None,
              progress_every: int = 0) -> tuple[Array, int]:
  """Predictor-corrector sampling (Song et al. 2021, Algorithm 1 / 2).

  Each grid point runs the corrector then the predictor, as score_sde does.

  Args:
    shape: global sample shape [B, ...].
    denoise: return the mean of the last predictor step (no noise added at eps).
    progress_every: log "step i/N" every this many steps (0: silent).
  Returns:
    Samples [B, ...] and the number of score evaluations (a Python int).
  """
  n = num_steps or sde.N
  # The discrete predictors/correctors step along the sampler's own N-level grid.
  # score_fn keeps the SDE it was built with, so discrete models keep their labels.
  sde = dataclasses.replace(sde, N=n)
  pred, corr = _pc_steps(sde, score_fn, predictor, corrector, snr, n_steps_each,
                         probability_flow)
  init_key, key = jax.random.split(key)
  x, x_mean = pc_loop(key, sde.prior_sampling(init_key, shape), pred, corr,
                      time_grid(sde, eps, n), progress_every)
  return (x_mean if denoise else x), pc_nfe(n, predictor, corrector, n_steps_each)


def pc_loop(key: Array, x: Array, pred: Step, corr: Step, grid: Array,
            progress_every: int = 0) -> tuple[Array, Array]:
  """The PC loop from x at grid[0]: corrector then predictor at each point of `grid` [N].

  The last predictor step ends at t = 0. Constrained samplers (`controllable.py`)
  run this same loop with wrapped steps.

  Returns:
    x and the mean of the last predictor step (both like x).
  """
  n = grid.shape[0]
  t_next = jnp.concatenate([grid[1:], jnp.zeros((1,))])
  vec = lambda s: jnp.full((x.shape[0],), s)

  def body(carry, inputs):
    x, _ = carry
    i, k, t, tn = inputs
    log_progress(i, n, progress_every, 'PC sampling')
    kc, kp = jax.random.split(k)
    x, _ = corr(kc, x, vec(t), vec(tn))
    x, x_mean = pred(kp, x, vec(t), vec(tn))
    return (x, x_mean), None

  inputs = (jnp.arange(n), jax.random.split(key, n), grid, t_next)
  (x, x_mean), _ = jax.lax.scan(body, (x, x), inputs)
  return x, x_mean


def log_progress(i: Array, n: int, every: int, what: str) -> None:
  """Logs "<what>: step i+1/n" every `every` steps of a jitted loop (0: traces nothing).

  A host callback under `lax.cond`, so the device calls the host only at those steps."""
  if every <= 0:
    return

  def host(step):
    logging.info('%s: step %d/%d', what, int(step), n)

  done = i + 1
  jax.lax.cond((done % every == 0) | (done == n), lambda: jax.debug.callback(host, done),
               lambda: None)


def pc_nfe(num_steps: int, predictor: str, corrector: str, n_steps_each: int) -> int:
  """Score evaluations of a PC run: one per predictor step, n_steps_each per corrector."""
  return num_steps * ((predictor != 'none') + (corrector != 'none') * n_steps_each)


# ----------------------------------------------------------------------------- NCSN v1

INITS = {
    'uniform': lambda key, shape, sde: jax.random.uniform(key, shape),    # Song & Ermon 2019
    'prior': lambda key, shape, sde: sde.prior_sampling(key, shape),      # N(0, sigma_1^2 I)
}


def annealed_langevin_ncsn(key: Array, score_fn, sde: sde_lib.SDE, shape: tuple[int, ...], *,
                           n_steps_each: int, step_lr: float, denoise: bool = False,
                           init: str = 'uniform', progress_every: int = 0) -> tuple[Array, int]:
  """Annealed Langevin dynamics, Song & Ermon 2019, Algorithm 1.

      x_0 ~ U[0, 1]
      for i = 1..L:  alpha_i = step_lr sigma_i^2 / sigma_L^2
        for t = 1..T:  x <- x + alpha_i / 2 s(x, sigma_i) + sqrt(alpha_i) z
      (denoise, NCSNv2's final step:  x <- x + sigma_L^2 s(x, sigma_L))

  The L = sde.N noise levels sigma_1 > ... > sigma_L are the VE SDE's geometric
  ladder (`sde.discrete_sigmas`, reversed), so NCSN v1's 1 -> 0.01, L = 10 is
  VESDE(sigma_max=1, sigma_min=0.01, N=10). The score at sigma_i is
  score_fn(x, t_i) with t_i = sde.t_from_ve_sigma(sigma_i): sigma(t_i) = sigma_i,
  and a discrete model's score_fn labels it as score_sde does (models/utils.py).

  Args:
    shape: global sample shape [B, ...].
    n_steps_each: T, Langevin steps per noise level.
    step_lr: the paper's epsilon (2e-5).
    init: 'uniform' (the paper's U[0, 1]) or 'prior' (N(0, sigma_1^2 I)).
    progress_every: log "step i/L" every this many noise levels (0: silent).
  Returns:
    Samples [B, ...] and the number of score evaluations, L T (+1 with denoise).
  """
  _check_ncsn_sde(sde)
  draw_init = lookup(INITS, init, 'init')
  sigmas, times, step_sizes = ncsn_ladder(sde, step_lr)
  vec = lambda s: jnp.full((shape[0],), s)

  def level(x, inputs):
    i, k, t, alpha = inputs
    log_progress(i, sde.N, progress_every, 'annealed Langevin level')

    def one(x, k):
      # x + alpha/2 s + sqrt(alpha) z is a Langevin update with eps = alpha / 2.
      z = jax.random.normal(k, x.shape)
      return langevin_update(x, score_fn(x, vec(t)), z, alpha / 2.)[0], None

    return jax.lax.scan(one, x, jax.random.split(k, n_steps_each))[0], None

  init_key, key = jax.random.split(key)
  x = draw_init(init_key, shape, sde)
  x, _ = jax.lax.scan(level, x, (jnp.arange(sde.N), jax.random.split(key, sde.N), times,
                                 step_sizes))
  if denoise:   # Tweedie at sigma_L
    x = sde.ve_denoise(score_fn, x, vec(sigmas[-1]))
  return x, ald_ncsn_nfe(sde.N, n_steps_each, denoise)


def ncsn_ladder(sde: sde_lib.SDE, step_lr: float) -> tuple[Array, Array, Array]:
  """NCSN v1's levels sigma_1 > ... > sigma_L, their times t_i and alpha_i: [L] each."""
  sigmas = sde.discrete_sigmas[::-1]
  return sigmas, sde.t_from_ve_sigma(sigmas), step_lr * sigmas ** 2 / sigmas[-1] ** 2


def _check_ncsn_sde(sde: sde_lib.SDE) -> None:
  if sde.discrete_scheme != 'smld':   # NCSN v1 anneals SMLD's ladder
    raise ConfigError(f"sampling.method='ald_ncsn' needs training.sde=vesde, not "
                      f'{type(sde).__name__}: NCSN v1 anneals VE noise levels')


def ald_ncsn_nfe(num_levels: int, n_steps_each: int, denoise: bool) -> int:
  """Score evaluations of `annealed_langevin_ncsn`: L T, plus one to denoise."""
  return num_levels * n_steps_each + int(denoise)


# ----------------------------------------------------------------------------- PF ODE

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


def tweedie_denoise(sde: sde_lib.SDE, score_fn, x: Array, t: Array) -> Array:
  """E[x0 | x_t] by Tweedie's formula (`sde.tweedie`): one score evaluation."""
  return sde.tweedie(score_fn, x, t)


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
    x, nfe = tweedie_denoise(sde, score_fn, x, jnp.full((x.shape[0],), eps)), nfe + 1
  return x, nfe


def ode_encode(score_fn, sde: sde_lib.SDE, x: Array, *, eps: float = 1e-3, rtol: float = 1e-5,
               atol: float = 1e-5, method: str = 'dopri5'):
  """Data -> latent: the PF ODE from eps to T. `ode_sample(z=...)` inverts it."""
  drift = pf_ode_drift(sde, score_fn)
  return solve_ode(lambda t, y: drift(y, t), x, eps, sde.T,
                   rtol=rtol, atol=atol, method=method)


# ----------------------------------------------------------------------------- from config

def _pc_from_config(s, sde: sde_lib.SDE, shape):
  n = s.num_steps or sde.N
  # Building the steps is cheap and pure; doing it now (with no score) makes an
  # impossible SDE/step pair a ConfigError here rather than at trace time.
  _pc_steps(dataclasses.replace(sde, N=n), None, s.predictor, s.corrector, s.snr,
            s.n_steps_each, s.probability_flow)
  sampler = functools.partial(
      pc_sample, sde=sde, shape=shape, predictor=s.predictor, corrector=s.corrector,
      snr=s.snr, n_steps_each=s.n_steps_each, probability_flow=s.probability_flow,
      denoise=s.noise_removal, eps=s.eps, num_steps=n,
      progress_every=s.get('progress_every', 0))
  return sampler, pc_nfe(n, s.predictor, s.corrector, s.n_steps_each)


def _ald_ncsn_from_config(s, sde: sde_lib.SDE, shape):
  _check_ncsn_sde(sde)
  sde = dataclasses.replace(sde, N=s.num_steps or sde.N)   # L levels on the model's range
  sampler = functools.partial(
      annealed_langevin_ncsn, sde=sde, shape=shape, n_steps_each=s.n_steps_each,
      step_lr=s.step_lr, denoise=s.noise_removal, progress_every=s.get('progress_every', 0))
  return sampler, ald_ncsn_nfe(sde.N, s.n_steps_each, s.noise_removal)


def _ode_from_config(s, sde: sde_lib.SDE, shape):
  lookup(SOLVERS, s.ode_method, 'sampling.ode_method')
  sampler = functools.partial(ode_sample, sde=sde, shape=shape, eps=s.eps, rtol=s.rtol,
                              atol=s.atol, method=s.ode_method, denoise=s.noise_removal)
  return sampler, None   # adaptive: the NFE is known only after the solve


def _edm_from_config(s, sde: sde_lib.SDE, shape):
  """Karras et al.'s sampler over the SDE's VE-view range [ve_sigma(eps), ve_sigma(T)]."""
  n = s.num_steps or sde.N
  sigma_max = float(sde.ve_sigma(jnp.asarray(sde.T)))
  sigma_min = float(sde.ve_sigma(jnp.asarray(s.eps)))

  def sampler(key, score_fn):
    init_key, key = jax.random.split(key)
    x = sigma_max * jax.random.normal(init_key, shape)   # the VE view of the prior
    return edm.edm_sample(key, score_fn, sde, x, sigma_max=sigma_max, sigma_min=sigma_min,
                          num_steps=n, rho=s.rho, s_churn=s.s_churn, s_noise=s.s_noise,
                          s_tmin=s.s_tmin, s_tmax=s.s_tmax)

  return sampler, 2 * n - 1


SAMPLERS = {'pc': _pc_from_config, 'ald_ncsn': _ald_ncsn_from_config, 'ode': _ode_from_config,
            'edm': _edm_from_config}


def get_sampler(config, sde: sde_lib.SDE, shape: tuple[int, ...]):
  """Binds `config.sampling.*` into `sample(key, score_fn) -> (x, nfe)`.

  Returns:
    The sampler and its NFE: a Python int known before running it, or None for
    the adaptive ODE sampler, whose `sample` returns the NFE it used.
  """
  build = lookup(SAMPLERS, config.sampling.method, 'sampling.method')
  return build(config.sampling, sde, shape)
