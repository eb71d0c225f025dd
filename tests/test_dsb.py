"""DSB (dsb/): the Gaussian Schrödinger bridge closed form, the time grid and reference
chain, the mean-matching optimum, IPF on Gaussians against exact answers, `--mode dsb`."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.dsb import defaults as dsb_defaults
from configs.dsb import gaussian as gaussian_config
from dsb import cache as cache_lib
from dsb import data as dsb_data
from dsb import ipf as ipf_lib
from dsb import losses as dsb_losses
from dsb import metrics, networks, run, schedule
from distances import sliced_wasserstein
from errors import ConfigError
from models import mlp
from tests import exact
from tests.helpers import apply, run_python

# The 2-D bridge of the tests: full covariances at both ends, far-apart means.
M0, S0 = np.array([1., -.5]), np.array([[1., .5], [.5, .8]])
M1, S1 = np.array([-.5, .5]), np.array([[.6, -.2], [-.2, 1.2]])


def leaves_equal(a, b):
  return all(np.array_equal(np.asarray(x), np.asarray(y))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# ----------------------------------------------------------------------------- closed form

def test_gaussian_bridge_closed_form_and_its_sde():
  sigma = 0.8
  bridge = exact.GaussianBridge(M0, S0, M1, S1, sigma)
  # pi(x, y) ∝ p0(x) p1(y) exp(x.y / sigma^2) x (functions of x or y alone): the cross block
  # of the joint precision is -I / sigma^2. Pure float64 linear algebra: 1e-9.
  precision = np.linalg.inv(bridge.joint_cov())
  np.testing.assert_allclose(precision[:2, 2:], -np.eye(2) / sigma ** 2, atol=1e-9)
  np.testing.assert_allclose(bridge.marginal(0.)[1], S0, atol=1e-12)
  np.testing.assert_allclose(bridge.marginal(1.)[1], S1, atol=1e-12)

  # Euler-Maruyama of dX = f_t(X) dt + sigma dW from pi_0 reproduces pi_1 and the coupling.
  n, steps = 40000, 400
  rng = np.random.default_rng(0)
  x0 = M0 + rng.standard_normal((n, 2)) @ np.linalg.cholesky(S0).T
  x, dt = x0.copy(), 1. / steps
  for i in range(steps):
    x = x + bridge.drift(x, i * dt) * dt + sigma * np.sqrt(dt) * rng.standard_normal((n, 2))
  # Tolerance: 5 Monte-Carlo standard errors (mean: sqrt(S1_ii / n); second moments:
  # sqrt(Var(xy) / n), estimated) plus Euler's O(dt) weak error, 1/400 x |drift'| ~ 0.01.
  se_mean = np.sqrt(np.diag(S1) / n)
  assert np.all(np.abs(x.mean(0) - M1) < 5 * se_mean + 0.01), (x.mean(0), M1)
  joint = np.concatenate([x0, x], 1)
  c = joint - joint.mean(0)
  se_cov = (c[:, :, None] * c[:, None, :]).reshape(n, -1).std(0).reshape(4, 4) / np.sqrt(n)
  err = np.abs(np.cov(joint.T) - bridge.joint_cov())
  assert np.all(err < 5 * se_cov + 0.01), (np.cov(joint.T), bridge.joint_cov())
  # Every intermediate marginal too (here the midpoint): checks drift and Sigma_t together.
  x = x0.copy()
  for i in range(steps // 2):
    x = x + bridge.drift(x, i * dt) * dt + sigma * np.sqrt(dt) * rng.standard_normal((n, 2))
  mu_half, cov_half = bridge.marginal(0.5)
  c = x - x.mean(0)
  se_half = (c[:, :, None] * c[:, None, :]).reshape(n, -1).std(0).reshape(2, 2) / np.sqrt(n)
  assert np.all(np.abs(x.mean(0) - mu_half) < 5 * np.sqrt(np.diag(cov_half) / n) + 0.01)
  assert np.all(np.abs(np.cov(x.T) - cov_half) < 5 * se_half + 0.01)


# ----------------------------------------------------------------------------- grid, reference

def _dsb_config(**overrides):
  config = dsb_defaults.get_dsb_configs()
  for key, value in overrides.items():
    setattr(config.dsb, key, value)
  return config


def test_time_grids_and_reference_chain():
  lin = schedule.get_gammas(_dsb_config(num_steps=6, gamma_schedule='linear',
                                        gamma_min=0.1, gamma_max=0.3))
  np.testing.assert_allclose(lin, [.1, .2, .3, .3, .2, .1])
  odd = schedule.get_gammas(_dsb_config(num_steps=5, gamma_schedule='geometric',
                                        gamma_min=0.1, gamma_max=0.4))
  np.testing.assert_allclose(odd, [.1, .2, .4, .2, .1])
  const = schedule.get_gammas(_dsb_config(num_steps=4, gamma_schedule='constant',
                                          gamma_total=0.5))
  np.testing.assert_allclose(const, [.125] * 4)
  with pytest.raises(ConfigError, match='dsb.gamma_schedule'):
    schedule.get_gammas(_dsb_config(gamma_schedule='cosine'))
  np.testing.assert_allclose(schedule.time_labels(np.array([.1, .3]))[[0, 2]], [0., 999.])

  # The OU reference chain is linear-Gaussian: X_{k+1} - m = (1 - g/v)(X_k - m) + sqrt(2g) Z,
  # so its law after N steps is exact. Monte Carlo of `simulate` against it.
  gammas = np.array([.05, .1, .2, .1, .05])
  m, v, n = 0.7, 2., 100000
  ref = schedule.reference_mean_fn('ou', m, v, jnp.asarray(gammas, jnp.float32))
  x0 = jax.random.normal(jax.random.PRNGKey(1), (n, 2)) * 0.5 - 1.
  traj = np.asarray(schedule.simulate(ref, x0, jnp.asarray(gammas, jnp.float32),
                                      jax.random.PRNGKey(2), forward=True))
  mean, var = -1., 0.25
  for g in gammas:
    mean, var = m + (1 - g / v) * (mean - m), (1 - g / v) ** 2 * var + 2 * g
  # 5 standard errors of a mean (sqrt(var/n)) and of a variance (var sqrt(2/n)).
  np.testing.assert_array_less(np.abs(traj[-1].mean(0) - mean), 5 * np.sqrt(var / n))
  np.testing.assert_array_less(np.abs(traj[-1].var(0) - var), 5 * var * np.sqrt(2 / n))
  np.testing.assert_array_equal(traj[0], x0)
  # Backward simulation returns grid order and, with last_mean, no noise on the last step:
  # with the identity mean, X_0 = X_1 exactly.
  back = schedule.simulate(lambda x, k: x, x0, jnp.asarray(gammas, jnp.float32),
                           jax.random.PRNGKey(3), forward=False, last_mean=True)
  np.testing.assert_array_equal(back[-1], x0)
  np.testing.assert_array_equal(back[0], back[1])


# ----------------------------------------------------------------------------- mean matching

@pytest.mark.parametrize('sim_forward', [True, False])
def test_mean_matching_optimum_is_the_conditional_mean_target(sim_forward):
  """One step of an affine chain X' = L X + c + sqrt(2 gamma) Z from X ~ N(mu, Sigma).

  The regression of the mean-matching target T = X' + F(X) - F(X') on the opposite end X'
  (F = L x + c) has the population optimum E[T | X'] = X' + L (E[X | X'] - X'), with
  E[X | X'] = mu + Sigma L^T Sigma'^{-1} (X' - mu'), Sigma' = L Sigma L^T + 2 gamma I.
  The exact least-squares fit (with intercept) of `mean_matching_pairs`' targets must
  agree within 5 OLS standard errors.
  """
  d, n, gamma = 3, 200000, 0.1
  rng = np.random.default_rng(0)
  lin = np.eye(d) + 0.3 * rng.standard_normal((d, d))
  c = rng.standard_normal(d)
  mu = rng.standard_normal(d)
  a = rng.standard_normal((d, d))
  sigma = a @ a.T / d + 0.5 * np.eye(d)
  gam = jnp.array([gamma], jnp.float32)
  mean_fn = lambda x, k: x @ jnp.asarray(lin.T, jnp.float32) + jnp.asarray(c, jnp.float32)
  x_start = jnp.asarray(mu + rng.standard_normal((n, d)) @ np.linalg.cholesky(sigma).T,
                        jnp.float32)
  traj = schedule.simulate(mean_fn, x_start, gam, jax.random.PRNGKey(0), forward=sim_forward)
  x_in, k, target = dsb_losses.mean_matching_pairs(mean_fn, traj, sim_forward=sim_forward)
  assert np.all(np.asarray(k) == (1 if sim_forward else 0))    # B_1 is trained, or F_0
  x_in, target = np.asarray(x_in[0], np.float64), np.asarray(target[0], np.float64)

  design = np.concatenate([x_in, np.ones((n, 1))], 1)
  coef, *_ = np.linalg.lstsq(design, target, rcond=None)        # [d + 1, d]
  resid = target - design @ coef
  se = np.sqrt(np.diag(np.linalg.inv(design.T @ design)))[:, None] * resid.std(0)[None]

  sigma_out = lin @ sigma @ lin.T + 2 * gamma * np.eye(d)
  mu_out = lin @ mu + c
  gain = sigma @ lin.T @ np.linalg.inv(sigma_out)               # E[X | X'] = mu + gain (X' - mu')
  want_lin = np.eye(d) + lin @ (gain - np.eye(d))
  want_c = lin @ (mu - gain @ mu_out)
  want = np.concatenate([want_lin.T, want_c[None]], 0)
  assert np.all(np.abs(coef - want) < 5 * se), (coef, want, se)
  # The loss at the optimum equals the residual variance, and is larger elsewhere.
  affine = lambda w: lambda x, k: x @ jnp.asarray(w[:d], jnp.float32) + jnp.asarray(w[d], jnp.float32)
  args = (jnp.asarray(x_in, jnp.float32), None, jnp.asarray(target, jnp.float32))
  best = float(dsb_losses.mean_matching_loss(affine(coef), *args))
  np.testing.assert_allclose(best, np.mean(resid ** 2), rtol=1e-3)
  assert float(dsb_losses.mean_matching_loss(affine(coef + 0.05), *args)) > best


# ----------------------------------------------------------------------------- IPF on Gaussians

def test_ipf_on_gaussians_matches_exact_mean_matching_and_the_closed_form():
  """Affine networks, Brownian reference with sigma = 1, N = 20, 4 IPF iterations.

  The learned backward chain's law from pi_1 (exact, `affine_chain_moments`) is compared with
  (a) IPF with exact population mean matching on the same grid: they differ only by the
  finite data and SGD; (b) the closed-form bridge: the terminal mean and covariance must
  equal pi_0's and the coupling's cross-covariance the closed form's, within the population
  DSB's own discretisation bias (mean matching with Gaussian steps of variance 2 gamma is
  exact only as gamma -> 0; computed below, ~0.07 at N = 20, ~1/N) plus the same SGD allowance.
  """
  config = gaussian_config.get_config('2')
  d = config.dsb
  d.n_ipf, d.num_iter, d.cache_refresh, d.log_freq, d.cache_size = 4, 4000, 1000, 1000, 8000
  config.optim.lr = 2e-3
  ipf = ipf_lib.IPF(config, (2,), 0., 1.)
  nets = ipf.init_nets(jax.random.PRNGKey(0))
  chol0, chol1 = np.linalg.cholesky(S0), np.linalg.cholesky(S1)

  refreshes = []

  def source(m, chol, h):
    def batch(r):
      refreshes.append((h, r))
      z = np.random.default_rng([h, r]).standard_normal((d.cache_size, 2))
      return jnp.asarray(m + z @ chol.T, jnp.float32)
    return batch

  for h in range(1, 2 * d.n_ipf + 1):
    start = source(M0, chol0, h) if h % 2 else source(M1, chol1, h)
    nets, logged = ipf.run_half(h, nets, jax.random.PRNGKey(h), start)
    assert np.isfinite(logged).all()
  # A fresh cache every cache_refresh = 1000 of the 4000 steps of each half.
  assert refreshes == [(h, r) for h in range(1, 9) for r in range(4)]
  got_m, got_s, got_x = networks.affine_chain_moments(nets['backward']['ema'], ipf.gammas,
                                                      M1, S1, forward=False)
  pop = exact.population_dsb(ipf.gammas, M0, S0, M1, S1, d.n_ipf)
  pop_m, pop_s, pop_x = networks.affine_chain_moments(pop['backward'], ipf.gammas, M1, S1,
                                                      forward=False)
  # SGD allowance 0.04. Each half fits the affine maps from 4 x 8000 trajectories (per-step
  # coefficient s.e. ~ sqrt(2 gamma / 32000) ~ 0.001) with Adam at lr 2e-3 and an EMA; these
  # errors add up over 20 steps and compound over IPF iterations, most in the coupling's
  # cross-covariance. Measured: max deviation 0.025 (cross-cov), 0.016 (cov), 0.003 (mean);
  # with a quarter of the data and 2.5x the lr it was 0.065, so it is noise, not bias.
  sgd = 0.04
  for got, want in [(got_m, pop_m), (got_s, pop_s), (got_x, pop_x)]:
    assert np.all(np.abs(got - want) < sgd), (got, want)
  bridge = exact.GaussianBridge(M0, S0, M1, S1, sigma=np.sqrt(2 * ipf.gammas.sum()))
  for got, pop, want in [(got_m, pop_m, M0), (got_s, pop_s, S0),
                         (got_x.T, pop_x.T, bridge.cross)]:
    bias = np.abs(pop - want)
    assert bias.max() < 0.1            # the discretisation bias itself is small...
    assert np.all(np.abs(got - want) < bias + sgd), (got, want, bias)
  # ...and IPF did the work: after iteration 1 the chain was 0.5 off in the mean.
  first = networks.affine_chain_moments(exact.population_dsb(ipf.gammas, M0, S0, M1, S1, 1)
                                        ['backward'], ipf.gammas, M1, S1, forward=False)
  assert np.abs(first[0] - M0).max() > 0.3


# ----------------------------------------------------------------------------- data, metrics

def test_letters_and_sliced_wasserstein():
  train, test = dsb_data.letters_images('train'), dsb_data.letters_images('test')
  assert train.shape == (1500, 8, 8, 1) and test.shape == (297, 8, 8, 1)
  np.testing.assert_array_equal(np.round(train * 16), train * 16)   # digits' 17 levels
  assert train.min() == 0. and train.max() == 1.
  # Translating a point cloud by u shifts every sorted projection by theta.u exactly, so
  # SW_2^2 = E_theta (theta.u)^2 = |u|^2 / D: 9/4 here. With theta_1^2 ~ Beta(1/2, 3/2)
  # (relative s.d. 1), 4000 projections give SW a relative s.e. of 0.008: rtol 0.05 ~ 6 s.e.
  x = np.random.default_rng(0).standard_normal((500, 4))
  u = np.array([3., 0., 0., 0.])
  sw = sliced_wasserstein(x, x + u, order=2, num_projections=4000)
  np.testing.assert_allclose(sw, 3. / 2., rtol=0.05)
  assert sliced_wasserstein(x, x, order=2) == 0.
  np.testing.assert_allclose(metrics.gaussian_kl(np.zeros(3), 2 * np.eye(3), np.ones(3),
                                                 np.eye(3)),
                             0.5 * (6 + 3 - 3 - 3 * np.log(2)), rtol=1e-12)


# ----------------------------------------------------------------------------- --mode dsb

def tiny_toy_config(n_ipf=2):
  from configs.dsb import toy
  config = apply(toy.get_config('moons'), mlp.tiny_config_overrides())
  d = config.dsb
  d.n_ipf, d.num_iter, d.cache_refresh, d.log_freq = n_ipf, 20, 10, 10
  d.num_steps, d.batch_size, d.cache_size, d.num_samples = 5, 32, 32, 64
  d.warm_start = False        # exercises the fresh-init path
  config.name = 'tests/tiny_dsb_toy'
  return config


@pytest.fixture
def compile_cache(tmp_path):
  """A persistent XLA cache for this test only: each `dsb_mode` call builds its own jitted
  functions, and the second and third runs would otherwise compile them all again (~2/3
  of the test's time on this machine)."""
  from jax._src import compilation_cache   # pylint: disable=g-import-not-at-top
  names = ('jax_compilation_cache_dir', 'jax_persistent_cache_min_compile_time_secs')
  old = {n: getattr(jax.config, n) for n in names}
  jax.config.update(names[0], str(tmp_path / 'xla_cache'))
  jax.config.update(names[1], 0.)
  compilation_cache.reset_cache()
  yield
  for n, v in old.items():
    jax.config.update(n, v)
  compilation_cache.reset_cache()


def test_mode_end_to_end_and_resume(tmp_path, compile_cache):
  config = tiny_toy_config()
  with pytest.raises(ConfigError, match='dsb.gamma_schedule'):
    bad = tiny_toy_config()
    bad.dsb.gamma_schedule = 'cosine'
    run.dsb_mode(bad, str(tmp_path / 'bad'))
  assert not os.path.exists(tmp_path / 'bad')          # config checked before any write

  full = run.dsb_mode(config, str(tmp_path / 'full'))
  out = tmp_path / 'full' / 'dsb'
  for n in (1, 2):
    for suffix in ('.png', '.npz', '_trajectories.png', '_density.png'):
      assert os.path.exists(out / 'samples' / f'iter_{n}{suffix}'), suffix
  samples = np.load(out / 'samples' / 'iter_2.npz')['samples']
  assert samples.shape == (64, 2) and np.isfinite(samples).all()
  record = json.load(open(out / 'metrics.json'))
  assert [r['half'] for r in record['halves']] == [1, 2, 3, 4]
  assert [r['direction'] for r in record['halves']][:2] == ['backward', 'forward']
  assert [r['iteration'] for r in record['iterations']] == [1, 2]
  for r in record['iterations']:
    assert r['sw_data'] > 0 and r['sw_prior'] > 0 and r['seconds'] > 0
    assert np.isfinite([r['loss_backward'], r['loss_forward']]).all()
  assert record['config_name'] == 'tests/tiny_dsb_toy' and len(record['gammas']) == 5
  assert sorted(os.listdir(out / 'checkpoints')) == ['3', '4']   # max_to_keep = 2

  # Interrupted after half 3 (mid-iteration 2), then rerun: the same networks, bit for bit.
  part = str(tmp_path / 'part')
  run.dsb_mode(config, part, stop_after=3)
  assert [r['half'] for r in json.load(open(os.path.join(part, 'dsb', 'metrics.json')))['halves']] \
      == [1, 2, 3]
  resumed = run.dsb_mode(config, part)
  assert leaves_equal(resumed, full)
  again = json.load(open(os.path.join(part, 'dsb', 'metrics.json')))
  assert [r['half'] for r in again['halves']] == [1, 2, 3, 4]
  np.testing.assert_allclose(again['iterations'][1]['sw_data'], record['iterations'][1]['sw_data'])


def test_cli_one_line_error(tmp_path):
  proc = run_python(['main.py', '--config', 'configs/dsb/toy.py:moons', '--workdir',
                     str(tmp_path / 'w'), '--mode', 'dsb', '--config.dsb.network=conv'])
  assert proc.returncode == 2, proc.stderr
  assert proc.stderr.strip().splitlines()[-1].startswith('error: dsb.network=')


@pytest.mark.slow
def test_image_transfer_smoke(tmp_path):
  """digits <-> letters with a tiny NCSN++, one IPF iteration of a few steps."""
  from configs.dsb import digits_letters
  from models import ncsnpp
  config = apply(digits_letters.get_config(), ncsnpp.tiny_config_overrides())
  d = config.dsb
  d.n_ipf, d.num_iter, d.cache_refresh, d.log_freq = 1, 4, 2, 2
  d.num_steps, d.batch_size, d.cache_size, d.num_samples = 4, 8, 8, 16
  config.name = 'tests/tiny_dsb_image'
  run.dsb_mode(config, str(tmp_path))
  out = tmp_path / 'dsb' / 'samples'
  samples = np.load(out / 'iter_1.npz')['samples']
  assert samples.shape == (16, 8, 8, 1) and np.isfinite(samples).all()
  assert os.path.exists(out / 'iter_1.png') and os.path.exists(out / 'iter_1_trajectories.png')


# ----------------------------------------------------------------------------- OU, ramps, cache

def _ramp_gammas():
  """A symmetric linear ramp 0.02 -> 0.2 -> 0.02 over N = 8 (dsb.gamma_schedule='linear')."""
  return schedule.get_gammas(_dsb_config(num_steps=8, gamma_schedule='linear', gamma_min=0.02,
                                         gamma_max=0.2))


def _affine_mean_fn(params):
  a, c = (jnp.asarray(params[n], jnp.float32) for n in ('A', 'c'))
  return lambda x, k: x + jnp.einsum('bij,bj->bi', a[k], x) + c[k]


def _ols_per_step(cache, n):
  """Least squares target ~ [x, 1] for each step label: ([N+1, D, D], [N+1, D], their s.e.)."""
  x, k, y = (np.asarray(a, np.float64) for a in cache)
  d = x.shape[1]
  out = {}
  for label in np.unique(k):
    sel = k == label
    design = np.concatenate([x[sel], np.ones((sel.sum(), 1))], 1)
    coef, *_ = np.linalg.lstsq(design, y[sel], rcond=None)
    resid = y[sel] - design @ coef
    se = np.sqrt(np.diag(np.linalg.inv(design.T @ design)))[:, None] * resid.std(0)[None]
    out[int(label)] = (coef[:d].T - np.eye(d), coef[d], se[:d].T, se[d])
  return out


OU_M, OU_V = 0.3, 1.5


@pytest.mark.parametrize('half', ['backward', 'forward'])
def test_ou_ipf_iteration_on_a_ramp_matches_exact_population_mean_matching(half):
  """IPF iteration 1 with the OU reference and a non-constant gamma, without SGD: the code
  simulates the chain and builds the mean-matching cache (`cache.build`), and an exact least-
  squares fit per step on that cache must give `exact.population_dsb`'s maps within 5 OLS
  standard errors. 'backward': the cache of half 1 (the OU reference from pi_0 = N(M0, S0))
  fits B_1..B_N. 'forward': the cache of half 2, simulated by the backward chain with the
  population B maps from pi_1 = N(m 1, v I), fits F_0..F_{N-1}; that chain's step from X_{k+1}
  to X_k has variance 2 gamma_k (the same step's gamma), so reading gamma_{k+1} there (an
  off-by-one that a constant schedule hides) moves every F_k."""
  gammas = _ramp_gammas()
  assert len(set(np.round(gammas, 6))) > 2
  m1, s1 = np.full(2, OU_M), OU_V * np.eye(2)
  pop = exact.population_dsb(gammas, M0, S0, m1, s1, 1, reference=('ou', OU_M, OU_V))
  g = jnp.asarray(gammas, jnp.float32)
  n_traj = 100_000
  if half == 'backward':
    sim = schedule.reference_mean_fn('ou', OU_M, OU_V, g)
    start = M0 + np.random.default_rng(0).standard_normal((n_traj, 2)) @ np.linalg.cholesky(S0).T
  else:
    sim = _affine_mean_fn(pop['backward'])
    start = m1 + np.random.default_rng(1).standard_normal((n_traj, 2)) * np.sqrt(OU_V)
  cache = cache_lib.build(sim, jnp.asarray(start, jnp.float32), g, jax.random.PRNGKey(7),
                          sim_forward=half == 'backward')
  fits = _ols_per_step(cache, len(gammas))
  labels = range(1, 9) if half == 'backward' else range(0, 8)
  assert sorted(fits) == list(labels)
  for label in labels:
    a, c, se_a, se_c = fits[label]
    want_a, want_c = pop[half]['A'][label], pop[half]['c'][label]
    assert np.all(np.abs(a - want_a) < 5 * se_a), (label, a, want_a, se_a)
    assert np.all(np.abs(c - want_c) < 5 * se_c), (label, c, want_c, se_c)


def test_cache_minibatch_draws_uniformly_over_all_pairs_with_replacement():
  """`cache.minibatch` draws batch_size indices uniformly from all N x M pairs: every pair
  appears, the counts of a big draw are multinomial (chi-square within 5 sigma of its df), x,
  k and target stay aligned, and a new key gives a new batch."""
  n_pairs, batch = 60, 120_000
  x = jnp.arange(n_pairs, dtype=jnp.float32)[:, None] * jnp.ones((1, 2))
  cache = cache_lib.Cache(x=x, k=jnp.arange(n_pairs) % 6, target=-x)
  b = cache_lib.minibatch(cache, jax.random.PRNGKey(0), batch)
  idx = np.asarray(b.x[:, 0]).astype(int)
  np.testing.assert_array_equal(np.asarray(b.k), idx % 6)
  np.testing.assert_array_equal(np.asarray(b.target), -np.asarray(b.x))
  counts = np.bincount(idx, minlength=n_pairs)
  assert counts.min() > 0 and len(counts) == n_pairs
  expected = batch / n_pairs
  chi2 = ((counts - expected) ** 2 / expected).sum()
  df = n_pairs - 1
  assert abs(chi2 - df) < 5 * np.sqrt(2 * df), chi2
  small = cache_lib.minibatch(cache, jax.random.PRNGKey(1), 50)
  # With replacement, 50 of 60 pairs repeat one with probability 1 - 60!/(10! 60^50) > 0.9999.
  assert np.unique(np.asarray(small.x[:, 0])).size < 50
  assert not np.array_equal(np.asarray(small.x), np.asarray(
      cache_lib.minibatch(cache, jax.random.PRNGKey(2), 50).x))
  # Steps are mixed within a batch (not one trajectory's consecutive steps, as the reference).
  assert len(np.unique(np.asarray(small.k))) == 6
