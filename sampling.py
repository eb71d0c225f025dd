"""Samplers: small pure step functions composed by `lax.scan`, run by drivers.

A predictor and a corrector share one signature:

    step(key, x, t, t_next) -> (x, x_mean)

where `t, t_next: [B]` are consecutive points of the time grid (the step size is
taken from the grid itself; score_sde uses dt = -1/N, which disagrees with its
own grid of N points on [eps, T] by a factor (T - eps) N / (N - 1)).
Any `score_fn(x, t)` works, including the exact ones in `tests/exact.py`.

Every driver (k-diffusion style: the start and the schedule are arguments) is

    driver(key, score_fn, sde, x_init [B, ...], grid, **options) -> (x, nfe)

with grid [N + 1] or per sample [N + 1, B]: N steps from grid[0] to grid[N], in
the driver's own coordinate: time t for `pc_driver`, the VE-view sigma for
`ald_ncsn_driver` and `edm.edm_sample` (their last point, 0, is the denoising
jump). `controllable.py`'s constrained drivers and DMCMC's finishers are these
on their own grids. `get_sampler` binds `config.sampling` through `RECIPES`,
which `controllable.py` shares. The PF ODE's sampler and driver are in `ode.py`.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from absl import logging

import edm
import sde_lib
from errors import ConfigError, lookup
from ode import SOLVERS, ode_sample
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
  """N points from T down to eps, then 0, where the last predictor step ends: [N + 1]."""
  return jnp.concatenate([jnp.linspace(sde.T, eps, num_steps), jnp.zeros((1,))])


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


def pc_driver(key: Array, score_fn, sde: sde_lib.SDE, x_init: Array, grid: Array, *,
              predictor: str = 'euler_maruyama', corrector: str | None = 'none',
              snr: float = 0.16, n_steps_each: int = 1, probability_flow: bool = False,
              denoise: bool = True, progress_every: int = 0,
              wrap_step: Callable[[Step, bool], Step] | None = None) -> tuple[Array, int]:
  """Predictor-corrector sampling (Song et al. 2021, Algorithm 1 / 2) from x_init.

  Each grid point runs the corrector then the predictor, as score_sde does. The
  discrete predictors and correctors step along the grid's own N-level ladder.

  Args:
    x_init: [B, ...] at grid[0], e.g. a prior draw.
    grid: times [N + 1] or per sample [N + 1, B], e.g. `time_grid`.
    corrector: a CORRECTORS name, or None for no corrector stage at all, in which
      each step's key goes to the predictor as is (DMCMC's finishers). 'none' is a
      step that takes its share of the key, so PC's noise stays the same.
    denoise: return the mean of the last predictor step (no noise added at the end).
    progress_every: log "step i/N" every this many steps (0: silent).
    wrap_step: None, or wrap_step(step, moves) -> step, applied to the predictor
      (moves=True: it ends at t_next) and the corrector (False): `controllable.py`.
  Returns:
    Samples [B, ...] and the number of score evaluations (a Python int).
  """
  n = grid.shape[0] - 1
  # score_fn keeps the SDE it was built with, so discrete models keep their labels.
  sde = dataclasses.replace(sde, N=n)
  pred, corr = _pc_steps(sde, score_fn, predictor, corrector or 'none', snr, n_steps_each,
                         probability_flow)
  if wrap_step is not None:
    pred, corr = wrap_step(pred, True), wrap_step(corr, False)
  x, x_mean = pc_loop(key, x_init, pred, None if corrector is None else corr, grid,
                      progress_every)
  return (x_mean if denoise else x), pc_nfe(n, predictor, corrector, n_steps_each)


def pc_sample(key: Array, score_fn, sde: sde_lib.SDE, shape: tuple[int, ...], *,
              eps: float = 1e-3, num_steps: int | None = None, **options) -> tuple[Array, int]:
  """`pc_driver` from a prior draw [B, ...] = shape on `time_grid(sde, eps, num_steps)`."""
  init_key, key = jax.random.split(key)
  return pc_driver(key, score_fn, sde, sde.prior_sampling(init_key, shape),
                   time_grid(sde, eps, num_steps or sde.N), **options)


def pc_loop(key: Array, x: Array, pred: Step, corr: Step | None, grid: Array,
            progress_every: int = 0) -> tuple[Array, Array]:
  """The PC loop from x at grid[0]: at step i, the corrector at grid[i], then the
  predictor from grid[i] to grid[i + 1].

  Args:
    grid: [N + 1] or per sample [N + 1, B].
    corr: None: no corrector stage; each step's key goes to the predictor as is.
  Returns:
    x and the mean of the last predictor step (both like x).
  """
  n = grid.shape[0] - 1
  vec = lambda s: jnp.broadcast_to(s, (x.shape[0],))

  def body(carry, inputs):
    x, _ = carry
    i, k, t, tn = inputs
    log_progress(i, n, progress_every, 'PC sampling')
    if corr is not None:
      kc, k = jax.random.split(k)
      x, _ = corr(kc, x, vec(t), vec(tn))
    x, x_mean = pred(k, x, vec(t), vec(tn))
    return (x, x_mean), None

  inputs = (jnp.arange(n), jax.random.split(key, n), grid[:-1], grid[1:])
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


def pc_nfe(num_steps: int, predictor: str, corrector: str | None, n_steps_each: int) -> int:
  """Score evaluations of a PC run: one per predictor step, n_steps_each per corrector."""
  return num_steps * ((predictor != 'none') + (corrector not in (None, 'none')) * n_steps_each)


# ----------------------------------------------------------------------------- NCSN v1

INITS = {
    'uniform': lambda key, shape, sde: jax.random.uniform(key, shape),    # Song & Ermon 2019
    'prior': lambda key, shape, sde: sde.prior_sampling(key, shape),      # N(0, sigma_1^2 I)
}


# NCSN v1's Langevin step at alpha_i, as a Langevin update x + eps s + sqrt(2 eps) z with
# eps = alpha_i / divisor:
# - 'paper': Song & Ermon 2019, Algorithm 1, x + alpha_i/2 s + sqrt(alpha_i) z (eps = alpha_i / 2);
# - 'code': ermongroup/ncsn, runners/anneal_runner.py, anneal_Langevin_dynamics:
#     step_size = step_lr * (sigma / sigmas[-1]) ** 2
#     noise = torch.randn_like(x_mod) * np.sqrt(step_size * 2)
#     x_mod = x_mod + step_size * grad + noise
#   called by its test() with step_lr 0.00002: eps = alpha_i, twice the paper's step at the
#   same epsilon. The published samples and scores came from that code.
LANGEVIN_CONVENTIONS = {'paper': 2., 'code': 1.}


def ncsn_grid(sde: sde_lib.SDE) -> Array:
  """NCSN v1's levels sigma_1 > ... > sigma_L, then 0: [L + 1].

  The L = sde.N levels are the VE SDE's geometric ladder (`sde.discrete_sigmas`,
  reversed), so NCSN v1's 1 -> 0.01, L = 10 is VESDE(sigma_max=1, sigma_min=0.01, N=10).
  """
  return jnp.concatenate([sde.discrete_sigmas[::-1], jnp.zeros((1,))])


def ald_ncsn_driver(key: Array, score_fn, sde: sde_lib.SDE, x_init: Array, grid: Array, *,
                    n_steps_each: int, step_lr: float, denoise: bool = False,
                    progress_every: int = 0, level_constraint=None,
                    convention: str = 'paper') -> tuple[Array, int]:
  """Annealed Langevin dynamics, Song & Ermon 2019, Algorithm 1, from x_init.

      for i = 1..L:  alpha_i = step_lr sigma_i^2 / sigma_L^2
        for t = 1..T:  x <- x + alpha_i / 2 s(x, sigma_i) + sqrt(alpha_i) z
      (denoise, NCSNv2's final step:  x <- x + sigma_L^2 s(x, sigma_L))

  With convention='code' the inner step is ermongroup/ncsn's x + alpha_i s + sqrt(2 alpha_i) z
  (`LANGEVIN_CONVENTIONS`): the paper's step at 2 step_lr.

  The score at sigma_i is score_fn(x, t_i) with t_i = sde.t_from_ve_sigma(sigma_i):
  sigma(t_i) = sigma_i, and a discrete model's score_fn labels it as score_sde
  does (models/utils.py).

  Args:
    x_init: [B, ...], e.g. U[0, 1] (the paper's; `INITS`).
    grid: [L + 1] or per sample [L + 1, B]: sigma_1 > ... > sigma_L, then 0 (`ncsn_grid`).
    n_steps_each: T, Langevin steps per noise level.
    step_lr: the paper's epsilon (2e-5).
    progress_every: log "step i/L" every this many noise levels (0: silent).
    level_constraint: None, or level_constraint(key, sigma_i) -> put, with put(x) -> x
      applied before a level's first step and after each (NCSN inpainting,
      `controllable.py`); its key is split off the level's.
    convention: 'paper' or 'code' (`LANGEVIN_CONVENTIONS`).
  Returns:
    Samples [B, ...] and the number of score evaluations, L T (+1 with denoise).
  """
  _check_ncsn_sde(sde)
  divisor = lookup(LANGEVIN_CONVENTIONS, convention, 'sampling.langevin_convention')
  sigmas = grid[:-1]
  times, step_sizes = sde.t_from_ve_sigma(sigmas), step_lr * sigmas ** 2 / sigmas[-1] ** 2
  num_levels = sigmas.shape[0]
  vec = lambda s: jnp.broadcast_to(s, (x_init.shape[0],))

  def level(x, inputs):
    i, k, t, sigma, alpha = inputs
    log_progress(i, num_levels, progress_every, 'annealed Langevin level')
    put = lambda x: x
    if level_constraint is not None:
      k_put, k = jax.random.split(k)
      put = level_constraint(k_put, sigma)
      x = put(x)

    def one(x, k):
      # x + alpha/2 s + sqrt(alpha) z is a Langevin update with eps = alpha / 2 ('paper');
      # 'code' takes eps = alpha (alpha / 1. is exact, so 'paper' is unchanged bit for bit).
      z = jax.random.normal(k, x.shape)
      return put(langevin_update(x, score_fn(x, vec(t)), z, alpha / divisor)[0]), None

    return jax.lax.scan(one, x, jax.random.split(k, n_steps_each))[0], None

  x, _ = jax.lax.scan(level, x_init, (jnp.arange(num_levels), jax.random.split(key, num_levels),
                                      times, sigmas, step_sizes))
  if denoise:
    x = sde.ve_denoise(score_fn, x, vec(sigmas[-1]))   # Tweedie at sigma_L
  return x, ald_ncsn_nfe(num_levels, n_steps_each, denoise)


def annealed_langevin_ncsn(key: Array, score_fn, sde: sde_lib.SDE, shape: tuple[int, ...], *,
                           init: str = 'uniform', **options) -> tuple[Array, int]:
  """`ald_ncsn_driver` from an `INITS` draw ([B, ...] = shape) on `ncsn_grid(sde)`.

  init: 'uniform' (the paper's U[0, 1]) or 'prior' (N(0, sigma_1^2 I)).
  """
  draw_init = lookup(INITS, init, 'init')
  init_key, key = jax.random.split(key)
  return ald_ncsn_driver(key, score_fn, sde, draw_init(init_key, shape, sde), ncsn_grid(sde),
                         **options)


def _check_ncsn_sde(sde: sde_lib.SDE) -> None:
  if sde.discrete_scheme != 'smld':   # NCSN v1 anneals SMLD's ladder
    raise ConfigError(f"sampling.method='ald_ncsn' needs training.sde=vesde, not "
                      f'{type(sde).__name__}: NCSN v1 anneals VE noise levels')


def ald_ncsn_nfe(num_levels: int, n_steps_each: int, denoise: bool) -> int:
  """Score evaluations of `ald_ncsn_driver`: L T, plus one to denoise."""
  return num_levels * n_steps_each + int(denoise)


# ----------------------------------------------------------------------------- from config

class Recipe(NamedTuple):
  """A driver with `config.sampling` bound; grid() is called inside the traced sampler."""
  driver: Callable        # driver(key, score_fn, sde, x_init, grid, **options) -> (x, nfe)
  init: Callable          # init(key, shape) -> x_init, the driver's usual start
  grid: Callable          # grid() -> [N + 1]
  options: dict
  nfe: int
  num_steps: int


def _pc_recipe(s, sde: sde_lib.SDE) -> Recipe:
  n = s.num_steps or sde.N
  # Building the steps is cheap and pure; doing it now (with no score) makes an
  # impossible SDE/step pair a ConfigError here rather than at trace time.
  _pc_steps(dataclasses.replace(sde, N=n), None, s.predictor, s.corrector, s.snr,
            s.n_steps_each, s.probability_flow)
  options = dict(predictor=s.predictor, corrector=s.corrector, snr=s.snr,
                 n_steps_each=s.n_steps_each, probability_flow=s.probability_flow,
                 denoise=s.noise_removal, progress_every=s.get('progress_every', 0))
  eps = s.eps   # read now: the config may change after the sampler is built
  return Recipe(pc_driver, sde.prior_sampling, lambda: time_grid(sde, eps, n), options,
                pc_nfe(n, s.predictor, s.corrector, s.n_steps_each), n)


def _ald_ncsn_recipe(s, sde: sde_lib.SDE) -> Recipe:
  _check_ncsn_sde(sde)
  ladder = dataclasses.replace(sde, N=s.num_steps or sde.N)   # L levels on the model's range
  convention = s.get('langevin_convention', 'paper')
  lookup(LANGEVIN_CONVENTIONS, convention, 'sampling.langevin_convention')
  options = dict(n_steps_each=s.n_steps_each, step_lr=s.step_lr, denoise=s.noise_removal,
                 progress_every=s.get('progress_every', 0), convention=convention)
  return Recipe(ald_ncsn_driver, lambda key, shape: INITS['uniform'](key, shape, sde),
                lambda: ncsn_grid(ladder), options,
                ald_ncsn_nfe(ladder.N, s.n_steps_each, s.noise_removal), ladder.N)


def _edm_recipe(s, sde: sde_lib.SDE) -> Recipe:
  """Karras et al.'s sampler over the SDE's VE-view range [ve_sigma(eps), ve_sigma(T)]."""
  n = s.num_steps or sde.N
  sigma_max = float(sde.ve_sigma(jnp.asarray(sde.T)))
  sigma_min = float(sde.ve_sigma(jnp.asarray(s.eps)))
  options = dict(s_churn=s.s_churn, s_noise=s.s_noise, s_tmin=s.s_tmin, s_tmax=s.s_tmax)
  rho = s.rho
  return Recipe(edm.edm_sample,
                lambda key, shape: sigma_max * jax.random.normal(key, shape),  # VE view of p_T
                lambda: edm.karras_sigmas(sigma_max, sigma_min, n, rho), options, 2 * n - 1, n)


RECIPES = {'pc': _pc_recipe, 'ald_ncsn': _ald_ncsn_recipe, 'edm': _edm_recipe}


def _from_recipe(s, sde: sde_lib.SDE, shape):
  r = RECIPES[s.method](s, sde)

  def sample(key, score_fn):
    init_key, key = jax.random.split(key)
    return r.driver(key, score_fn, sde, r.init(init_key, shape), r.grid(), **r.options)

  return sample, r.nfe


def _ode_from_config(s, sde: sde_lib.SDE, shape):
  lookup(SOLVERS, s.ode_method, 'sampling.ode_method')
  kw = dict(eps=s.eps, rtol=s.rtol, atol=s.atol, method=s.ode_method, denoise=s.noise_removal)
  sample = lambda key, score_fn: ode_sample(key, score_fn, sde, shape, **kw)
  return sample, None   # adaptive: the NFE is known only after the solve


SAMPLERS = {'pc': _from_recipe, 'ald_ncsn': _from_recipe, 'ode': _ode_from_config,
            'edm': _from_recipe}


def get_sampler(config, sde: sde_lib.SDE, shape: tuple[int, ...]):
  """Binds `config.sampling.*` into `sample(key, score_fn) -> (x, nfe)`.

  Returns:
    The sampler and its NFE: a Python int known before running it, or None for
    the adaptive ODE sampler, whose `sample` returns the NFE it used.
  """
  build = lookup(SAMPLERS, config.sampling.method, 'sampling.method')
  return build(config.sampling, sde, shape)
