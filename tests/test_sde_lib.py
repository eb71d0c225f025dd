"""sde_lib against exact answers: marginals vs Monte Carlo, priors vs closed form, the
discretisations and the VE view vs float64 formulas and Bayes' rule."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import sde_lib
from errors import ConfigError
from tests import exact

M = 100_000  # Monte Carlo paths; the std of a sample std is about std / sqrt(2M) = 0.22%


def simulate(step, x0, times, key):
  """Runs x <- x + f + G z over `times` with `step(x, t) -> (f, G)`."""

  def body(x, inp):
    k, t = inp
    f, g = step(x, jnp.full((x.shape[0],), t))
    return x + f + sde_lib.bcast(g, x) * jax.random.normal(k, x.shape), None

  x, _ = jax.lax.scan(body, x0, (jax.random.split(key, len(times)), times))
  return x


def assert_gaussian_matches(x, mean, std, bias_tol):
  """Sample mean/std against the exact ones within 5 standard errors plus a stated bias."""
  x = np.asarray(x).ravel()
  se_mean, se_std = std / np.sqrt(len(x)), std / np.sqrt(2 * len(x))
  assert abs(x.mean() - mean) < 5 * se_mean + bias_tol * max(std, abs(mean)), (x.mean(), mean)
  assert abs(x.std() - std) < 5 * se_std + bias_tol * std, (x.std(), std)


SDES = [sde_lib.VESDE(N=1000), sde_lib.VPSDE(N=1000), sde_lib.subVPSDE(N=1000)]


@pytest.mark.parametrize('sde', SDES, ids=lambda s: type(s).__name__)
@pytest.mark.parametrize('t1', [0.1, 0.5, 1.0])
def test_marginal_matches_continuous_sde(sde, t1):
  """Euler-Maruyama with 4000 steps on [0, t1]: weak error O(dt), under 0.5% here."""
  n = 4000
  x0 = jnp.full((M, 1), 1.5)
  key = jax.random.PRNGKey(0)
  if sde.name == 'vesde':  # x(0) carries sigma_min noise (see VESDE docstring)
    x0 = x0 + sde.sigma_min * jax.random.normal(jax.random.PRNGKey(1), x0.shape)
  em = lambda x, t: sde_lib.SDE.discretize(dataclasses.replace(sde, N=round(n / t1)), x, t)
  x = simulate(em, x0, jnp.arange(n) * t1 / n, key)
  mean, std = sde.marginal_prob(jnp.full((1, 1), 1.5), jnp.full((1,), t1))
  assert_gaussian_matches(x, float(mean[0, 0]), float(std[0]), bias_tol=5e-3)


@pytest.mark.parametrize('k', [99, 999])
def test_smld_chain_is_exactly_the_ve_marginal(k):
  """sum_{i<=k} (sigma_i^2 - sigma_{i-1}^2) = sigma_k^2 = sigma(t_k)^2, t_k = k / (N - 1)."""
  sde = sde_lib.VESDE(N=1000, sigma_max=50.)
  x = simulate(sde.discretize, jnp.full((M, 1), 1.5), jnp.arange(k + 1) / (sde.N - 1),
               jax.random.PRNGKey(2))
  _, std = sde.marginal_prob(jnp.zeros((1, 1)), jnp.full((1,), k / (sde.N - 1)))
  assert_gaussian_matches(x, 1.5, float(std[0]), bias_tol=0.)
  f, g = sde.discretize(jnp.zeros((sde.N, 1)), jnp.arange(sde.N) / (sde.N - 1))
  np.testing.assert_allclose(np.sqrt(np.sum(np.asarray(g, np.float64) ** 2)), 50., rtol=1e-4)
  assert not np.any(f)


@pytest.mark.parametrize('k', [99, 999])
def test_ddpm_chain_matches_alphas_cumprod_and_vp_marginal(k):
  """The DDPM chain is exactly N(sqrt(abar_k) x0, 1 - abar_k); abar tends to alpha(t)^2."""
  sde = sde_lib.VPSDE(N=1000)
  x = simulate(sde.discretize, jnp.full((M, 1), 1.5), jnp.arange(k + 1) / (sde.N - 1),
               jax.random.PRNGKey(3))
  abar = float(sde.alphas_cumprod[k])
  assert_gaussian_matches(x, 1.5 * np.sqrt(abar), np.sqrt(1 - abar), bias_tol=0.)
  # Discrete vs continuous: sum_i log(1 - beta_i) = -int beta + O(beta_max / N) (Ho et al. App.).
  t = (k + 1) / sde.N
  cont = float(sde.alpha(jnp.array(t)) ** 2)
  assert abs(np.log(abar) - np.log(cont)) < 0.03 * max(1., -np.log(cont))


def test_subvp_em_discretisation_matches_marginal():
  sde = sde_lib.subVPSDE(N=4000)
  x = simulate(sde.discretize, jnp.full((M, 1), 1.5), jnp.arange(sde.N) / sde.N,
               jax.random.PRNGKey(4))
  mean, std = sde.marginal_prob(jnp.full((1, 1), 1.5), jnp.ones((1,)))
  assert_gaussian_matches(x, float(mean[0, 0]), float(std[0]), bias_tol=5e-3)


@pytest.mark.parametrize('sde', SDES, ids=lambda s: type(s).__name__)
def test_prior_logp_is_the_exact_gaussian_density(sde):
  z = sde.prior_sampling(jax.random.PRNGKey(5), (7, 3, 4, 2))
  scale = sde.sigma_max if sde.name == 'vesde' else 1.
  expected = stats.norm(0., scale).logpdf(np.asarray(z, np.float64)).reshape(7, -1).sum(-1)
  np.testing.assert_allclose(sde.prior_logp(z), expected, rtol=1e-5)
  assert abs(float(jnp.std(z)) / scale - 1.) < 0.1  # 168 draws: std of the ratio about 0.055


@pytest.mark.parametrize('sde', SDES, ids=lambda s: type(s).__name__)
def test_ve_view_round_trips(sde):
  t = jnp.linspace(1e-5, 1., 101)
  np.testing.assert_allclose(sde.t_from_ve_sigma(sde.ve_sigma(t)), t, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(sde.alpha(t) * sde.ve_sigma(t), sde.marginal_std(t), rtol=1e-6)
  mean, _ = sde.marginal_prob(jnp.ones((101, 1)), t)
  np.testing.assert_allclose(mean[:, 0], sde.alpha(t), rtol=1e-6)


@pytest.mark.parametrize('sde', SDES, ids=lambda s: type(s).__name__)
def test_likelihood_weighting_proposal_is_g2_over_std2(sde):
  """The importance-sampling proposal of t (Song et al. 2021b, Sec. 5): F' = g^2 / std^2
  (autodiff, float32: 1e-4), F^-1(F(t)) = t from 1e-5 to 1, and 2e5 draws on [1e-5, 1]
  follow the CDF (F(t) - F(eps)) / M (Kolmogorov-Smirnov, p > 1e-3)."""
  eps = 1e-5
  t = jnp.exp(jnp.linspace(np.log(eps), 0., 41))
  dF = jax.vmap(jax.grad(lambda s: sde.lw_antiderivative(s)))(t)
  _, g = sde.sde(jnp.zeros((41, 1)), t)
  np.testing.assert_allclose(dF, g ** 2 / sde.marginal_std(t) ** 2, rtol=1e-4)
  np.testing.assert_allclose(sde.lw_inverse(sde.lw_antiderivative(t)), t, rtol=1e-4)
  draws = np.asarray(sde.lw_sample_t(jax.random.PRNGKey(0), 200_000, eps), np.float64)
  assert eps <= draws.min() and draws.max() <= 1.
  f_eps, mass = float(sde.lw_antiderivative(jnp.asarray(eps))), float(sde.lw_mass(eps))
  cdf = lambda x: (np.asarray(sde.lw_antiderivative(jnp.asarray(x, jnp.float32)),
                              np.float64) - f_eps) / mass
  assert stats.kstest(draws, cdf).pvalue > 1e-3


@pytest.mark.parametrize('sde', SDES, ids=lambda s: type(s).__name__)
def test_sdes_are_immutable_and_jittable(sde):
  with pytest.raises(dataclasses.FrozenInstanceError):
    sde.N = 5
  f = jax.jit(lambda s, x, t: s.marginal_prob(x, t)[1], static_argnums=0)
  t = jnp.array([0.3, 0.7])
  np.testing.assert_allclose(f(sde, jnp.zeros((2, 3)), t), sde.marginal_prob(jnp.zeros((2, 3)), t)[1])
  assert hash(sde) == hash(dataclasses.replace(sde))


@pytest.mark.parametrize('sde', SDES, ids=lambda s: type(s).__name__)
def test_diffusion_is_consistent_with_marginal_variance(sde):
  """For x0 = 0 and linear drift -b x/2: d var/dt = -b var + g^2 (Eq. 33 of Song et al.)."""
  t = jnp.linspace(0.05, 0.95, 19)
  var = lambda s: sde.marginal_std(s) ** 2
  dvar = jax.vmap(jax.grad(lambda s: var(s[None])[0]))(t)
  _, g = sde.sde(jnp.zeros((19, 1)), t)
  b = 0. if sde.name == 'vesde' else sde.beta(t)
  np.testing.assert_allclose(dvar, -b * var(t) + g ** 2, rtol=2e-3)


@pytest.mark.parametrize('pf', [False, True])
def test_reverse_process_with_exact_score_recovers_gaussian_data(pf):
  """Data N(0, 0.5^2): the reverse SDE / PF ODE from the prior must end at std 0.5."""
  sde = sde_lib.VPSDE(N=1000)
  data = exact.gaussian(1, std=0.5)
  rsde = sde.reverse(data.score_fn(sde), probability_flow=pf)
  n = 1000
  ts = jnp.linspace(1., 1e-3, n + 1)

  def body(x, inp):
    k, t, tn = inp
    drift, g = rsde.sde(x, jnp.full((x.shape[0],), t))
    dt = tn - t
    return x + drift * dt + sde_lib.bcast(g, x) * jnp.sqrt(-dt) * jax.random.normal(k, x.shape), None

  x0 = sde.prior_sampling(jax.random.PRNGKey(6), (20_000, 1))
  x, _ = jax.lax.scan(body, x0, (jax.random.split(jax.random.PRNGKey(7), n), ts[:-1], ts[1:]))
  # 20k samples: SE of the std is 0.5/200 = 0.0025; O(dt) solver bias is below 1%.
  assert abs(float(jnp.std(x)) - 0.5) < 5 * 0.0025 + 0.005


@pytest.mark.parametrize('n,eps', [(1000, 1e-3), (1000, 1e-5), (2000, 1e-4), (10, 1e-3)])
def test_timestep_visits_each_level_once_and_inverts_loss_times(n, eps):
  sde = sde_lib.VPSDE(N=n)
  grid = jnp.linspace(sde.T, eps, n)             # the samplers' grid
  np.testing.assert_array_equal(np.sort(np.asarray(sde.timestep(grid))), np.arange(n))
  i = jnp.arange(n)
  np.testing.assert_array_equal(sde.timestep(i / (n - 1) * sde.T), i)   # the losses' times


# ----------------------------------------------------------------------------- discretisations
# Each method against values computed here in float64 from the papers' formulas, not from
# sde_lib. float32 tolerances: a few ulps (6e-8) per operation, times the length of the
# products (the DDPM chain multiplies N = 100 factors).

VE, VP, SUBVP = sde_lib.VESDE(N=100, sigma_max=5.), sde_lib.VPSDE(N=100), sde_lib.subVPSDE(N=100)


def _sigmas64(lo, hi, n):
  return lo * (hi / lo) ** (np.arange(n) / (n - 1))   # Song & Ermon 2019, Sec. 4.2


def _betas64(sde):
  return np.linspace(sde.beta_min / sde.N, sde.beta_max / sde.N, sde.N)   # Ho et al. 2020


def test_geometric_sigmas_scalar_and_per_sample_ends():
  np.testing.assert_allclose(sde_lib.geometric_sigmas(0.01, 50., 7), _sigmas64(0.01, 50., 7),
                             rtol=1e-6)
  np.testing.assert_allclose(sde_lib.geometric_sigmas(3., 0.2, 5), _sigmas64(3., 0.2, 5),
                             rtol=1e-6)   # descending: first is the first argument
  np.testing.assert_array_equal(VE.discrete_sigmas, sde_lib.geometric_sigmas(0.01, 5., 100))
  starts = jnp.array([0.5, 2., 40.])
  ladders = sde_lib.geometric_sigmas(starts, 0.05, 6)   # per-sample first level: [n, B]
  assert ladders.shape == (6, 3)
  for b in range(3):
    np.testing.assert_allclose(ladders[:, b], _sigmas64(float(starts[b]), 0.05, 6), rtol=1e-6)


@pytest.mark.parametrize('sde', [VE, VP, SUBVP], ids=lambda s: type(s).__name__)
def test_level_time_is_i_over_n_minus_1_and_timestep_inverts_it(sde):
  i = jnp.arange(sde.N)
  np.testing.assert_allclose(sde.level_time(i), np.arange(sde.N) / (sde.N - 1) * sde.T, rtol=1e-7)
  np.testing.assert_array_equal(sde.timestep(sde.level_time(i)), i)


def _chain_kernel64(sde):
  """(a_i, std_i) of x_i | x0 by iterating the forward chain x_i = (1 + F_i) x_{i-1} + G_i z
  from x_{-1} = x0 in float64, with (F_i, G_i) the formulas of SMLD (Song et al. 2021, Sec. 3.4)
  or DDPM (Ho et al. 2020, Eq. 2): a_i = prod (1 + F_j), var_i = (1 + F_i)^2 var_{i-1} + G_i^2."""
  if sde.name == 'vesde':
    sig2 = _sigmas64(sde.sigma_min, sde.sigma_max, sde.N) ** 2
    steps = [(0., s - p) for s, p in zip(sig2, np.concatenate([[0.], sig2[:-1]]))]
  else:
    steps = [(np.sqrt(1 - b) - 1, b) for b in _betas64(sde)]
  a, var, out = 1., 0., []
  for f, g2 in steps:
    a, var = (1 + f) * a, (1 + f) ** 2 * var + g2
    out.append((a, np.sqrt(var)))
  return np.array(out).T


@pytest.mark.parametrize('sde', [VE, VP], ids=lambda s: type(s).__name__)
def test_discrete_marginal_is_the_kernel_of_the_iterated_chain(sde):
  a64, std64 = _chain_kernel64(sde)
  i = jnp.arange(sde.N)
  mean, std = sde.discrete_marginal(jnp.full((sde.N, 2), 1.5), i)
  # 100 float32 factors in alphabar: relative error up to ~100 ulps = 6e-6.
  np.testing.assert_allclose(mean, 1.5 * a64[:, None] * np.ones((1, 2)), rtol=1e-5)
  np.testing.assert_allclose(std, std64, rtol=1e-5)
  np.testing.assert_array_equal(sde.discrete_std(i), std)
  # And the chain that `discretize` steps is that same chain: its (F, G) at level i.
  f, g = sde.discretize(jnp.ones((sde.N, 1)), sde.level_time(i))
  if sde.name == 'vesde':
    sig2 = _sigmas64(sde.sigma_min, sde.sigma_max, sde.N) ** 2
    np.testing.assert_allclose(np.asarray(g, np.float64) ** 2, np.diff(sig2, prepend=0.),
                               rtol=1e-5)
  else:
    np.testing.assert_allclose(np.asarray(g, np.float64) ** 2, _betas64(sde), rtol=1e-5)


def test_subvp_has_no_discrete_chain():
  assert SUBVP.discrete_scheme is None and VE.discrete_scheme and VP.discrete_scheme
  x, i = jnp.ones((2, 3)), jnp.array([0, 5])
  with pytest.raises(ConfigError, match='subVPSDE has no discrete chain.*training.continuous'):
    SUBVP.discrete_marginal(x, i)
  with pytest.raises(ConfigError, match='subVPSDE has no discrete chain'):
    SUBVP.ancestral_step(x, x, jnp.ones(2), x)


@pytest.mark.parametrize('sde', [dataclasses.replace(VE, N=10), dataclasses.replace(VP, N=30)],
                         ids=['VESDE', 'VPSDE'])
def test_ancestral_step_is_the_chain_posterior_given_the_exact_kernel_score(sde):
  """Data a point x0: the score of level i is that of the chain's own kernel,
  s = -(x - a_i x0) / std_i^2. Then Eq. 47's mean is the exact posterior mean of
  q(x_{i-1} | x_i, x0) of the Gaussian chain (Ho et al. 2020, Eq. 6-7), and its variance is
  the posterior's for SMLD and beta_i for DDPM (Ho et al.'s sigma_t^2 = beta_t)."""
  a64, std64 = _chain_kernel64(sde)
  x0, x = 0.7, np.linspace(-3., 3., sde.N)          # one state per level
  score = -(x - a64 * x0) / std64 ** 2
  t = sde.level_time(jnp.arange(sde.N))
  zero, one = jnp.zeros((sde.N, 1)), jnp.ones((sde.N, 1))
  xf, sf = jnp.asarray(x, jnp.float32)[:, None], jnp.asarray(score, jnp.float32)[:, None]
  _, mean = sde.ancestral_step(xf, sf, t, zero)
  x1, mean1 = sde.ancestral_step(xf, sf, t, one)
  np.testing.assert_array_equal(mean, mean1)
  # Posterior of x_{i-1} given x_i and x0 for the chain x_i = c_i x_{i-1} + G_i z:
  # prior N(a_{i-1} x0, v_{i-1}), likelihood N(c_i x_{i-1}, G_i^2).
  a_prev = np.concatenate([[1.], a64[:-1]])
  v_prev = np.concatenate([[0.], std64[:-1] ** 2])
  c = a64 / a_prev
  g2 = std64 ** 2 - c ** 2 * v_prev
  post_var = v_prev * g2 / (g2 + c ** 2 * v_prev)
  post_mean = a_prev * x0 + v_prev * c / (g2 + c ** 2 * v_prev) * (x - c * a_prev * x0)
  np.testing.assert_allclose(mean[:, 0], post_mean, rtol=1e-5, atol=1e-5)
  want_std = np.sqrt(post_var) if sde.name == 'vesde' else np.sqrt(_betas64(sde))
  np.testing.assert_allclose((x1 - mean1)[:, 0], want_std, rtol=1e-5, atol=1e-7)


def test_langevin_alpha_and_chain_validity():
  t = VP.level_time(jnp.arange(VP.N))
  np.testing.assert_allclose(VP.langevin_alpha(t), 1. - _betas64(VP), rtol=1e-6)
  np.testing.assert_array_equal(VE.langevin_alpha(t), np.ones(VP.N))
  np.testing.assert_array_equal(SUBVP.langevin_alpha(t), np.ones(VP.N))
  assert VE.discrete_chain_problem() is None and SUBVP.discrete_chain_problem() is None
  assert VP.discrete_chain_problem() is None                           # N = 100 > beta_max = 20
  assert 'reach 1 >= 1' in dataclasses.replace(VP, N=20).discrete_chain_problem()


def _gmm_posterior_mean64(data, x, a, std):
  """E[x0 | x] for x = a x0 + std z, x0 ~ the mixture, by Bayes per component (float64)."""
  w, mu, s = (np.asarray(v, np.float64) for v in (data.weights, data.means, data.stds))
  x, a, std = np.asarray(x, np.float64), np.asarray(a, np.float64), np.asarray(std, np.float64)
  v = a[:, None] ** 2 * s[None] ** 2 + std[:, None] ** 2                             # [B, K]
  diff = x[:, None] - a[:, None, None] * mu[None]                                    # [B, K, D]
  logp = np.log(w) - 0.5 * data.dim * np.log(v) - 0.5 * (diff ** 2).sum(-1) / v
  resp = np.exp(logp - logp.max(1, keepdims=True))
  resp /= resp.sum(1, keepdims=True)
  comp_mean = mu[None] + (a[:, None] * s[None] ** 2 / v)[..., None] * diff          # [B, K, D]
  return (resp[..., None] * comp_mean).sum(1)


GMM = exact.default_gmm(2)


@pytest.mark.parametrize('sde', SDES, ids=lambda s: type(s).__name__)
def test_ve_score_and_ve_denoise_are_exact_in_the_ve_view(sde):
  """p_sigma = p_data * N(0, sigma^2) whatever the SDE: ve_score is its exact score and
  ve_denoise its exact posterior mean E[x0 | x_hat] (Tweedie). Tolerance: t_from_ve_sigma
  round-trips to 1e-4 relative (test_ve_view_round_trips), moving the mixture's score by less."""
  sigma = jnp.array([0.02, 0.1, 0.5, 1., 3., 10.])
  x0 = GMM.sample(jax.random.PRNGKey(8), 6)
  x_hat = x0 + sigma[:, None] * jax.random.normal(jax.random.PRNGKey(9), x0.shape)
  score_fn = GMM.score_fn(sde)
  np.testing.assert_allclose(sde.ve_score(score_fn, x_hat, sigma),
                             GMM.score_t(x_hat, jnp.ones(6), sigma), rtol=2e-4, atol=1e-4)
  np.testing.assert_allclose(sde.ve_denoise(score_fn, x_hat, sigma),
                             _gmm_posterior_mean64(GMM, x_hat, np.ones(6), sigma),
                             rtol=2e-4, atol=2e-4)


@pytest.mark.parametrize('sde', SDES, ids=lambda s: type(s).__name__)
def test_tweedie_is_the_exact_posterior_mean(sde):
  t = jnp.array([1e-3, 0.05, 0.2, 0.5, 0.8, 1.])
  a, std = sde.alpha(t), sde.marginal_std(t)
  x0 = GMM.sample(jax.random.PRNGKey(10), 6)
  x = a[:, None] * x0 + std[:, None] * jax.random.normal(jax.random.PRNGKey(11), x0.shape)
  np.testing.assert_allclose(sde.tweedie(GMM.score_fn(sde), x, t),
                             _gmm_posterior_mean64(GMM, x, a, std), rtol=1e-4, atol=1e-4)
