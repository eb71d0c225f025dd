"""EDM samplers with exact scores: any SDE's VE view reproduces the data from p_sigma_max."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import edm
import sde_lib
from tests import exact

DATA = exact.default_gmm(2)
SDES = [sde_lib.VESDE(sigma_min=0.002, sigma_max=80.), sde_lib.VPSDE(), sde_lib.subVPSDE()]


def test_karras_schedule_is_eq_5():
  s = np.asarray(edm.karras_sigmas(80., 0.002, 5, rho=7.))
  i = np.arange(5)
  expected = (80. ** (1 / 7) + i / 4 * (0.002 ** (1 / 7) - 80. ** (1 / 7))) ** 7
  np.testing.assert_allclose(s[:-1], expected, rtol=1e-5)
  assert s[-1] == 0. and s[0] == pytest.approx(80.) and s[-2] == pytest.approx(0.002)
  per_sample = edm.karras_sigmas(jnp.array([1., 10.]), 0.01, 4)
  np.testing.assert_allclose(per_sample[0], [1., 10.], rtol=1e-6)


def test_ve_denoiser_is_tweedie_in_every_sde():
  """For data N(0, s^2), D(x; sigma) = s^2 x / (s^2 + sigma^2) whatever the SDE."""
  data = exact.gaussian(3, std=0.7)
  x = jax.random.normal(jax.random.PRNGKey(0), (4, 3)) * 2.
  sigma = jnp.array([0.05, 0.5, 2., 10.])
  for sde in SDES:
    d = edm.ve_denoiser(sde, data.score_fn(sde))(x, sigma)
    np.testing.assert_allclose(d, 0.49 * x / (0.49 + sigma[:, None] ** 2), rtol=2e-4, atol=1e-5)


@pytest.mark.parametrize('sde', SDES, ids=lambda s: type(s).__name__)
@pytest.mark.parametrize('churn', [0., 40.])
def test_edm_recovers_the_data_moments(sde, churn):
  """Start from the exact p_sigma (data + sigma z, the VE view's marginal); 64 Heun steps.
  20k samples: 5 standard errors of the difference with a reference sample, plus 0.03 for
  the discretisation (measured: below 0.03 at 64 steps; 0.15 at 18 steps with churn for this
  sharp mixture, whose components have std 0.3). VE, VP and sub-VP must agree: same marginals."""
  n, sigma_max = 20_000, 40.
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(1), 3)
  x0 = DATA.sample(k1, n) + sigma_max * jax.random.normal(k2, (n, 2))
  run = jax.jit(lambda k, x: edm.edm_sample(k, DATA.score_fn(sde), sde, x,
                                            edm.karras_sigmas(sigma_max, 0.002, 64), s_churn=churn))
  x, nfe = run(k3, x0)
  assert nfe == 127
  exact.assert_same_moments(x, DATA.sample(jax.random.PRNGKey(2), n), allowance=0.03)


def test_per_sample_start_levels():
  """Per-sample start levels: chains started at sigma_n = 0.003 move by O(sigma_n) only."""
  sde = sde_lib.VESDE(sigma_min=0.002, sigma_max=80.)
  x0 = DATA.sample(jax.random.PRNGKey(3), 4)
  x, _ = edm.edm_sample(jax.random.PRNGKey(4), DATA.score_fn(sde), sde, x0,
                        edm.karras_sigmas(jnp.array([0.003, 0.003, 0.003, 0.003]), 0.002, 3))
  np.testing.assert_allclose(x, x0, atol=0.01)


def test_edm_from_config_samples_a_vp_model_from_its_prior():
  """sampling.method=edm on VP: the whole pipeline from the VE view of the prior."""
  from configs.defaults import get_default_configs
  import sampling
  config = get_default_configs()
  config.sampling.method, config.sampling.num_steps, config.sampling.s_churn = 'edm', 64, 10.
  sde = sde_lib.VPSDE()
  sampler, nfe = sampling.get_sampler(config, sde, (20_000, 2))
  x, run_nfe = jax.jit(lambda k: sampler(k, DATA.score_fn(sde)))(jax.random.PRNGKey(6))
  assert nfe == run_nfe == 127
  ref = np.asarray(DATA.sample(jax.random.PRNGKey(7), 20_000))
  # The VP prior differs from p_T by alpha(1)^2 = 4e-5 relative: negligible here.
  np.testing.assert_allclose(np.asarray(x).mean(0), ref.mean(0), atol=0.08)
  np.testing.assert_allclose(np.cov(np.asarray(x).T), np.cov(ref.T), atol=0.15)


def test_heun_converges_at_second_order():
  """Algorithm 1 on data N(0, s^2 I), VE: the PF ODE dx/dsigma = x sigma / (s^2 + sigma^2) has
  x(sigma) = x(sigma_max) sqrt((s^2 + sigma^2) / (s^2 + sigma_max^2)). The last step
  (sigma_min -> 0) is Euler by design (line 9's condition) and maps x -> x s^2 / (s^2 +
  sigma_min^2) exactly, so the reference includes it; the endpoints are the schedule's own
  (float32) values. In float64, the relative error at N = 32, 64, 128, 256 is 1.6e-2 ...
  2.2e-4, local slopes -2.10, -2.05, -2.03 (they approach -2 from below as N grows; at
  N = 4..16 they are -3.1, -2.4). Asserted: fitted slope -2 +- 0.1, each local slope in
  [-2.2, -1.9]."""
  s, ns = 0.5, [32, 64, 128, 256]
  with jax.enable_x64(True):
    sde = sde_lib.VESDE(sigma_min=0.002, sigma_max=80.)
    data = exact.gaussian(2, std=s)
    x0 = jnp.asarray(np.random.default_rng(0).normal(size=(4, 2)) * 80., jnp.float64)
    errors = []
    for n in ns:
      sigmas = np.asarray(edm.karras_sigmas(80., 0.002, n), np.float64)
      x, _ = jax.jit(lambda x: edm.edm_sample(jax.random.PRNGKey(0), data.score_fn(sde), sde, x,
                                              edm.karras_sigmas(80., 0.002, n)))(x0)
      assert x.dtype == jnp.float64
      ref = (np.asarray(x0) * np.sqrt((s ** 2 + sigmas[-2] ** 2) / (s ** 2 + sigmas[0] ** 2))
             * s ** 2 / (s ** 2 + sigmas[-2] ** 2))
      errors.append(np.abs(np.asarray(x) - ref).max() / np.abs(ref).max())
  slope = np.polyfit(np.log(ns), np.log(errors), 1)[0]
  local = np.diff(np.log(errors)) / np.log(2.)
  assert abs(slope + 2.) < 0.1 and np.all((local > -2.2) & (local < -1.9)), (errors, local)
