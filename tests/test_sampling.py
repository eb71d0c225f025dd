"""Samplers against exact answers: exact scores, no training.

- Every predictor x corrector pair on VE, VP and sub-VP draws the 2-D mixture
  `exact.default_gmm(2)` with its exact score; the samples' mean and covariance
  must match the mixture's within 4 Monte Carlo standard errors plus a
  discretisation allowance measured with 64,000 samples (see ALLOWANCE).
- A Langevin chain on a Gaussian is an AR(1) process with a closed-form
  stationary variance; the shared update and the correctors reproduce it.
- On Gaussian data every step is affine, so the output law of ancestral
  sampling on a coarse ladder is known exactly (`ancestral_output_law`; NCSN v1's
  annealed Langevin dynamics, likewise, in tests/test_ncsn_sampling.py).
- The returned NFE equals the number of score calls, counted eagerly.
"""
import dataclasses
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import distances

import sampling
import sde_lib
from configs.defaults import get_default_configs
from errors import ConfigError
from tests import exact

GMM = exact.default_gmm(2)
SDES = {'ve': (sde_lib.VESDE(sigma_max=10.), 1e-5),   # sigma_max ~ the mixture's diameter
        'vp': (sde_lib.VPSDE(), 1e-3),
        'subvp': (sde_lib.subVPSDE(), 1e-3)}
PREDICTORS = ['euler_maruyama', 'reverse_diffusion', 'ancestral_sampling', 'none']
CORRECTORS = ['langevin', 'ald', 'none']
PAIRS = [(p, c) for p, c in itertools.product(PREDICTORS, CORRECTORS) if (p, c) != ('none', 'none')]
N_STEPS, BATCH = 200, 4000

# Discretisation allowance (absolute, on any entry of the mean / covariance) at
# N_STEPS = 200, snr = 0.16 with a predictor; snr = 0.3 and 5 steps per level
# corrector-only. Measured with 64,000 samples (their own standard error is
# 0.008 on the mean, 0.024 on the covariance), largest over each class:
#   with a predictor: VE reverse_diffusion/none has the largest bias, 0.075 on the
#     mean and 0.22 on the covariance (VP/sub-VP pairs: under 0.03 / 0.06);
#   corrector only: the chain lags the annealed marginals and leaves ~2% of the
#     heaviest mode's weight behind (0.50 -> 0.48): up to 0.088 / 0.165;
#   sub-VP ALD corrector only: its step 2 (snr std)^2 uses sub-VP's std = 1 - alpha^2,
#     far below the VP one at small t, so the chain cannot follow the growing means
#     alpha(t) mu_k: the modes end at ~0.92 mu_k (VP: 0.98), under-dispersed: 0.125 / 0.56.
ALLOWANCE = {'predictor': (0.1, 0.3), 'corrector_only': (0.12, 0.25),
             'subvp_ald_only': (0.17, 0.75)}


def mixture_moments(gmm):
  """Exact mean [D], covariance [D, D], and the per-sample std of x and of
  (x - m)(x - m)^T [D, D] (from 10^6 draws), which set the standard errors."""
  w, mu, s = (np.asarray(a, np.float64) for a in (gmm.weights, gmm.means, gmm.stds))
  mean = w @ mu
  second = sum(wk * (sk ** 2 * np.eye(gmm.dim) + np.outer(m, m)) for wk, m, sk in zip(w, mu, s))
  d = np.asarray(gmm.sample(jax.random.PRNGKey(123), 1_000_000), np.float64) - mean
  return mean, second - np.outer(mean, mean), d.std(0), (d[:, :, None] * d[:, None, :]).std(0)


MEAN, COV, SD_X, SD_XX = mixture_moments(GMM)


def sampling_config(sde_name, **fields):
  config = get_default_configs()
  config.training.sde = {'ve': 'vesde', 'vp': 'vpsde', 'subvp': 'subvpsde'}[sde_name]
  for name, value in fields.items():
    setattr(config.sampling, name, value)
  return config


