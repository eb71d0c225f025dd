"""sde_lib against exact answers: marginals vs Monte Carlo, priors vs closed form."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

import sde_lib
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
  if isinstance(sde, sde_lib.VESDE):  # x(0) carries sigma_min noise (see VESDE docstring)
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
  scale = sde.sigma_max if isinstance(sde, sde_lib.VESDE) else 1.
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
  b = 0. if isinstance(sde, sde_lib.VESDE) else sde.beta(t)
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
