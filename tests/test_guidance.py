"""Class-conditional sampling against exact answers (guidance.py).

A labelled Gaussian mixture (label = component) has, under any SDE, the exact
class-conditional score grad log p_t(x | y) (the diffused component's) and the exact noisy
posterior p_t(y | x) (the responsibilities), `tests/exact.py`. With the exact mixture score
and that posterior as the classifier:

- w = 1: s + grad log p_t(y | x) = grad log p_t(x | y) exactly, so PC (Euler-Maruyama),
  the PF ODE and EDM (Heun, VE view) must draw each component's law N(mu_y, s_y^2 I):
  mean and covariance within 5 standard errors (from the exact law) plus the sampler's
  discretisation bias, measured at the same step counts with 30,000 samples per class
  (ALLOWANCE).
- w != 1: the guided field is the score of p_t(x) p_t(y | x)^w. A Langevin corrector
  equilibrates to it at each t, so PC with Langevin draws the tempered law
  p(x) p(y | x)^w at t = eps; its moments are computed by quadrature
  (`GaussianMixture.tempered_moments`). Reverse-dynamics samplers alone do not (measured in
  docs/sampling.md, not asserted).
- The NFE of a guided run counts classifier gradients separately, and both counts equal
  the calls made.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import edm
import guidance
import ode
import sampling
import sde_lib
from errors import ConfigError
from tests import exact

_ANGLES = np.deg2rad([90., 210., 330.])
# Three components 2.6 apart with stds 0.4-0.6: they overlap enough that unguided samples,
# or guidance of the wrong strength, give visibly different per-class laws.
GMM = exact.GaussianMixture([0.5, 0.3, 0.2], 1.5 * np.stack([np.cos(_ANGLES), np.sin(_ANGLES)], 1),
                            [0.5, 0.4, 0.6])
SDE, EPS = sde_lib.VPSDE(), 1e-3
STEPS = {'em': 200, 'edm': 30, 'pc_langevin': 200}
# Largest |bias| of any mean / covariance entry over the three classes at STEPS (pc_langevin:
# w = 3, 3 corrector steps), measured with 30,000 samples per class (their own standard errors:
# <= 0.0035 on the mean, <= 0.005 on the covariance), rounded up; see docs/sampling.md.
ALLOWANCE = {'em': (0.01, 0.01), 'ode': (0.01, 0.01), 'edm': (0.015, 0.02),
             'pc_langevin': (0.025, 0.01)}


def draw(name: str, w: float, n_per_class: int, gmm=GMM, seed: int = 0, steps: int = 0,
         n_steps_each: int = 3):
  """Guided samples of every class at once (labels per sample): (x [3n, 2], labels [3n])."""
  labels = jnp.repeat(jnp.arange(3), n_per_class)
  score_fn = guidance.guided_score_fn(gmm.score_fn(SDE), gmm.posterior_logits_fn(SDE), labels, w)
  shape, key = (labels.shape[0], 2), jax.random.PRNGKey(seed)
  steps = steps or STEPS.get(name, 0)
  if name == 'em':
    run = lambda k: sampling.pc_sample(k, score_fn, SDE, shape, eps=EPS, num_steps=steps)
  elif name == 'pc_langevin':   # snr 0.16
    run = lambda k: sampling.pc_sample(k, score_fn, SDE, shape, eps=EPS, num_steps=steps,
                                       corrector='langevin', n_steps_each=n_steps_each)
  elif name == 'ode':
    run = lambda k: ode.ode_sample(k, score_fn, SDE, shape, eps=EPS, rtol=1e-4, atol=1e-4)
  else:
    smax, smin = (float(SDE.ve_sigma(jnp.asarray(t))) for t in (SDE.T, EPS))

    def run(k):
      k1, k2 = jax.random.split(k)
      return edm.edm_sample(k2, score_fn, SDE, smax * jax.random.normal(k1, shape),
                            edm.karras_sigmas(smax, smin, STEPS['edm']))
  return np.asarray(jax.jit(lambda k: run(k)[0])(key), np.float64), np.asarray(labels)


def assert_law(x, mean, cov, allowance):
  """Sample mean / covariance against an exact law, 5 standard errors + (mean, cov) allowance.

  Standard errors from the exact covariance, as for a Gaussian: var(x_i) / n for the mean,
  (C_ii C_jj + C_ij^2) / n for the covariance entries."""
  n = len(x)
  se_mean = np.sqrt(np.diag(cov) / n)
  se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov ** 2) / n)
  mean_err, cov_err = np.abs(x.mean(0) - mean), np.abs(np.cov(x.T) - cov)
  assert (mean_err < 5 * se_mean + allowance[0]).all(), (x.mean(0), mean)
  assert (cov_err < 5 * se_cov + allowance[1]).all(), (np.cov(x.T), cov)


@pytest.mark.parametrize('name', ['em', 'ode', 'edm'])
def test_guided_samples_follow_each_component_at_w1(name):
  x, labels = draw(name, 1., 4000)
  for y in range(3):
    cov = float(GMM.stds[y]) ** 2 * np.eye(2)
    assert_law(x[labels == y], np.asarray(GMM.means[y], np.float64), cov, ALLOWANCE[name])


def test_guided_pc_with_langevin_follows_the_tempered_law():
  x, labels = draw('pc_langevin', 3., 3000)
  for y in range(3):
    mean, cov = GMM.tempered_moments(y, 3.)
    assert_law(x[labels == y], mean, cov, ALLOWANCE['pc_langevin'])


@pytest.mark.slow
def test_guided_pc_with_langevin_follows_the_tempered_law_below_w1():
  """w = 0.3 puts tempered mass on the other components, which the chain must reach:
  500 steps x 5 Langevin steps (bias measured with 20,000 samples per class: at most 0.028
  on a mean and on a covariance entry; 200 x 3 leaves 0.2)."""
  x, labels = draw('pc_langevin', 0.3, 20000, steps=500, n_steps_each=5)
  for y in range(3):
    mean, cov = GMM.tempered_moments(y, 0.3)
    assert_law(x[labels == y], mean, cov, (0.04, 0.04))


def test_tempered_moments_quadrature():
  """w = 1 gives the component's exact moments; w = 0 the mixture's."""
  for y in range(3):
    mean, cov = GMM.tempered_moments(y, 1.)
    np.testing.assert_allclose(mean, GMM.means[y], atol=1e-6)
    np.testing.assert_allclose(cov, float(GMM.stds[y]) ** 2 * np.eye(2), atol=1e-6)
  w_, mu, s = (np.asarray(v, np.float64) for v in (GMM.weights, GMM.means, GMM.stds))
  m = w_ @ mu
  c = sum(wk * (sk ** 2 * np.eye(2) + np.outer(mk - m, mk - m)) for wk, mk, sk in zip(w_, mu, s))
  mean, cov = GMM.tempered_moments(0, 0.)
  np.testing.assert_allclose(mean, m, atol=1e-6)
  np.testing.assert_allclose(cov, c, atol=1e-6)


def test_guided_score_is_the_exact_class_score_at_w1():
  """s + grad log p_t(y | x) = grad log p_t(x | y) pointwise, for VE, VP and sub-VP."""
  x = jax.random.normal(jax.random.PRNGKey(0), (64, 2)) * 2.
  labels = jnp.arange(64) % 3
  for sde in (sde_lib.VESDE(sigma_max=10.), sde_lib.VPSDE(), sde_lib.subVPSDE()):
    t = jnp.linspace(0.01, 1., 64)
    guided = guidance.guided_score_fn(GMM.score_fn(sde), GMM.posterior_logits_fn(sde), labels, 1.)
    np.testing.assert_allclose(guided(x, t), GMM.class_score_fn(sde, labels)(x, t),
                               rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------- NFE

def counting(fn):
  """fn plus a counter of its evaluations at run time (a host callback per call, so calls
  inside scans, while loops and gradients are counted each time they run)."""
  calls = []

  def counted(*args):
    jax.debug.callback(lambda: calls.append(1))
    return fn(*args)

  return counted, calls


@pytest.mark.parametrize('method', ['pc', 'edm', 'ode'])
def test_nfe_counts_score_and_classifier_calls_separately(method):
  from configs.defaults import get_default_configs
  config = get_default_configs()
  s = config.sampling
  s.method, s.num_steps, s.corrector, s.n_steps_each = method, 4, 'langevin', 2
  s.rtol = s.atol = 1e-2
  sde = sde_lib.VESDE(sigma_max=10.)   # VP's Langevin alpha_i needs more than 20 steps
  sampler, nfe = sampling.get_sampler(config, sde, (3, 2))
  score_fn, score_calls = counting(GMM.score_fn(sde))
  logits, classifier_calls = counting(GMM.posterior_logits_fn(sde))
  guided = guidance.guided_score_fn(score_fn, logits, jnp.array([0, 1, 2]), 2.)
  _, nfe_run = jax.block_until_ready(jax.jit(lambda k: sampler(k, guided))(jax.random.PRNGKey(0)))
  jax.effects_barrier()
  assert nfe in (None, int(nfe_run))
  assert len(score_calls) == int(nfe_run) and len(classifier_calls) == int(nfe_run)
  assert guidance.classifier_nfe(nfe_run, 2.) == int(nfe_run)
  assert guidance.classifier_nfe(nfe_run, 0.) == 0
  assert guidance.guided_score_fn(score_fn, logits, jnp.array([0, 1, 2]), 0.) is score_fn


# ----------------------------------------------------------------------------- the classifier loss

def test_classifier_loss_is_minimised_by_the_exact_posterior():
  """The cross-entropy on x(t) ~ p_0t(. | x0) at the exact p_t(y | x) is below that of a
  sharpened or a shifted posterior (same noise draws), for VE, VP and sub-VP."""
  x0, y = GMM.sample_labelled(jax.random.PRNGKey(0), 20000)
  for sde in (sde_lib.VESDE(sigma_max=10.), sde_lib.VPSDE(), sde_lib.subVPSDE()):
    exact_logits = GMM.posterior_logits_fn(sde)
    loss = lambda fn: float(guidance.time_classifier_loss(fn, sde, jax.random.PRNGKey(1), x0, y))
    best = loss(exact_logits)
    assert best < loss(lambda x, t: 1.5 * exact_logits(x, t)) - 1e-3
    assert best < loss(lambda x, t: exact_logits(x, t) + jnp.array([0.5, 0., 0.])) - 1e-3
    # ... and it is the expected conditional entropy, which lies between 0 and H(y).
    h_y = -float(jnp.sum(GMM.weights * jnp.log(GMM.weights)))
    assert 0. < best < h_y


# ----------------------------------------------------------------------------- labels

def test_labels_rows_and_lists():
  np.testing.assert_array_equal(guidance.parse_labels('rows', 3, 6), [0, 0, 1, 1, 2, 2])
  np.testing.assert_array_equal(guidance.parse_labels('2,0', 3, 5), [2, 0, 2, 0, 2])
  np.testing.assert_array_equal(guidance.parse_labels('(1, 2)', 3, 2), [1, 2])


@pytest.mark.parametrize('spec,batch,match', [
    ('rows', 64, 'multiple of the 10 classes'), ('3,10', 8, 'label 10 outside'),
    ('-1', 8, 'label -1 outside'), ('cats', 8, "neither 'rows'")])
def test_bad_labels_are_one_line_config_errors(spec, batch, match):
  with pytest.raises(ConfigError, match=match) as err:
    guidance.parse_labels(spec, 10, batch)
  assert '\n' not in str(err.value)
