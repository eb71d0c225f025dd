"""Losses at the exact score equal their analytic minimum; any other score costs more.

For Gaussian data N(0, s^2 I) and the kernel x_t = a x0 + std z, the exact score
is -x_t / v with v = a^2 s^2 + std^2, and the residual score * std + z has
E|.|^2 = a^2 s^2 / v per dimension. Each loss is an average of this over its
noise levels (times g^2 / std^2 with likelihood weighting).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

import losses
import optim
import sde_lib
from configs.defaults import get_default_configs
from tests import exact

S, D = 0.7, 4   # data std and dimension
BATCHES, B = 200, 1000


def per_dim_residual(sde, t, discrete=False):
  a, std = exact.marginal_coeffs(sde, jnp.atleast_1d(jnp.asarray(t, jnp.float32)), discrete)
  return np.asarray(a ** 2 * S ** 2 / (a ** 2 * S ** 2 + std ** 2), np.float64)


def mc_loss(loss_fn, score_fn, seed=0):
  """Mean and standard error of the loss over BATCHES independent batches."""
  data = exact.gaussian(D, std=S)

  def one(key):
    k1, k2 = jax.random.split(key)
    return loss_fn(score_fn, k2, data.sample(k1, B))

  values = np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(seed), BATCHES)))
  return values.mean(), values.std() / np.sqrt(BATCHES), values


def reduction(reduce_mean):
  return 1. if reduce_mean else 0.5 * D  # mean over dims, or half the sum (score_sde)


SDES = [sde_lib.VESDE(sigma_max=5.), sde_lib.VPSDE(), sde_lib.subVPSDE()]


# Default tier: every SDE, both reductions and both weightings (likelihood weighting with
# both reductions) in 4 cases; -m slow runs the other 8 of the 12.
LOSS_DEFAULT = {(False, True, 'VESDE'), (False, False, 'VPSDE'), (True, True, 'subVPSDE'),
                (True, False, 'VESDE')}


@pytest.mark.parametrize('likelihood_weighting,reduce_mean,sde', [
    pytest.param(w, r, s, id=f'{w}-{r}-{type(s).__name__}',
                 marks=() if (w, r, type(s).__name__) in LOSS_DEFAULT else pytest.mark.slow)
    for w in (False, True) for r in (True, False) for s in SDES])
def test_continuous_loss_minimum(sde, reduce_mean, likelihood_weighting):
  # eps = 0.05 keeps g^2/std^2 (unbounded as t -> 0 for VP) of moderate variance;
  # the formula is exact for any eps.
  eps = 0.05 if likelihood_weighting else 1e-5
  loss_fn = functools.partial(losses.continuous_dsm_loss, sde=sde, eps=eps, reduce_mean=reduce_mean,
                              likelihood_weighting=likelihood_weighting)
  loss_fn = (lambda f: lambda score_fn, key, x0: f(score_fn, key=key, x0=x0))(loss_fn)

  def integrand(t):
    r = per_dim_residual(sde, t)[0]
    if likelihood_weighting:
      tt = jnp.array([t], jnp.float32)
      g2 = float(sde.sde(jnp.zeros((1, 1)), tt)[1][0] ** 2)
      r *= g2 / float(sde.marginal_std(tt)[0] ** 2)
    return r

  expected = integrate.quad(integrand, eps, 1., limit=200)[0] / (1. - eps) * reduction(reduce_mean)
  data = exact.gaussian(D, std=S)
  mean, se, exact_values = mc_loss(loss_fn, data.score_fn(sde))
  assert abs(mean - expected) < 5 * se, (mean, expected, se)

  # A perturbed score costs more. Same keys, so the paired difference is tight.
  perturbed = lambda x, t: data.score_fn(sde)(x, t) * 1.1 + 0.05
  _, _, worse = mc_loss(loss_fn, perturbed)
  diff = worse - exact_values
  assert diff.mean() > 5 * diff.std() / np.sqrt(BATCHES)


@pytest.mark.parametrize('sde', SDES, ids=lambda s: type(s).__name__)
def test_importance_sampled_weighted_loss_has_the_uniform_ones_minimum_and_less_variance(sde):
  """t ~ g^2/std^2 (Song et al. 2021b, Sec. 5) at the training eps = 1e-5: the same expected
  loss as lambda = g^2 with t ~ U(eps, 1) (the quadrature of the residual times g^2/std^2,
  in log t since the weight grows like 1/t), within 5 SE; and for VP / sub-VP, whose weight
  reaches 1/eps, a spread over batches at least 3x smaller than the uniform-t estimator's."""
  eps = 1e-5

  def loss(importance_sampling):
    f = functools.partial(losses.continuous_dsm_loss, sde=sde, eps=eps, reduce_mean=False,
                          likelihood_weighting=True, importance_sampling=importance_sampling)
    return lambda score_fn, key, x0: f(score_fn, key=key, x0=x0)

  def integrand(u):   # t = e^u
    tt = jnp.array([np.exp(u)], jnp.float32)
    g2 = float(sde.sde(jnp.zeros((1, 1)), tt)[1][0] ** 2)
    return per_dim_residual(sde, tt)[0] * g2 / float(sde.marginal_std(tt)[0] ** 2) * np.exp(u)

  # epsrel 1e-5: the integrand is float32 (the SDE maths), so finer is roundoff.
  expected = (integrate.quad(integrand, np.log(eps), 0., limit=200, epsrel=1e-5)[0] / (1. - eps)
              * reduction(False))
  data = exact.gaussian(D, std=S)
  mean, se, values = mc_loss(loss(True), data.score_fn(sde))
  assert abs(mean - expected) < 5 * se, (mean, expected, se)
  if not isinstance(sde, sde_lib.VESDE):   # VE's proposal is uniform: the same estimator
    _, _, uniform = mc_loss(loss(False), data.score_fn(sde))
    assert values.std() < uniform.std() / 3, (values.std(), uniform.std())