@pytest.mark.parametrize('sde_name', list(SDES))
@pytest.mark.parametrize('predictor,corrector', PAIRS, ids=lambda v: v)
def test_pc_sampler_matches_mixture_moments(sde_name, predictor, corrector):
  sde, eps = SDES[sde_name]
  only_corrector = predictor == 'none'
  config = sampling_config(sde_name, predictor=predictor, corrector=corrector, eps=eps,
                           num_steps=N_STEPS, snr=0.3 if only_corrector else 0.16,
                           n_steps_each=5 if only_corrector else 1)
  if sde_name == 'subvp' and predictor == 'ancestral_sampling':
    with pytest.raises(ConfigError, match='no scheme for subVPSDE') as err:
      sampling.get_sampler(config, sde, (BATCH, 2))   # at build time, before any tracing
    assert '\n' not in str(err.value)
    return
  sampler, nfe = sampling.get_sampler(config, sde, (BATCH, 2))
  per_step = (not only_corrector) + (corrector != 'none') * config.sampling.n_steps_each
  assert nfe == N_STEPS * per_step
  x = jax.jit(lambda k: sampler(k, GMM.score_fn(sde))[0])(jax.random.PRNGKey(1))
  x = np.asarray(x, np.float64)
  assert np.isfinite(x).all()

  cls = ('predictor' if not only_corrector else
         'subvp_ald_only' if (sde_name, corrector) == ('subvp', 'ald') else 'corrector_only')
  allow_mean, allow_cov = ALLOWANCE[cls]
  mean_err = np.abs(x.mean(0) - MEAN)
  cov_err = np.abs(np.cov(x.T) - COV)
  assert (mean_err <= 4 * SD_X / np.sqrt(BATCH) + allow_mean).all(), (mean_err, x.mean(0), MEAN)
  assert (cov_err <= 4 * SD_XX / np.sqrt(BATCH) + allow_cov).all(), (cov_err, np.cov(x.T), COV)


def ancestral_output_law(sde, m0, s0):
  """Exact mean and variance of `ancestral_sampling` (denoised) on data N(m0, s0^2).

  The score of level i is -(x - mu_i) / v_i, so each step of Eq. 47 is affine in x:
    VE:  x' = x + d_i s + sqrt(sigma_{i-1}^2 d_i / sigma_i^2) z,  d_i = sigma_i^2 - sigma_{i-1}^2;
    VP:  x' = (x + beta_i s) / sqrt(1 - beta_i) + sqrt(beta_i) z  (no noise at i = 0: denoise).
  """
  if sde.name == 'vesde':
    sigmas = np.asarray(sde.discrete_sigmas, np.float64)
    mean, var = 0., sigmas[-1] ** 2
    for i in range(sde.N - 1, -1, -1):
      prev2 = sigmas[i - 1] ** 2 if i else 0.
      d = sigmas[i] ** 2 - prev2
      c = 1. - d / (s0 ** 2 + sigmas[i] ** 2)
      mean, var = m0 + c * (mean - m0), c ** 2 * var + prev2 * d / sigmas[i] ** 2
    return mean, var
  betas = np.asarray(sde.discrete_betas, np.float64)
  abar = np.cumprod(1. - betas)
  mean, var = 0., 1.
  for i in range(sde.N - 1, -1, -1):
    mu, v, b = np.sqrt(abar[i]) * m0, abar[i] * s0 ** 2 + 1. - abar[i], betas[i]
    c = (1. - b / v) / np.sqrt(1. - b)
    mean, var = mu / np.sqrt(1. - b) + c * (mean - mu), c ** 2 * var + (b if i else 0.)
  return mean, var


@pytest.mark.parametrize('sde_name,n', [('ve', 10), ('vp', 30)])
def test_ancestral_sampling_on_a_coarse_ladder_has_its_exact_law(sde_name, n):
  """With Gaussian data and few levels the ancestral chain's own law, not the data's,
  is the reference: 5 standard errors, at an N where using the reverse-diffusion
  noise instead of Eq. 47's (VE), or dropping 1/sqrt(1 - beta) (VP), is far outside."""
  sde, eps = SDES[sde_name]
  sde = dataclasses.replace(sde, N=n)   # the score of an n-level discrete model
  m0, s0, b = 0.4, 0.5, 100_000
  data = exact.gaussian(1, std=s0, mean=m0)
  x, _ = jax.jit(lambda k: sampling.pc_sample(
      k, data.score_fn(sde, discrete=True), sde, (b, 1), predictor='ancestral_sampling',
      corrector='none', eps=eps))(jax.random.PRNGKey(4))
  mean, var = ancestral_output_law(sde, m0, s0)
  x = np.asarray(x, np.float64)
  np.testing.assert_allclose(x.var(), var, rtol=5 * np.sqrt(2 / b))           # 2.2%
  np.testing.assert_allclose(x.mean(), mean, atol=5 * np.sqrt(var / b))


