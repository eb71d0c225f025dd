"""Denoising MCMC against exact references: a Gaussian mixture gives the exact score at every
sigma and the exact posterior over the noise ladder (tests/exact.ladder_log_probs), which
stands in for the classifier."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import objectives
import optim
import sde_lib
import train
import train_state
from configs.dmcmc.defaults import add_dmcmc_configs
from dmcmc import classifier, dlg, integrators, run
from errors import ConfigError
from tests import exact
from tests.helpers import run_python, tiny_config

VE = sde_lib.VESDE(sigma_min=0.01, sigma_max=50.)
VP = sde_lib.VPSDE()
# 1-D two-mode mixture with mean 0.6 * -1 + 0.4 * 1.5 = 0.
MIX = exact.GaussianMixture([0.6, 0.4], [[-1.], [1.5]], [0.5, 0.5])
LADDER = classifier.ladder(6, 0.2, 2.)


def exact_logits(data, sigmas):
  return lambda x: exact.ladder_log_probs(data, x, sigmas)


def counting(fn):
  """fn plus a call counter that runs on the host at every call, inside jit and scan too."""
  calls = [0]

  def bump():
    calls[0] += 1

  def counted(*args):
    jax.debug.callback(bump)
    return fn(*args)

  return counted, calls


def count_run(fn, *args):
  out = jax.jit(fn)(*args)
  jax.block_until_ready(out)
  jax.effects_barrier()
  return out


# ----------------------------------------------------------------------------- the DLG step

@pytest.mark.parametrize('sde', [VE, VP, sde_lib.subVPSDE()], ids=['VE', 'VP', 'subVP'])
def test_langevin_step_stationary_variance(sde):
  """x + (eta/2) s + sqrt(eta) z on N(m, v) is AR(1) with stationary variance v / (1 - eta/(4v)).

  The level is pinned at sigma_j by a one-hot classifier; v = s^2 + sigma_j^2 = 1 and
  eta = 1 gives 4/3 (not v = 1). 2 x 10^4 independent values per moment: the variance's
  standard error is (4/3) sqrt(2 / 2e4) = 0.013, the tolerance 5 of them."""
  s, m, j = 0.6, 0.3, 3
  sigmas = jnp.array([0.1, 0.3, 0.5, 0.8, 2.])
  data = exact.gaussian(2, std=s, mean=m)
  v = s ** 2 + 0.8 ** 2
  pinned = lambda x: jnp.where(jnp.arange(5) == j, 0., -1e9)[None].repeat(x.shape[0], 0)
  step = dlg.make_step(dlg.ve_score_fn(sde, data.score_fn(sde)), pinned, sigmas,
                       sigma_update='gibbs', eta_scaling='none')
  n = 10_000
  x = m + np.sqrt(v) * jax.random.normal(jax.random.PRNGKey(0), (n, 2))
  chains = dlg.run_steps(step, jax.random.PRNGKey(1), dlg.Chains(x, jnp.full((n,), j)), 1., 60)
  assert np.all(np.asarray(chains.k) == j)
  values = np.asarray(chains.x).reshape(-1)
  expected = v / (1. - 1. / (4. * v))
  se = expected * np.sqrt(2. / values.size)
  assert abs(values.var() - expected) < 5 * se, (values.var(), expected)
  assert abs(values.mean() - m) < 5 * np.sqrt(expected / values.size)


def assert_exact_joint(x, k, ladder):
  """(x [n], k [n]) ~ MIX's p_{sigma_k}(x) / L: level histogram total variation < 0.03;
  x | k has mean 0 within 5 SE and variance var_data + sigma_k^2 within 5 SE + 2%."""
  levels = len(ladder)
  freq = np.bincount(k, minlength=levels) / len(k)
  assert 0.5 * np.abs(freq - 1 / levels).sum() < 0.03, freq
  data_var = 0.6 * 0.25 + 0.4 * 0.25 + 0.6 * 1. + 0.4 * 1.5 ** 2   # MIX's variance
  for level in range(levels):
    xs = x[k == level]
    var = data_var + float(ladder[level]) ** 2
    se_var = np.sqrt(np.mean((xs - xs.mean()) ** 4) - xs.var() ** 2) / np.sqrt(len(xs))
    assert abs(xs.mean()) < 5 * np.sqrt(var / len(xs)), (level, xs.mean())
    assert abs(xs.var() - var) < 5 * se_var + 0.02 * var, (level, xs.var(), var)


def test_gibbs_chain_matches_the_exact_joint():
  """Exact score + exact posterior drawn (Gibbs): (x, level) ~ p_{sigma_k}(x) / L.

  8000 independent chains start at the prior (x = sigma_max z, top level) and run 600 steps
  (h = 0.05 sigma_k^2). Under the exact joint the level is uniform and x | k has the mixture's
  mean 0 and variance var_data + sigma_k^2. Tolerances: level-histogram total variation < 0.03
  (its sampling noise is ~0.01 at n = 8000, 6 levels); per-level mean within 5 standard errors;
  per-level variance within 5 standard errors plus 2% for the Langevin bias
  1 / (1 - h / 4v) - 1 <= eta / 4 = 1.25%."""
  n, steps = 8000, 600
  step = dlg.make_step(dlg.ve_score_fn(VE, MIX.score_fn(VE)), exact_logits(MIX, LADDER), LADDER,
                       sigma_update='gibbs', eta_scaling='sigma2')
  x = LADDER[-1] * jax.random.normal(jax.random.PRNGKey(0), (n, 1))
  chains = jax.jit(lambda key, c: dlg.run_steps(step, key, c, 0.05, steps))(
      jax.random.PRNGKey(1), dlg.Chains(x, jnp.full((n,), 5, jnp.int32)))
  x, k = np.asarray(chains.x)[:, 0], np.asarray(chains.k)
  assert_exact_joint(x, k, LADDER)


def test_argmax_update_and_block_keep_the_lowest_sigma():
  """argmax: k is the exact posterior's mode at the new x. A block returns, per chain, the
  lowest-sigma state among its n_skip steps (latest on ties), excluding its start unless asked."""
  n, n_skip = 64, 7
  logits = exact_logits(MIX, LADDER)
  step = dlg.make_step(dlg.ve_score_fn(VE, MIX.score_fn(VE)), logits, LADDER,
                       sigma_update='argmax')
  start = dlg.Chains(jax.random.normal(jax.random.PRNGKey(0), (n, 1)), jnp.zeros((n,), jnp.int32))
  one = step(jax.random.PRNGKey(1), start, 0.05)
  np.testing.assert_array_equal(one.k, np.argmax(np.asarray(logits(one.x)), axis=-1))

  block = jax.jit(lambda key, c, inc: dlg.run_block(step, key, c, 0.5, n_skip, include_start=inc,
                                                    n_track=n), static_argnums=2)
  end, best, (tx, tk) = block(jax.random.PRNGKey(2), start, False)
  tx, tk = np.asarray(tx), np.asarray(tk)
  np.testing.assert_array_equal(best.k, tk.min(0))
  latest = n_skip - 1 - np.argmin(tk[::-1], axis=0)
  np.testing.assert_array_equal(best.x, tx[latest, np.arange(n)])
  np.testing.assert_array_equal(end.x, tx[-1])
  # With the start as a candidate (level 0, unbeatable) the output is the start unless the
  # chain came back to level 0 (the same key gives the same steps): then the latest such state.
  _, best_inc, _ = block(jax.random.PRNGKey(2), start, True)
  hit = (tk == 0).any(0)
  latest0 = n_skip - 1 - np.argmax(tk[::-1] == 0, axis=0)
  expected = np.where(hit[:, None], tx[latest0, np.arange(n)], np.asarray(start.x))
  assert np.all(np.asarray(best_inc.k) == 0) and 0 < hit.sum() < n
  np.testing.assert_array_equal(best_inc.x, expected)


def test_argmax_step_has_its_exact_one_step_law():
  """The argmax update's law after one DLG step, exactly. Data N(m, s^2 I) in D = 3 with the
  exact score and exact ladder posterior: log p_{sigma_i}(x) = -D/2 log v_i - r^2 / (2 v_i),
  v_i = s^2 + sigma_i^2, r = |x - m|, is unimodal in v_i, so argmax_i is the level whose
  interval [b_{i-1}, b_i) holds r^2, with b_i = D log(v_{i+1}/v_i) / (1/v_i - 1/v_{i+1}).
  Chains at level j with x - m ~ N(0, u I) step to x' - m = c (x - m) + sqrt(h) z,
  c = 1 - h / (2 v_j), h = eta sigma_j^2, so r'^2 / (c^2 u + h) ~ chi^2_D and
  P(k' = i) is a chi-square CDF difference. 200,000 chains: each level's frequency within 5
  standard errors sqrt(p (1 - p) / n). The start (u = 1 at level j = 5, v_j = 4.25) is far from
  its own level, so an update that reads the classifier at the old x is ~30 s.e. off."""
  from scipy.stats import chi2
  dim, s, m, j, eta, n = 3, 0.5, 0.2, 5, 0.05, 200_000
  data = exact.gaussian(dim, std=s, mean=m)
  step = dlg.make_step(dlg.ve_score_fn(VE, data.score_fn(VE)), exact_logits(data, LADDER),
                       LADDER, sigma_update='argmax', eta_scaling='sigma2')
  u = 1.
  x = m + np.sqrt(u) * jax.random.normal(jax.random.PRNGKey(3), (n, dim))
  out = jax.jit(step)(jax.random.PRNGKey(4), dlg.Chains(x, jnp.full((n,), j, jnp.int32)), eta)
  v = s ** 2 + np.asarray(LADDER, np.float64) ** 2
  h = eta * float(LADDER[j]) ** 2
  w = (1 - h / (2 * v[j])) ** 2 * u + h
  b = dim * np.log(v[1:] / v[:-1]) / (1 / v[:-1] - 1 / v[1:])
  p = np.diff(np.concatenate([[0.], chi2.cdf(b / w, dim), [1.]]))
  freq = np.bincount(np.asarray(out.k), minlength=len(v)) / n
  assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / n) + 1e-12), (freq, p)
  assert p.max() < 0.9      # several levels are hit: the test sees the whole partition


# ----------------------------------------------------------------------------- finishers

def _noisy_gaussian(n, s=0.7, m=0.5, dim=2):
  """Exact noisy samples x0 + sigma_n z of N(m, s^2 I) at per-sample sigma_n in [0.02, 20]."""
  sig = jnp.exp(jax.random.uniform(jax.random.PRNGKey(10), (n,), minval=np.log(0.02),
                                   maxval=np.log(20.)))
  eps = jax.random.normal(jax.random.PRNGKey(11), (n, dim))
  return m + jnp.sqrt(s ** 2 + sig ** 2)[:, None] * eps, sig


def _pf_map_then_tweedie(x, sig, s=0.7, m=0.5, smin=0.01):
  """Closed-form PF map sigma_n -> sigma_min (affine for Gaussian data), then Tweedie."""
  pf = m + (x - m) * (np.sqrt(s ** 2 + smin ** 2) / jnp.sqrt(s ** 2 + sig ** 2))[:, None]
  return m + (pf - m) * s ** 2 / (s ** 2 + smin ** 2)


@pytest.mark.parametrize('sde', [pytest.param(VE, marks=pytest.mark.slow), VP], ids=['VE', 'VP'])
def test_deterministic_finishers_follow_the_pf_map(sde):
  """Sample by sample against the closed-form PF map + Tweedie (|x| ~ up to 15):
  adaptive dopri5 at rtol = atol = 1e-5: 2e-3 (measured 2e-4); EDM Heun is 2nd order: its
  error must drop by >= 3x from 20 to 40 steps (4x asymptotically) and be < 0.02 at 40
  (measured 0.007); fixed-step PF Euler is 1st order: the ratio must be in [1.6, 2.4]."""
  data = exact.gaussian(2, std=0.7, mean=0.5)
  x, sig = _noisy_gaussian(256)
  expected = _pf_map_then_tweedie(x, sig)

  def err(name, steps, **kw):
    f = integrators.get_finisher(name, sde, data.score_fn(sde), 0.01, steps, **kw)
    out, nfe = jax.jit(f)(jax.random.PRNGKey(0), x, sig)
    return float(jnp.max(jnp.abs(out - expected))), nfe

  e, nfe = err('pf_ode_adaptive', 0, rtol=1e-5, atol=1e-5)
  assert e < 2e-3 and int(nfe) > 0
  h20, h40 = err('edm_heun', 20)[0], err('edm_heun', 40)[0]
  assert h40 < 0.02 and h20 / h40 > 3., (h20, h40)
  e100, e200 = err('pf_ode_fixed', 100)[0], err('pf_ode_fixed', 200)[0]
  assert 1.6 < e100 / e200 < 2.4, (e100, e200)


@pytest.mark.parametrize('name', ['edm_stochastic', 'reverse_diffusion', 'euler_maruyama'])
@pytest.mark.parametrize('sde', [pytest.param(VE, marks=pytest.mark.slow), VP], ids=['VE', 'VP'])
def test_stochastic_finishers_recover_the_data_gaussian(sde, name):
  """From exact noisy samples at per-sample sigma_n, 100 steps then Tweedie: the output law
  is N(m, s^4 / (s^2 + sigma_min^2) I) exactly for an exact solver. 2 x 10^4 samples: 5
  standard errors of the difference with an exact reference sample, plus 0.02 for the
  O(1/N) discretisation (measured below 0.01)."""
  s, m, n = 0.7, 0.5, 20_000
  data = exact.gaussian(2, std=s, mean=m)
  x, sig = _noisy_gaussian(n)
  f = integrators.get_finisher(name, sde, data.score_fn(sde), 0.01, 100, s_churn=40.)
  out, _ = jax.jit(f)(jax.random.PRNGKey(3), x, sig)
  ref = m + s ** 2 / np.sqrt(s ** 2 + 1e-4) * jax.random.normal(jax.random.PRNGKey(4), (n, 2))
  exact.assert_same_moments(out, ref, allowance=0.02)


def _vp_np(t, b0=0.1, b1=20.):
  """VP's beta(t), alpha(t), std(t) in float64, from Eq. 32-33 (independent of sde_lib)."""
  alpha = np.exp(-0.25 * t ** 2 * (b1 - b0) - 0.5 * t * b0)
  return b0 + t * (b1 - b0), alpha, np.sqrt(1. - alpha ** 2)


def _vp_t_np(sigma, b0=0.1, b1=20.):
  """t with std/alpha = sigma: the root of b0 t + (b1 - b0) t^2 / 2 = log(1 + sigma^2)."""
  b = np.log1p(sigma ** 2)
  return (-b0 + np.sqrt(b0 ** 2 + 2 * (b1 - b0) * b)) / (b1 - b0)


@pytest.mark.parametrize('name', ['euler_maruyama', 'pf_ode_fixed', 'reverse_diffusion'])
def test_fixed_step_finishers_are_their_update_on_each_samples_grid(name):
  """Two steps on VP from per-sample sigma_n, then Tweedie, against the same update in
  float64 numpy with the finisher's own normal draws (key i of split(key, 2) at step i):
  EM / PF Euler on x_t = alpha x_hat, linear in t from t(sigma_n) to t(sigma_min);
  reverse diffusion x + (s_i^2 - s_{i+1}^2) s + sqrt(.) z on the geometric sigma ladder of
  the VE view. Data N(0.5, 0.7^2), exact score. float32 over 3 score calls: 1e-4 relative."""
  m, s2, smin = 0.5, 0.49, 0.01
  data = exact.gaussian(2, std=0.7, mean=m)
  sig = np.array([0.02, 0.3, 2., 15.], np.float32)
  x_hat = np.asarray(m + np.sqrt(s2 + sig ** 2)[:, None] * jax.random.normal(
      jax.random.PRNGKey(1), (4, 2)), np.float64)
  key = jax.random.PRNGKey(2)
  out, nfe = jax.jit(integrators.get_finisher(name, VP, data.score_fn(VP), smin, 2))(
      key, jnp.asarray(x_hat, jnp.float32), jnp.asarray(sig))
  z = [np.asarray(jax.random.normal(k, (4, 2)), np.float64) for k in jax.random.split(key, 2)]
  sig = sig.astype(np.float64)[:, None]
  if name == 'reverse_diffusion':          # VE view: p_sigma = N(m, s^2 + sigma^2)
    ladder = [sig, np.sqrt(sig * smin), np.full_like(sig, smin)]
    x = x_hat
    for i in range(2):
      var = ladder[i] ** 2 - ladder[i + 1] ** 2
      x = x - var * (x - m) / (s2 + ladder[i] ** 2) + np.sqrt(var) * z[i]
    want = x - smin ** 2 * (x - m) / (s2 + smin ** 2)
  else:                                    # t-space: p_t = N(alpha m, alpha^2 s^2 + std^2)
    t0, t1 = _vp_t_np(sig), _vp_t_np(np.full_like(sig, smin))
    ts = [t0, (t0 + t1) / 2, t1]
    x = _vp_np(t0)[1] * x_hat
    c = 0.5 if name == 'pf_ode_fixed' else 1.
    for i in range(2):
      beta, alpha, std = _vp_np(ts[i])
      score = -(x - alpha * m) / (alpha ** 2 * s2 + std ** 2)
      dt = ts[i + 1] - ts[i]
      x = x + (-0.5 * beta * x - c * beta * score) * dt + (c == 1.) * np.sqrt(-beta * dt) * z[i]
    beta, alpha, std = _vp_np(t1)
    want = (x - std ** 2 * (x - alpha * m) / (alpha ** 2 * s2 + std ** 2)) / alpha
  assert int(nfe) == 2
  np.testing.assert_allclose(np.asarray(out, np.float64), want, rtol=0,
                             atol=1e-4 * np.abs(want).max())


def test_ve_reverse_diffusion_on_the_ve_ladder_is_the_pc_predictor():
  """On a VE SDE's own ladder sigma_N > ... > sigma_1, then 0, the grid-driven step is
  sampling.reverse_diffusion (which reads sigma_i and sigma_{i-1} off the SDE's N levels)
  on the matching times, predictor only: the same maths and the same keys."""
  import sampling
  sde = sde_lib.VESDE(sigma_min=0.01, sigma_max=5., N=6)
  score_fn = MIX.score_fn(sde)
  ladder = jnp.concatenate([sde.discrete_sigmas[::-1], jnp.zeros((1,))])
  times = jnp.concatenate([sde.t_from_ve_sigma(ladder[:-1]), jnp.zeros((1,))])
  x0 = 5. * jax.random.normal(jax.random.PRNGKey(0), (64, 1))
  key = jax.random.PRNGKey(1)
  want, nfe_pc = sampling.pc_driver(key, score_fn, sde, x0, times, predictor='reverse_diffusion',
                                    corrector=None, denoise=False)
  got, nfe = integrators.ve_reverse_diffusion(key, score_fn, sde, x0, ladder)
  assert nfe == nfe_pc == 6
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_a_misspelt_finisher_option_is_a_config_error():
  """Each finisher takes the options it uses; one no finisher takes is an error naming it."""
  with pytest.raises(ConfigError, match=r'dmcmc\.rhoo .*atol, method, rho, rtol, s_churn'):
    integrators.get_finisher('edm_heun', VE, None, 0.01, 3, rhoo=7.)
  integrators.get_finisher('edm_heun', VE, None, 0.01, 3, rho=7., rtol=1e-3)   # known: fine


# ----------------------------------------------------------------------------- NFE

def test_nfe_accounting_is_exact():
  """Reported NFE = counted score calls (a host callback in every call): each fixed-budget
  finisher (integrator NFE + 1 Tweedie), the adaptive one, a block (n_skip score and classifier
  calls) and the initialisation (finisher + Tweedie + K warm-up; 1 + K classifier calls)."""
  data = exact.gaussian(1, std=0.7)
  x, sig = _noisy_gaussian(4, dim=1)
  for name in integrators.FINISHERS:
    score_fn, calls = counting(data.score_fn(VP))
    f = integrators.get_finisher(name, VP, score_fn, 0.01, 3, rtol=1e-3, atol=1e-3)
    _, nfe = count_run(f, jax.random.PRNGKey(0), x, sig)
    assert calls[0] == int(nfe) + integrators.TWEEDIE_NFE, name
    if name != 'pf_ode_adaptive':
      assert int(nfe) == integrators.static_nfe(name, 3), name

  score_fn, calls = counting(MIX.score_fn(VE))
  logits_fn, ccalls = counting(exact_logits(MIX, LADDER))
  step = dlg.make_step(dlg.ve_score_fn(VE, score_fn), logits_fn, LADDER)
  finisher = integrators.get_finisher('edm_heun', VE, score_fn, 0.2, 2)
  chains, cost = count_run(
      lambda key: dlg.init_chains(key, step, logits_fn, LADDER, (4, 1), finisher=finisher,
                                  init_noise=0.1, eta0=0.01, warmup_steps=3),
      jax.random.PRNGKey(1))
  cost = jax.tree.map(int, cost)
  assert (calls[0], ccalls[0]) == (cost['score_nfe'], cost['classifier_calls']) == (4 + 1 + 3, 4)
  calls[0] = ccalls[0] = 0
  count_run(lambda key, c: dlg.run_block(step, key, c, 0.05, 5), jax.random.PRNGKey(2), chains)
  assert (calls[0], ccalls[0]) == (5, 5)


# ----------------------------------------------------------------------------- classifier

def _classifier_config(n_levels=8, sigma_min=0.05, sigma_max=5.):
  config = add_dmcmc_configs(tiny_config('vesde'))
  config.training.objective = 'noise_classifier'
  config.model.name = 'noise_mlp'
  d = config.dmcmc
  d.n_levels, d.sigma_min, d.sigma_max = n_levels, sigma_min, sigma_max
  d.classifier_hidden_dims = (64, 64)
  return config


@pytest.mark.slow
def test_classifier_reaches_the_bayes_accuracy():
  """An MLP trained by the project's train step (training.objective='noise_classifier',
  1500 Adam steps of 256 on the `gmm` toy, 8 levels 0.05..5) classifies fresh (x0 + sigma_k z,
  k) within 0.04 of the exact posterior's (Bayes) accuracy. Both are measured on the same
  20 000 draws: the difference's standard error is below 0.004, so 0.04 is 10 of them and
  leaves room for the small network's own approximation error (measured gap: ~0.01)."""
  config = _classifier_config()
  config.optim.lr, config.optim.warmup = 3e-3, 50
  sde, _ = sde_lib.get_sde(config)
  from models import create_model
  import parallel
  import toys
  model = create_model(config)
  optimizer = optim.get_optimizer(config)
  state = train.init_state(config, model, optimizer, (2,), parallel.make_mesh())
  step = train_state.get_multi_step(objectives.get_train_step(config, sde, model, optimizer),
                                    unroll=False)
  rng = np.random.default_rng(0)
  batches = toys.sample_gmm(rng, 1500 * 256).reshape(1500, 256, 2).astype(np.float32)
  state, values = jax.jit(step)(state, jnp.asarray(batches))
  assert np.all(np.isfinite(values)) and values[-100:].mean() < values[:10].mean()

  sigmas = classifier.ladder_from_config(config)
  w, mu, sd = toys.toy_gmm_params(2)
  data = exact.GaussianMixture(w, mu, sd)
  n = 20_000
  x0 = toys.sample_gmm(rng, n)
  k = rng.integers(0, len(sigmas), n)
  x = jnp.asarray(x0 + np.asarray(sigmas)[k, None] * rng.standard_normal((n, 2)), jnp.float32)
  pred = np.argmax(classifier.logits_fn_from_model(model, state.params)(x), -1)
  bayes = np.argmax(exact.ladder_log_probs(data, x, sigmas), -1)
  acc, bayes_acc = np.mean(pred == k), np.mean(bayes == k)
  assert acc > bayes_acc - 0.04, (acc, bayes_acc)


# ----------------------------------------------------------------------------- --mode dmcmc

def _run_config(tmp_path):
  config = add_dmcmc_configs(tiny_config('vesde'))
  d = config.dmcmc
  d.n_levels, d.sigma_min, d.sigma_max = 20, 0.01, 5.
  d.classifier_hidden_dims = (16,)
  d.score_workdir, d.classifier_workdir = str(tmp_path / 'score'), str(tmp_path / 'clf')
  d.n_chains, d.num_outputs, d.n_skip, d.warmup_steps = 8, 16, 3, 2
  d.integrator, d.integrator_steps = 'edm_heun', 2
  d.init_integrator, d.init_integrator_steps, d.init_noise = 'pf_ode_fixed', 2, 0.1
  d.n_track = 4
  return config


def test_mode_end_to_end(tmp_path):
  """Tiny score and classifier checkpoints (1 train step each), then --mode dmcmc."""
  config = _run_config(tmp_path)
  train.train_and_evaluate(config, config.dmcmc.score_workdir)
  train.train_and_evaluate(run.classifier_config(config), config.dmcmc.classifier_workdir)
  result = run.dmcmc_mode(config, str(tmp_path / 'run'))
  out = tmp_path / 'run' / 'dmcmc'
  for name in ('samples.png', 'samples.npz', 'samples.json', 'sigma_n.png', 'sigma_n.npz',
               'trajectory.png'):
    assert (out / name).exists(), name
  x = np.load(out / 'samples.npz')['samples']
  assert x.shape == (16, 2) and np.all(np.isfinite(x))
  meta = json.load(open(out / 'samples.json'))
  assert meta['nfe_per_output'] == {'dlg_score': 3, 'integrator': 4., 'tweedie': 1, 'total': 8.,
                                    'dlg_classifier_calls': 3}
  assert meta['init_per_chain']['score_nfe'] == 2 + 1 + 2       # init run + Tweedie + K
  assert sum(meta['sigma_n_histogram']['counts']) == 16 and meta['config_name'] == config.name
  sigma_n = np.load(out / 'sigma_n.npz')['sigma_n']
  assert sigma_n.shape == (16,) and set(np.round(sigma_n, 5)) <= set(np.round(np.asarray(
      classifier.ladder_from_config(config)), 5))
  assert result['paths']['png'].endswith('samples.png')


def test_mode_config_errors(tmp_path):
  config = _run_config(tmp_path)
  config.dmcmc.classifier_workdir = ''
  with pytest.raises(ConfigError, match='dmcmc.classifier_workdir'):
    run.dmcmc_mode(config, str(tmp_path / 'run'))
  config = _run_config(tmp_path)
  config.dmcmc.sigma_max = 50.              # the VE model only reaches 5
  with pytest.raises(ConfigError, match='dmcmc.sigma_max'):
    run.dmcmc_mode(config, str(tmp_path / 'run'))
  config = _run_config(tmp_path)
  config.dmcmc.integrator = 'rk4'
  with pytest.raises(ConfigError, match='dmcmc.integrator'):
    run.dmcmc_mode(config, str(tmp_path / 'run'))
  assert not (tmp_path / 'run').exists()


# ----------------------------------------------------------------------------- data-parallel chains

def chain_outputs(workdir: str) -> dict:
  """Init + 2 blocks of `run.chain_programs` with fresh networks on every device of the mesh.

  Returns the arrays (host copies) and the sharding specs of the per-chain outputs.
  """
  import pathlib
  import parallel
  import restore
  config = _run_config(pathlib.Path(workdir))
  config.dmcmc.n_track = 2
  mesh = parallel.make_mesh()
  score, clf = (restore.fresh_run(c, mesh=mesh) for c in (config, run.classifier_config(config)))
  sigmas = classifier.ladder_from_config(config)
  init, block = run.chain_programs(config, score.sde, score.model, clf.model, sigmas, (2,), mesh)
  key = jax.random.PRNGKey(config.seed)
  chains, _ = init(key, score.ema_params, clf.ema_params)
  out, specs = {'init_x': chains.x}, {'init_x': chains.x.sharding.spec}
  for b in range(2):
    chains, x0, k, traj, nfe = block(jax.random.fold_in(key, b + 1), chains, score.ema_params,
                                     clf.ema_params)
    for name, value in (('x', chains.x), ('k', chains.k), ('x0', x0), ('level', k)):
      out[f'{name}{b}'], specs[f'{name}{b}'] = value, value.sharding.spec
    out[f'traj{b}'] = traj[0]
  return ({n: np.asarray(parallel.to_host(v)) for n, v in out.items()},
          {n: [str(a) for a in s] for n, s in specs.items()})


_TWO_DEVICE_CHAINS = """
import json, sys, numpy as np, jax
from tests.test_dmcmc import chain_outputs
arrays, specs = chain_outputs(sys.argv[1])
np.savez(sys.argv[1] + '/chains.npz', **arrays)
print(json.dumps({'devices': jax.device_count(), 'specs': specs}))
"""


def test_chains_are_sharded_over_two_devices_and_match_one(tmp_path):
  """On 2 simulated devices every per-chain output (chains, x0, levels) is split over 'data',
  and with the same keys the outputs equal the 1-device run: keys are split, not sharded
  (partitionable threefry), so only float rounding of differently batched networks
  differs (float32: ~1e-6 relative; the discrete levels must agree exactly)."""
  one, one_specs = chain_outputs(str(tmp_path))
  proc = run_python(['-c', _TWO_DEVICE_CHAINS, str(tmp_path)],
                    env={'XLA_FLAGS': '--xla_force_host_platform_device_count=2'})
  assert proc.returncode == 0, proc.stderr[-3000:]
  report = json.loads(proc.stdout.strip().splitlines()[-1])
  assert report['devices'] == 2
  for name, spec in report['specs'].items():
    assert spec == ['data'], (name, spec)
  assert one_specs == report['specs']
  two = np.load(tmp_path / 'chains.npz')
  assert sorted(two.files) == sorted(one)
  for name in one:
    if name.startswith(('k', 'level')):
      np.testing.assert_array_equal(two[name], one[name], err_msg=name)
    else:
      np.testing.assert_allclose(two[name], one[name], rtol=1e-5, atol=1e-5, err_msg=name)