def test_smld_loss_minimum():
  sde = sde_lib.VESDE(N=100, sigma_max=5.)
  data = exact.gaussian(D, std=S)
  loss_fn = lambda score_fn, key, x0: losses.discrete_dsm_loss(score_fn, sde, key, x0,
                                                               reduce_mean=False)
  expected = per_dim_residual(sde, jnp.arange(sde.N) / (sde.N - 1), discrete=True).mean() * 0.5 * D
  mean, se, values = mc_loss(loss_fn, data.score_fn(sde, discrete=True))
  assert abs(mean - expected) < 5 * se, (mean, expected, se)
  _, _, worse = mc_loss(loss_fn, lambda x, t: 0.9 * data.score_fn(sde, discrete=True)(x, t))
  assert (worse - values).mean() > 5 * (worse - values).std() / np.sqrt(BATCHES)


def test_ddpm_loss_minimum():
  sde = sde_lib.VPSDE(N=100)
  data = exact.gaussian(D, std=S)
  loss_fn = lambda score_fn, key, x0: losses.discrete_dsm_loss(score_fn, sde, key, x0,
                                                               reduce_mean=True)
  expected = per_dim_residual(sde, jnp.arange(sde.N) / (sde.N - 1), discrete=True).mean()
  mean, se, values = mc_loss(loss_fn, data.score_fn(sde, discrete=True))
  assert abs(mean - expected) < 5 * se, (mean, expected, se)
  # The continuous-time score is not the minimiser of the discrete loss.
  _, _, worse = mc_loss(loss_fn, data.score_fn(sde, discrete=False))
  assert (worse - values).mean() > 5 * (worse - values).std() / np.sqrt(BATCHES)


def test_get_loss_dispatch_and_errors():
  config = get_default_configs()
  from errors import ConfigError
  config.training.continuous = False
  with pytest.raises(ConfigError, match='subVPSDE'):
    losses.get_loss(config, sde_lib.subVPSDE())
  config.training.likelihood_weighting = True
  with pytest.raises(ConfigError, match='likelihood_weighting'):
    losses.get_loss(config, sde_lib.VPSDE())
  config.training.continuous, config.training.likelihood_weighting = True, False
  config.training.importance_sampling = True
  with pytest.raises(ConfigError, match='importance_sampling=True needs training.likelihood_w'):
    losses.get_loss(config, sde_lib.VPSDE())


def test_optimizer_warmup_and_clipping():
  """Adam on a constant gradient moves each coordinate by exactly -lr_k sign(g):
  m_hat / sqrt(v_hat) = g / |g| elementwise, and lr_k = lr min((k + 1) / warmup, 1).
  Clipping must not change the direction, and a zero gradient gives no update."""
  config = get_default_configs()
  config.optim.lr, config.optim.warmup, config.optim.grad_clip = 1e-2, 10, 1.
  tx = optim.get_optimizer(config)
  params = {'w': jnp.zeros(3)}
  state = tx.init(params)
  grads = {'w': jnp.array([300., -400., 0.])}   # global norm 500, clipped to 1
  for k in range(13):
    updates, state = tx.update(grads, state, params)
    lr_k = 1e-2 * min((k + 1) / 10, 1.)
    # rtol: 1 - b2 = 1e-3 rounds to float32 with relative error 1.3e-5.
    np.testing.assert_allclose(updates['w'], [-lr_k, lr_k, 0.], rtol=5e-5, atol=1e-12)
  config.optim.warmup = 0
  tx = optim.get_optimizer(config)
  clipped, _ = tx.update(grads, tx.init(params), params)
  config.optim.grad_clip = -1.   # off: Adam is scale-invariant, so the first steps agree
  tx = optim.get_optimizer(config)
  unclipped, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_allclose(clipped['w'], unclipped['w'])