def test_ancestral_rejects_probability_flow():
  config = sampling_config('vp', predictor='ancestral_sampling', probability_flow=True)
  with pytest.raises(ConfigError, match='probability_flow'):
    sampling.get_sampler(config, SDES['vp'][0], (8, 2))


# ----------------------------------------------------------------------------- Langevin

def test_langevin_update_has_the_ar1_stationary_variance():
  """x' = x + eps s + sqrt(2 eps) z with s = -(x - m)/v is x' - m = (1 - r)(x - m) + sqrt(2 eps) z,
  r = eps / v. Its stationary variance V solves V = (1 - r)^2 V + 2 eps:
  V = 2 eps / (r (2 - r)) = v / (1 - eps / (2 v)), above v by the discretisation bias."""
  v, m, n = 0.8 ** 2, 0.7, 200_000
  r = jnp.array([0.1, 0.5, 1.0])
  eps = r * v

  def body(x, k):
    z = jax.random.normal(k, x.shape)
    return sampling.langevin_update(x, -(x - m) / v, z, eps)[0], None

  # From x = m the variance after k steps is V (1 - (1 - r)^(2k)): 200 steps reach V.
  x, _ = jax.lax.scan(body, jnp.full((3, n), m), jax.random.split(jax.random.PRNGKey(0), 200))
  x = np.asarray(x, np.float64)
  expected = v / (1 - np.asarray(eps) / (2 * v))              # 1.053 v, 1.333 v, 2 v
  np.testing.assert_allclose(x.var(1), expected, rtol=5 * np.sqrt(2 / n))   # 5 SE: 1.6%
  np.testing.assert_allclose(x.mean(1), m, atol=5 * np.sqrt(expected.max() / n))


@pytest.mark.parametrize('sde_name,corrector', [('ve', 'ald'), ('vp', 'ald'), ('subvp', 'ald'),
                                                ('ve', 'langevin'), ('vp', 'langevin')])
def test_corrector_at_fixed_t_has_its_stationary_variance(sde_name, corrector):
  """Gaussian data N(m0, s0^2): p_t = N(a m0, v), v = a^2 s0^2 + std^2.

  ald: fixed eps = 2 alpha (snr std)^2, so V = v / (1 - eps / (2 v)) as above.
  langevin: eps = 2 alpha (snr E|z| / E|s|)^2 with batch-mean norms; with x ~ N(a m0, V)
  E|s| = E|z| sqrt(V) / v, so eps = 2 alpha snr^2 v^2 / V, and V = v / (1 - eps / (2 v))
  solves to V = v (1 + alpha snr^2) (exact for a large batch).
  alpha = 1 - beta_i for VP, 1 otherwise.
  """
  sde = dataclasses.replace(SDES[sde_name][0], N=100)
  m0, s0, snr, n = 0.3, 0.5, 0.5, 100_000
  data = exact.gaussian(1, std=s0, mean=m0)
  t = jnp.full((n,), 0.5)
  a, std = float(sde.alpha(t)[0]), float(sde.marginal_std(t)[0])
  v = a ** 2 * s0 ** 2 + std ** 2
  step = sampling.CORRECTORS[corrector](sde, data.score_fn(sde), snr, 200)
  k0, k1 = jax.random.split(jax.random.PRNGKey(2))
  x0 = a * m0 + np.sqrt(v) * jax.random.normal(k0, (n, 1))
  x, _ = jax.jit(step)(k1, x0, t, t)
  alpha = 1. - float(sde.discrete_betas[sde.timestep(t)][0]) if sde_name == 'vp' else 1.
  if corrector == 'langevin':
    expected = v * (1 + alpha * snr ** 2)
  else:
    eps = 2 * alpha * (snr * std) ** 2
    expected = v / (1 - eps / (2 * v))
  x = np.asarray(x, np.float64)
  assert expected > 1.05 * v                                    # the bias is visible at this n
  np.testing.assert_allclose(x.var(), expected, rtol=5 * np.sqrt(2 / n))   # 5 SE: 2.2%
  np.testing.assert_allclose(x.mean(), a * m0, atol=5 * np.sqrt(expected / n))


def test_unknown_method_lists_the_valid_ones():
  with pytest.raises(ConfigError, match='valid: ald_ncsn, edm, ode, pc'):
    sampling.get_sampler(sampling_config('vp', method='ddim'), SDES['vp'][0], (8, 2))


# ----------------------------------------------------------------------------- NFE

