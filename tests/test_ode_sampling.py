"""The probability-flow ODE sampler with exact scores: decode(encode(x)) = x, and the
pushed-forward prior has the data's moments."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ode
import sampling
import sde_lib
from configs.defaults import get_default_configs
from tests import exact

SDES = [sde_lib.VESDE(sigma_max=20.), sde_lib.VPSDE(), sde_lib.subVPSDE()]
DATA = exact.default_gmm(2)


@pytest.mark.parametrize('sde', SDES, ids=lambda s: type(s).__name__)
def test_encode_then_decode_reconstructs(sde):
  """The PF ODE is a bijection; with rtol = atol = 1e-6 the round trip is exact to ~1e-4."""
  score_fn = DATA.score_fn(sde)
  x = DATA.sample(jax.random.PRNGKey(0), 64)
  kw = dict(eps=1e-3, rtol=1e-6, atol=1e-6)
  z, nfe_enc = jax.jit(lambda x: ode.ode_encode(score_fn, sde, x, **kw))(x)
  back, nfe_dec = jax.jit(lambda z: ode.ode_sample(None, score_fn, sde, x.shape, z=z, **kw))(z)
  np.testing.assert_allclose(back, x, atol=3e-3)
  assert int(nfe_enc) > 6 and int(nfe_dec) > 6
  # The latent is distributed as the prior: z is far from x and has the prior's scale.
  assert abs(float(jnp.std(z)) / float(jnp.std(sde.prior_sampling(jax.random.PRNGKey(1), (4096, 2)))) - 1) < 0.2


@pytest.mark.parametrize('sde', SDES, ids=lambda s: type(s).__name__)
def test_ode_maps_the_exact_p_T_to_the_data(sde):
  """Started from the exact p_T (not the SDE prior, which differs from p_T, visibly so for
  VE with sigma_max = 20 and modes at radius 3), the PF ODE must land on p_eps, which is
  the data up to std(eps)^2 <= 1e-3. Means and covariances within 5 standard errors
  estimated from the reference sample, plus 0.01 for the solver and eps."""
  n = 20_000
  key1, key2 = jax.random.split(jax.random.PRNGKey(2))
  t1 = jnp.ones((n,))
  z = (DATA.sample(key1, n) * sde.alpha(t1)[:, None]
       + sde.marginal_std(t1)[:, None] * jax.random.normal(key2, (n, 2)))
  x, nfe = jax.jit(lambda z: ode.ode_sample(None, DATA.score_fn(sde), sde, z.shape, z=z,
                                                 eps=1e-3, denoise=False))(z)
  exact.assert_same_moments(x, DATA.sample(jax.random.PRNGKey(3), n), allowance=0.01)
  assert int(nfe) > 6


def test_tweedie_is_the_posterior_mean_for_gaussian_data():
  """Data N(0, s^2): E[x0 | x_t] = a s^2 x_t / (a^2 s^2 + std^2)."""
  sde, data = sde_lib.VPSDE(), exact.gaussian(3, std=0.6)
  t = jnp.full((5,), 0.3)
  x = jax.random.normal(jax.random.PRNGKey(4), (5, 3))
  a, std = sde.alpha(t)[:, None], sde.marginal_std(t)[:, None]
  np.testing.assert_allclose(sde.tweedie(data.score_fn(sde), x, t),
                             a * 0.36 * x / (a ** 2 * 0.36 + std ** 2), rtol=1e-5)


def test_get_sampler_ode_reports_the_solver_nfe():
  config = get_default_configs()
  config.sampling.method = 'ode'
  sampler, static_nfe = sampling.get_sampler(config, sde_lib.VPSDE(), (16, 2))
  assert static_nfe is None
  _, nfe = jax.jit(lambda k: sampler(k, DATA.score_fn(sde_lib.VPSDE())))(jax.random.PRNGKey(5))
  assert int(nfe) % 6 == 2   # 1 at the start + 6 per Dopri5 step + 1 Tweedie step (noise_removal)
