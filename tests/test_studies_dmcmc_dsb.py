"""The DSB written samples (true draws, as many as asked for) and the DMCMC/DSB studies."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import dsb_gaussian
from configs.dsb import gaussian as gaussian_config
from dsb import data as dsb_data
from dsb import ipf as ipf_lib
from dsb import networks


def _random_affine(params, key, scale):
  """An affine chain far from the identity: every A_k, c_k drawn at `scale`."""
  ka, kc = jax.random.split(key)
  return {'A': scale * jax.random.normal(ka, params['A'].shape),
          'c': scale * jax.random.normal(kc, params['c'].shape)}


def test_gaussian_written_samples_are_draws_of_the_exact_p1_and_p0():
  """The benchmark's written samples against the closed form of the learned chain.

  Both directions are random affine chains (dsb.network=affine), so p1 (forward from
  pi_0 = N(-0.1 1, I)) and p0 (backward from pi_1) are exactly Gaussian with moments from
  `affine_chain_moments`, the last step's noise 2 gamma_N I included. n = 10^5 draws in
  d = 5 (not the config's dsb.num_samples = 5000: the count must follow the request).
  The total variance of a Gaussian sample has sd sqrt(2 tr(S^2) / n) (~0.02 here); the
  tolerance is 5 of them. The last step's mean must be short of it by exactly
  d * 2 gamma_N = 0.25, which is more than 10 sds, so written means instead of draws fail.
  """
  dim, n = 5, 100_000
  config = gaussian_config.get_config(str(dim))
  d = config.dsb
  data, prior = dsb_data.get_endpoints(config)
  ipf = ipf_lib.IPF(config, (dim,), d.prior_mean, d.prior_var)
  nets = ipf.init_nets(jax.random.PRNGKey(0))
  for i, direction in enumerate(('forward', 'backward')):
    p = _random_affine(nets[direction]['ema'], jax.random.PRNGKey(1 + i), 0.05)
    nets[direction] = {'params': p, 'ema': p}
  samples = dsb_gaussian.draws(ipf, nets, data, prior, n, jax.random.PRNGKey(3))
  m0, m1, eye = np.full(dim, d.data_mean), np.full(dim, d.prior_mean), np.eye(dim)
  last = 2. * float(ipf.gammas[-1]) * dim
  assert last == pytest.approx(0.25)
  for name, start, forward, net in (('p1', m0, True, 'forward'), ('p0', m1, False, 'backward')):
    mean, cov, _ = networks.affine_chain_moments(nets[net]['ema'], ipf.gammas, start, eye,
                                                 forward=forward)
    x, x_mean = samples[name], samples[name + '_mean']
    assert x.shape == x_mean.shape == (n, dim)
    check = dsb_gaussian.variance_check(x, cov)
    assert check['se'] < 0.025
    assert abs(check['total_variance'] - check['exact']) < 5 * check['se'], (name, check)
    # The mean lacks the last noise: its variance is exact - 2 gamma_N d (Cov(mean, noise) = 0).
    short = dsb_gaussian.variance_check(x_mean, cov - last / dim * eye)
    assert abs(short['total_variance'] - short['exact']) < 5 * short['se'], (name, short)
    # Per-coordinate means within 5 standard errors sqrt(S_ii / n).
    np.testing.assert_array_less(np.abs(x.mean(0) - mean), 5 * np.sqrt(np.diag(cov) / n))


def test_default_dlg_block_keeps_the_exact_joint():
  """The dmcmc.* defaults (Gibbs update, n_skip = 1, h = eta sigma_k^2) output draws of the
  DLG target p(x, k) = p_{sigma_k}(x) / L when the chains are there already.

  1-D two-mode mixture under VE, 6-level ladder, exact score and exact level posterior as the
  classifier. 20000 chains start at exact joint draws (k uniform, x = x0 + sigma_k z); one
  output block with the default settings. The outputs' level histogram must stay uniform
  (total variation < 0.03; its sampling noise is ~0.01 at n = 20000 and 6 levels) and x | k
  keep mean 0 and variance var_data + sigma_k^2 (5 standard errors, plus 2% of Langevin bias:
  1 / (1 - h / 4v) - 1 <= eta / 4 = 1.25%). The reference's settings (argmax, the lowest-sigma
  state of 10 steps) fail it: their outputs pile up on the lowest levels.
  """
  from configs.dmcmc.defaults import add_dmcmc_configs
  from dmcmc import classifier, dlg
  import sde_lib
  from tests import exact
  from tests.test_dmcmc import assert_exact_joint

  d = add_dmcmc_configs().dmcmc
  ve = sde_lib.VESDE(sigma_min=0.01, sigma_max=50.)
  mix = exact.GaussianMixture([0.6, 0.4], [[-1.], [1.5]], [0.5, 0.5])
  ladder = classifier.ladder(6, 0.2, 2.)
  n = 20_000
  k0 = jax.random.randint(jax.random.PRNGKey(0), (n,), 0, 6)
  x0 = mix.sample(jax.random.PRNGKey(1), n) + ladder[k0][:, None] * jax.random.normal(
      jax.random.PRNGKey(2), (n, 1))
  step = dlg.make_step(dlg.ve_score_fn(ve, mix.score_fn(ve)),
                       lambda x: exact.ladder_log_probs(mix, x, ladder), ladder,
                       sigma_update=d.sigma_update, eta_scaling=d.eta_scaling)
  _, best, _ = jax.jit(lambda key, c: dlg.run_block(step, key, c, d.eta, d.n_skip,
                                                    include_start=d.include_start))(
      jax.random.PRNGKey(3), dlg.Chains(x0, k0.astype(jnp.int32)))
  x, k = np.asarray(best.x)[:, 0], np.asarray(best.k)
  assert_exact_joint(x, k, ladder)


@pytest.mark.slow
def test_quick_dmcmc_study_end_to_end(tmp_path):
  """`studies/dmcmc_digits.py --quick` trains its four small models, writes the JSON and PNG,
  and its NFE per output is the formula: plain edm_heun with N steps is 2N + 1 (Tweedie
  included); DLG adds n_skip score and n_skip classifier calls and the chains' start-up
  (INIT_STEPS-step edm_stochastic + Tweedie + warm-up score calls, 1 + warm-up classifier
  calls) times n_chains / num_outputs. Every FD is finite and positive."""
  from studies import dmcmc_digits as study
  from tests.helpers import run_python
  out = tmp_path / 'dmcmc'
  proc = run_python(['studies/dmcmc_digits.py', '--quick', '--seeds', '2', '--out', str(out)],
                    timeout=1200)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(out / 'dmcmc_digits.json') as f:
    result = json.load(f)
  assert (out / 'dmcmc_digits.png').exists() and not result['failed_cells']
  assert result['quick'] and result['seeds'] == 2
  init = (2 * study.INIT_STEPS + 1 + study.WARMUP_STEPS) + (1 + study.WARMUP_STEPS)
  amortised = init * study.N_CHAINS[1] / study.NUM_OUTPUTS[1]
  cells = result['cells']
  assert {c['source'] for c in cells} == {'plain'} | {s['name'] for s in study.SETTINGS[1]}
  for c in cells:
    assert c['integrator'] == 'edm_heun' and c['fd']['n'] == 2
    assert np.all(np.isfinite(c['fd']['values'])) and min(c['fd']['values']) > 0
    finisher = 2 * c['budget'] + 1
    if not c['dlg']:
      assert c['nfe'] == finisher
    else:
      n_skip = next(s['n_skip'] for s in study.SETTINGS[1] if s['name'] == c['source'])
      assert c['nfe'] == pytest.approx(finisher + 2 * n_skip + amortised)
      assert c['nfe_score'] == pytest.approx(
          finisher + n_skip + (2 * study.INIT_STEPS + 1 + study.WARMUP_STEPS) *
          study.N_CHAINS[1] / study.NUM_OUTPUTS[1])
  assert len(result['matches']) == len(study.SETTINGS[1])