def counting(score_fn):
  """score_fn plus a call counter; with jit disabled every scan step runs in Python."""
  calls = []

  def counted(x, t):
    calls.append(1)
    return score_fn(x, t)

  return counted, calls


@pytest.mark.parametrize('sde_name,predictor,corrector', [
    ('ve', 'ancestral_sampling', 'langevin'), ('vp', 'reverse_diffusion', 'ald'),
    ('subvp', 'none', 'langevin'), ('vp', 'euler_maruyama', 'none')])
def test_pc_nfe_counts_score_calls(sde_name, predictor, corrector):
  sde, eps = SDES[sde_name]
  if (sde_name, predictor) == ('vp', 'reverse_diffusion'):
    # Its discrete chain needs N > beta_max (test_vp_chain_rejects_too_few_steps).
    sde = dataclasses.replace(sde, beta_max=3.)
  config = sampling_config(sde_name, predictor=predictor, corrector=corrector, eps=eps,
                           num_steps=4, n_steps_each=3)
  sampler, nfe = sampling.get_sampler(config, sde, (3, 2))
  score_fn, calls = counting(GMM.score_fn(sde))
  with jax.disable_jit():
    _, nfe_run = sampler(jax.random.PRNGKey(0), score_fn)
  assert len(calls) == nfe == nfe_run


def test_drivers_take_per_sample_grids():
  """pc_driver and ald_ncsn_driver on per-sample grids [N + 1, B]: sample b equals sample b
  of a run whose grid is column b for every sample (the noise is drawn for the whole batch,
  so the same key gives it the same draws; the same program, so exactly), and equal
  columns give the scalar grid's run.
  The corrector (ald, 2 steps) and NCSN's step sizes and denoising are per sample too."""
  b, n = 4, 10
  x0 = jax.random.normal(jax.random.PRNGKey(0), (b, 2))
  key = jax.random.PRNGKey(1)
  cases = []
  sde = sde_lib.VPSDE()
  starts = jnp.array([1., 0.8, 0.5, 0.3])
  # [N + 1, B]; ald on VP needs N > beta_max (test_vp_chain_rejects_too_few_steps)
  grid = jnp.concatenate([jnp.linspace(starts, 1e-3, 3 * n), jnp.zeros((1, b))])
  cases.append((lambda g: sampling.pc_driver(key, GMM.score_fn(sde), sde, x0, g, corrector='ald',
                                             n_steps_each=2),
                grid, sampling.time_grid(sde, 1e-3, 3 * n)))
  ve = sde_lib.VESDE(sigma_min=0.01, sigma_max=1., N=n)
  tops = jnp.array([1., 0.5, 0.2, 0.05])
  ladder = jnp.exp(jnp.linspace(jnp.log(tops), np.log(0.01), n))
  cases.append((lambda g: sampling.ald_ncsn_driver(key, GMM.score_fn(ve), ve, x0, g,
                                                   n_steps_each=2, step_lr=1e-3, denoise=True),
                jnp.concatenate([ladder, jnp.zeros((1, b))]), sampling.ncsn_grid(ve)))
  for driver, per_sample, scalar in cases:
    run = jax.jit(lambda g: driver(g)[0])
    out = run(per_sample)
    for i in range(b):
      np.testing.assert_allclose(out[i], run(jnp.repeat(per_sample[:, i:i + 1], b, 1))[i],
                                 rtol=1e-6, atol=1e-6)
    # A broadcast scalar and a stored column round differently in float32 (XLA fuses
    # them differently), amplified over 90 score calls: measured 1e-5; a wrong column is O(1).
    np.testing.assert_allclose(run(jnp.repeat(scalar[:, None], b, 1)), run(scalar),
                               rtol=0, atol=1e-4)
    assert np.abs(out[-1] - run(scalar)[-1]).max() > 1e-2   # the last column's grid matters


@pytest.mark.parametrize('predictor,corrector', [('reverse_diffusion', 'none'),
                                                 ('ancestral_sampling', 'none'),
                                                 ('euler_maruyama', 'langevin')])
def test_vp_chain_rejects_too_few_steps(predictor, corrector):
  """With N <= beta_max the DDPM chain's beta_i = beta_max / N reach 1, and these steps take
  sqrt(1 - beta_i) (NaN samples before this check): a ConfigError when the sampler is built."""
  config = sampling_config('vp', predictor=predictor, corrector=corrector, num_steps=20)
  with pytest.raises(ConfigError, match='num_steps=20 is too few'):
    sampling.get_sampler(config, SDES['vp'][0], (8, 2))
  config.sampling.num_steps = 21
  sampling.get_sampler(config, SDES['vp'][0], (8, 2))
  sampling.get_sampler(sampling_config('vp', num_steps=5), SDES['vp'][0], (8, 2))   # EM: fine


