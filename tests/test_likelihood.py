"""The PF-ODE log-likelihood against exact log-densities of Gaussian data and mixtures.

The PF ODE returns log pi(z) + delta with the SDE's prior pi standing in for p_T.
That prior mismatch is a property of the SDE, not of the solver (for VE and data
at radius 3 it is about |z| |mu| / sigma_max^2 = 0.06 nats per sample), so most tests swap
the prior for the exact p_T(z): what remains are the solver's errors
(rtol = atol = 1e-6 here) and, with Hutchinson, the estimator's zero-mean noise.
`test_raw_likelihood_is_off_by_the_prior_mismatch` checks the raw output itself: its
per-sample error is log pi(z) - log p_T(z), whose mean over the data is -KL(p_T || pi).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import likelihood
import sde_lib
from tests import exact

SDES = [sde_lib.VESDE(sigma_max=50.), sde_lib.VPSDE(), sde_lib.subVPSDE()]
EPS = 1e-5


def exact_logp(data, sde, x):
  t = jnp.full((x.shape[0],), EPS)
  return data.log_prob_fn(sde)(x, t)


def run(data, sde, x, probe, key=jax.random.PRNGKey(0)):
  fn = jax.jit(lambda k, x: likelihood.log_likelihood(
      k, data.score_fn(sde), sde, x, eps=EPS, rtol=1e-6, atol=1e-6, probe=probe))
  return fn(key, x)


def with_exact_prior(result, data, sde):
  """log p_eps(x) with the exact p_T(z) in place of the SDE prior."""
  t = jnp.full((result.z.shape[0],), sde.T)
  return result.logp - sde.prior_logp(result.z) + data.log_prob_fn(sde)(result.z, t)


DATA = {'gauss2': exact.gaussian(2, std=0.5), 'gauss64': exact.gaussian(64, std=0.8, mean=0.3),
        'gmm2': exact.default_gmm(2), 'gmm8': exact.default_gmm(8)}
# Default tier: every data set and every SDE once (4 of the 12); -m slow runs the rest.
DIVERGENCE_DEFAULT = {('gauss2', 'subVPSDE'), ('gauss64', 'VPSDE'), ('gmm2', 'VESDE'),
                      ('gmm8', 'VPSDE')}


@pytest.mark.parametrize('data,sde', [
    pytest.param(d, s, id=f'{n}-{type(s).__name__}',
                 marks=() if (n, type(s).__name__) in DIVERGENCE_DEFAULT else pytest.mark.slow)
    for n, d in DATA.items() for s in SDES])
def test_exact_divergence_matches_exact_density(sde, data):
  x = data.sample(jax.random.PRNGKey(1), 16)
  result = run(data, sde, x, 'exact')
  expected = exact_logp(data, sde, x)
  bpd_err = np.abs(np.asarray(with_exact_prior(result, data, sde) - expected)) / (data.dim * np.log(2))
  assert bpd_err.max() < 0.01, bpd_err
  assert int(result.nfe) > 0


# Default tier: each probe once, on different SDEs; -m slow adds the other two pairs.
@pytest.mark.parametrize('sde,probe', [
    pytest.param(s, p, id=f'{type(s).__name__}-{p}',
                 marks=() if (i, p) in {(0, 'gaussian'), (1, 'rademacher')} else pytest.mark.slow)
    for i, s in enumerate(SDES[:2]) for p in ('rademacher', 'gaussian')])
def test_hutchinson_is_unbiased(sde, probe):
  """Per-sample errors are zero-mean noise: their mean is within 5 standard errors of 0."""
  data = exact.default_gmm(8)
  x = data.sample(jax.random.PRNGKey(2), 256)
  result = run(data, sde, x, probe, key=jax.random.PRNGKey(3))
  err = np.asarray(with_exact_prior(result, data, sde) - exact_logp(data, sde, x), np.float64)
  se = err.std() / np.sqrt(len(err))
  assert abs(err.mean()) < 5 * se, (err.mean(), se)
  assert err.std() > 0   # the estimator is stochastic, so the check above is not vacuous


def test_latent_decodes_back_and_bits_per_dim_offsets():
  data, sde = exact.gaussian(4, std=0.5), sde_lib.VPSDE()
  x = data.sample(jax.random.PRNGKey(4), 8)
  result = run(data, sde, x, 'exact')
  # z is the PF-ODE image of x: for Gaussian data it is x scaled by the ratio of marginal
  # stds at T and eps (the flow of a Gaussian is linear).
  a, s = exact.marginal_coeffs(sde, jnp.array([1., EPS]))
  ratio = np.sqrt((a[0] ** 2 * 0.25 + s[0] ** 2) / (a[1] ** 2 * 0.25 + s[1] ** 2))
  np.testing.assert_allclose(result.z, x * ratio, rtol=1e-4, atol=1e-5)
  logp = jnp.array([-100.])
  np.testing.assert_allclose(likelihood.bits_per_dim(logp, (1, 32, 32, 3)),
                             100 / (3072 * np.log(2)) + 8.)
  np.testing.assert_allclose(likelihood.bits_per_dim(logp, (1, 32, 32, 3), scale=2.),
                             100 / (3072 * np.log(2)) + 7.)


@pytest.mark.parametrize('sde,data', [
    (SDES[0], exact.default_gmm(2)),
    pytest.param(SDES[0], exact.default_gmm(8), marks=pytest.mark.slow),
    pytest.param(SDES[1], exact.default_gmm(2), marks=pytest.mark.slow),
    pytest.param(SDES[0], exact.gaussian(2, std=0.5), marks=pytest.mark.slow),
    pytest.param(SDES[1], exact.default_gmm(8), marks=pytest.mark.slow),
    pytest.param(SDES[2], exact.default_gmm(2), marks=pytest.mark.slow),
    pytest.param(SDES[2], exact.default_gmm(8), marks=pytest.mark.slow),
], ids=lambda v: type(v).__name__ if isinstance(v, sde_lib.SDE) else f'd{v.dim}k{len(v.weights)}')
def test_raw_likelihood_is_off_by_the_prior_mismatch(sde, data):
  """Raw output (the SDE's prior at z), 128 samples. Per sample, raw - exact = m(z) + e with
  m(z) = log pi(z) - log p_T(z) and e the solver's error; the exact-prior error e is below
  0.01 bits/dim. z ~ p_T (the flow pushes p_0 to p_T), so the mean raw error estimates
  E_{p_T}[m] = -KL(p_T || pi), computed here from 200,000 direct draws of p_T: within 5
  standard errors of both means plus max |e|. Per sample the raw error is not within 0.01:
  for VE on the 2-D mixture it reaches ~0.07 bits/dim (benchmarks/likelihood_prior.py)."""
  n = 128
  x = data.sample(jax.random.PRNGKey(1), n)
  result = run(data, sde, x, 'exact')
  to_bpd = lambda v: np.asarray(v, np.float64) / (data.dim * np.log(2))
  raw = to_bpd(result.logp - exact_logp(data, sde, x))
  solver = raw - exact.prior_mismatch_bpd(data, sde, result.z)
  assert np.abs(solver).max() < 0.01, np.abs(solver).max()
  q = exact.prior_mismatch_bpd(data, sde, exact.p_t_draws(data, sde, jax.random.PRNGKey(9),
                                                           200_000))
  se = np.sqrt(raw.var() / n + q.var() / len(q))
  assert abs(raw.mean() - q.mean()) < 5 * se + np.abs(solver).max(), (raw.mean(), q.mean(), se)
  # Where the mismatch is resolvable, the raw error spreads as m(Z) does (the sample sd of 128
  # draws is within a factor 2 of the true one for these light-tailed laws).
  if q.std() > 20 * np.abs(solver).max():
    assert 0.5 * q.std() < raw.std() < 2 * q.std(), (raw.std(), q.std())
  if sde.name == 'vesde' and data.dim == 2 and len(data.weights) == 3:
    assert np.abs(raw).max() > 0.02        # the documented limitation: raw VE is not within 0.01
