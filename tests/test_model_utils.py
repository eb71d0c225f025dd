"""`get_score_fn` inverts the parameterisation it documents.

An 'oracle network' reads the time back from the label it is given, computes the
exact score of Gaussian-mixture data, and returns the output that the table in
models/utils.py says an ideal network returns (e.g. -std * score for VP). The
score_fn built on top of it must give back the exact score.
"""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import sde_lib
from errors import ConfigError
from models import utils as mutils
from tests import exact

DATA = exact.default_gmm(dim=3)


class Oracle(nn.Module):
  """A 'network' that is ideal by construction for one (SDE, continuous, scale_by_sigma)."""
  sde: sde_lib.SDE
  continuous: bool
  scale_by_sigma: bool
  label_convention: str = 'score_sde'

  @nn.compact
  def __call__(self, x, labels, train=False):
    sde = self.sde
    self.param('unused', nn.initializers.zeros, ())
    if sde.name == 'vesde' and self.continuous:
      t = jnp.log(jnp.exp(labels) / sde.sigma_min) / np.log(sde.sigma_max / sde.sigma_min)
    elif sde.name == 'vesde':   # score_sde: label 0 = sigma_max (t = 1)
      t = labels / (sde.N - 1) if self.label_convention == 'legacy' else 1. - labels / (sde.N - 1)
    else:
      t = labels / 999. if (self.continuous or sde.name == 'subvpsde') else labels / (sde.N - 1)
    discrete = not self.continuous
    a, std = exact.marginal_coeffs(sde, t, discrete)
    score = DATA.score_t(x, a, std)
    if sde.name == 'vesde':
      return score * std[:, None] if self.scale_by_sigma else score
    return -std[:, None] * score     # VP / sub-VP networks predict the noise


CASES = [
    (sde_lib.VESDE(N=100), True, False), (sde_lib.VESDE(N=100), True, True),
    (sde_lib.VESDE(N=100), False, True), (sde_lib.VPSDE(N=100), True, False),
    (sde_lib.VPSDE(N=100), False, False), (sde_lib.subVPSDE(N=100), True, False),
]
CASES = [c + ('score_sde',) for c in CASES] + [   # the pre-score_sde discrete labels
    (sde_lib.VESDE(N=100), False, True, 'legacy'), (sde_lib.VPSDE(N=100), False, False, 'legacy')]


@pytest.mark.parametrize('sde,continuous,scale_by_sigma,label_convention', CASES,
                         ids=lambda v: type(v).__name__ if isinstance(v, sde_lib.SDE) else str(v))
def test_score_fn_inverts_parameterisation(sde, continuous, scale_by_sigma, label_convention):
  model = Oracle(sde, continuous, scale_by_sigma, label_convention)
  params = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 3)), jnp.ones((1,)))['params']
  score_fn = mutils.get_score_fn(sde, model, params, continuous=continuous,
                                 scale_by_sigma=scale_by_sigma,
                                 label_convention=label_convention)
  key = jax.random.PRNGKey(1)
  # Discrete models only see the N grid times; continuous ones any t.
  t = (jnp.arange(0, 100, 7) / 99. if not continuous
       else jax.random.uniform(key, (15,), minval=1e-3, maxval=1.))
  x = DATA.sample(key, 15) * sde.alpha(t)[:, None] + jax.random.normal(key, (15, 3))
  a, std = exact.marginal_coeffs(sde, t, not continuous)
  np.testing.assert_allclose(score_fn(x, t), DATA.score_t(x, a, std), rtol=2e-4, atol=1e-5)


def test_labels_are_what_the_table_says():
  t = jnp.array([0., 0.5, 1.])
  ve, vp = sde_lib.VESDE(N=11), sde_lib.VPSDE(N=11)
  np.testing.assert_allclose(mutils.noise_labels(ve, t, True), np.log(ve.sigma(t)), rtol=1e-6)
  # score_sde's: VE round((1 - t)(N - 1)), 0 = sigma_max; VP (N - 1) t unrounded.
  np.testing.assert_array_equal(mutils.noise_labels(ve, t, False), [10., 5., 0.])
  np.testing.assert_allclose(mutils.noise_labels(vp, t, True), [0., 499.5, 999.])
  np.testing.assert_array_equal(mutils.noise_labels(vp, t, False), [0., 5., 10.])
  off_grid = jnp.array([0.33, 0.36])   # (N - 1) t = 3.3, 3.6
  np.testing.assert_array_equal(mutils.noise_labels(ve, off_grid, False), [7., 6.])
  np.testing.assert_allclose(mutils.noise_labels(vp, off_grid, False), [3.3, 3.6], rtol=1e-6)
  # VP's divisor is the level int((N - 1) t) = 3 for both, as score_sde.
  np.testing.assert_allclose(mutils.output_scale(vp, off_grid, False, False),
                             -1. / np.sqrt(1. - vp.alphas_cumprod[3]) * np.ones(2), rtol=1e-6)
  # VE scale_by_sigma divides by the sigma of the label: sigma_max first.
  np.testing.assert_allclose(mutils.output_scale(ve, t, False, True),
                             1. / np.asarray(ve.discrete_sigmas)[[0, 5, 10]], rtol=1e-6)
  # The legacy convention: sde.timestep(t) for both, 0 = least noise.
  for sde in (ve, vp):
    np.testing.assert_array_equal(mutils.noise_labels(sde, off_grid, False, 'legacy'), [3., 3.])
  with pytest.raises(ConfigError, match='label_convention'):
    mutils.noise_labels(ve, t, False, 'torch')


def test_scale_by_sigma_is_rejected_for_vp():
  with pytest.raises(ConfigError, match='scale_by_sigma'):
    mutils.output_scale(sde_lib.VPSDE(), jnp.ones(2), True, True)