def test_progress_is_logged_every_k_steps_and_only_when_asked(monkeypatch):
  lines = []
  monkeypatch.setattr(sampling.logging, 'info', lambda fmt, *args: lines.append(fmt % args))
  sde, eps = SDES['vp']
  run = lambda every: jax.block_until_ready(sampling.pc_sample(
      jax.random.PRNGKey(0), GMM.score_fn(sde), sde, (4, 2), num_steps=5, eps=eps,
      progress_every=every)[0])
  run(0)
  jax.effects_barrier()
  assert lines == []
  run(2)
  jax.effects_barrier()
  assert lines == [f'PC sampling: step {i}/5' for i in (2, 4, 5)]


# ----------------------------------------------------------------------------- error vs NFE

SW_N, SW_STEPS = 20_000, (25, 250)      # VP's discrete chain needs N > 20
# SW_1 (distances.sliced_wasserstein, order=1) between two fresh 20,000-draw samples of the mixture
# is 0.015-0.03: mode-weight noise, sqrt(0.25 / n) x the ~5 between modes. Tolerances at
# 250 steps add the methods' own bias, measured (benchmarks/nfe_quality.py): VE's prior
# N(0, 10^2) misses p_T of this radius-3 mixture, which leaves mode weights off by ~1.5%
# (SW ~0.05); corrector-only chains lag the annealed marginals (up to 0.1); sub-VP ALD alone
# cannot follow the growing means (see ALLOWANCE above): 0.17 at 1,250 NFE.
SW_TOL = {'predictor': 0.1, 'corrector_only': 0.15, 'subvp_ald_only': 0.3}
SW_DEFAULT = {('ve', 'reverse_diffusion', 'langevin'), ('vp', 'euler_maruyama', 'none'),
              ('subvp', 'reverse_diffusion', 'ald')}


def sliced_w1_of_pc(sde_name, predictor, corrector, num_steps):
  sde, eps = SDES[sde_name]
  only_corrector = predictor == 'none'
  config = sampling_config(sde_name, predictor=predictor, corrector=corrector, eps=eps,
                           num_steps=num_steps, snr=0.3 if only_corrector else 0.16,
                           n_steps_each=5 if only_corrector else 1)
  sampler, nfe = sampling.get_sampler(config, sde, (SW_N, 2))
  x, _ = jax.jit(lambda k: sampler(k, GMM.score_fn(sde)))(jax.random.PRNGKey(0))
  ref = GMM.sample(jax.random.PRNGKey(1), SW_N)
  return distances.sliced_wasserstein(x, ref, order=1, num_projections=128), nfe


@pytest.mark.parametrize('sde_name,predictor,corrector', [
    pytest.param(s, p, c, marks=() if (s, p, c) in SW_DEFAULT else pytest.mark.slow)
    for s in SDES for p, c in PAIRS if (s, p) != ('subvp', 'ancestral_sampling')])
def test_sliced_wasserstein_falls_with_nfe(sde_name, predictor, corrector):
  """Every pair x SDE (3 by default, the other 27 with -m slow) at 25 and 250 steps (x5 NFE
  corrector-only): below SW_TOL at 250 steps, and smaller than at 25."""
  (coarse, _), (fine, nfe) = (sliced_w1_of_pc(sde_name, predictor, corrector, n)
                              for n in SW_STEPS)
  kind = ('predictor' if predictor != 'none' else
          'subvp_ald_only' if (sde_name, corrector) == ('subvp', 'ald') else 'corrector_only')
  assert nfe == SW_STEPS[1] * ((predictor != 'none') + (corrector != 'none') * (
      5 if predictor == 'none' else 1))
  assert fine < SW_TOL[kind], (coarse, fine)
  assert fine < coarse, (coarse, fine)


# ----------------------------------------------------------------------------- exact chain laws
# On Gaussian data with the exact score every PC step is affine (tests/exact.py,
# `pc_output_law`), so the sampler's output law is known exactly at any N: the tolerance is
# 5 standard errors and nothing else. At N = 30 the chains are 2-28% off the data covariance
# (their own discretisation error), so reading the next noise level, a halved or doubled step,
# or a wrong drift scale moves them by many standard errors.

CHAIN_DATA = exact.FullGaussian([0.6, -0.4], [[0.5, 0.3], [0.3, 0.4]])
CHAIN_1D = exact.FullGaussian([0.6], [[0.5]])
CHAIN_N, CHAIN_B = 30, 100_000
CHAIN_SDES = {
    've': (sde_lib.VESDE(sigma_min=0.01, sigma_max=10.), ('ve', 0.01, 10.), 1e-5),
    'vp': (sde_lib.VPSDE(), ('vp', 0.1, 20.), 1e-3),
    'subvp': (sde_lib.subVPSDE(), ('subvp', 0.1, 20.), 1e-3),
}


def chain_case(sde_name):
  sde, (kind, lo, hi), eps = CHAIN_SDES[sde_name]
  return sde, exact.ChainCoeffs(kind, CHAIN_N, lo, hi), eps


@pytest.mark.parametrize('sde_name,predictor,corrector,data', [
    ('ve', 'reverse_diffusion', 'none', CHAIN_DATA),
    ('ve', 'reverse_diffusion', 'ald', CHAIN_DATA),
    ('ve', 'euler_maruyama', 'langevin', CHAIN_1D),
    ('vp', 'reverse_diffusion', 'langevin', CHAIN_1D),
    ('vp', 'euler_maruyama', 'ald', CHAIN_DATA),
    ('subvp', 'reverse_diffusion', 'ald', CHAIN_DATA),
    pytest.param('ve', 'euler_maruyama', 'none', CHAIN_DATA, marks=pytest.mark.slow),
    pytest.param('vp', 'reverse_diffusion', 'none', CHAIN_DATA, marks=pytest.mark.slow),
    pytest.param('subvp', 'euler_maruyama', 'none', CHAIN_DATA, marks=pytest.mark.slow),
], ids=lambda v: v if isinstance(v, str) else f'{v.dim}d')
def test_pc_sampler_has_the_exact_law_of_its_chain(sde_name, predictor, corrector, data):
  """Mean and covariance of 100,000 samples within 5 standard errors of the chain's exact
  law. The langevin corrector's batch-norm step is taken at its large-batch limit (1-D, where
  E|s| is a folded normal); its finite-batch fluctuation is O(1/sqrt(B)) per step and
  averages over the 30 steps."""
  sde, coeffs, eps = chain_case(sde_name)
  # snr 0.3: the corrector's stationary bias eps / (2 v) is ~9% of the variance, so a step
  # size off by 2x moves the output by ~10 standard errors (at 0.16 it would be ~3).
  snr = 0.3
  x, _ = jax.jit(lambda k: sampling.pc_sample(
      k, data.score_fn(sde), sde, (CHAIN_B, data.dim), predictor=predictor, corrector=corrector,
      snr=snr, eps=eps, num_steps=CHAIN_N))(jax.random.PRNGKey(11))
  mean, cov = exact.pc_output_law(data, coeffs, eps, predictor, corrector, snr=snr)
  exact.assert_gaussian_moments(x, mean, cov)


@pytest.mark.parametrize('sde_name', list(CHAIN_SDES))
@pytest.mark.parametrize('predictor', ['reverse_diffusion', 'euler_maruyama'])
def test_probability_flow_predictors_are_the_exact_affine_map(sde_name, predictor):
  """reverse_diffusion and Euler with probability_flow=True are deterministic: on Gaussian
  data each sample's output is A x_T + b with (A, b) the product of the exact steps
  (`exact.pf_affine_map`). float32 over 30 steps: 1e-4 relative to the output scale."""
  sde, coeffs, eps = chain_case(sde_name)
  sde = dataclasses.replace(sde, N=CHAIN_N)
  score_fn = CHAIN_DATA.score_fn(sde)
  pred = sampling.PREDICTORS[predictor](sde, score_fn, True)
  corr = sampling.CORRECTORS['none'](sde, score_fn, 0.16, 1)
  x_t = coeffs.prior() * jax.random.normal(jax.random.PRNGKey(5), (1000, 2))
  _, out = jax.jit(lambda k, x: sampling.pc_loop(k, x, pred, corr,
                                                 sampling.time_grid(sde, eps, CHAIN_N)))(
      jax.random.PRNGKey(6), x_t)
  a_mat, b = exact.pf_affine_map(CHAIN_DATA, coeffs, eps, predictor)
  want = np.asarray(x_t, np.float64) @ a_mat.T + b
  np.testing.assert_allclose(np.asarray(out, np.float64), want, atol=1e-4 * np.abs(want).max())
