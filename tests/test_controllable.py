"""Inpainting and colorization against exact Gaussian conditionals, and the modes end to end.

Data are Gaussians N(m, S) with full covariance, whose noised score
-(a^2 S + std^2 I)^{-1} (x - a m) is exact at every t, so any error is the method's.
- Independent known/unknown parts: the replacement method is exact, so the unknown
  part must have its marginal's mean and covariance (5 Monte Carlo standard errors
  plus the sampler's own discretisation allowance).
- Correlated parts: the method is biased; the bias is measured here (400,000
  samples) and asserted to stay within 5 standard errors of that measurement.
"""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import checkpointing
import controllable
import sde_lib
import train
from errors import ConfigError, DataError
from tests import exact
from tests.helpers import host_state, run_python, tiny_config
from tests.test_ncsn_sampling import ncsn_output_law

N = 20_000
VP, VE = (sde_lib.VPSDE(), 1e-3), (sde_lib.VESDE(sigma_max=10.), 1e-5)


FullGaussian = exact.FullGaussian


def assert_moments(x, mean, cov, allowance_mean, allowance_cov):
  """Sample mean/covariance of x [n, d] against exact values: 5 standard errors + allowance.

  SE of a mean entry: sqrt(S_ii / n); of a covariance entry: sqrt((S_ii S_jj + S_ij^2) / n)
  (Gaussian fourth moments)."""
  x = np.asarray(x, np.float64)
  n, d = x.shape
  se_mean = np.sqrt(np.diag(cov) / n)
  se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov ** 2) / n)
  np.testing.assert_array_less(np.abs(x.mean(0) - mean), 5 * se_mean + allowance_mean)
  np.testing.assert_array_less(np.abs(np.cov(x.T) - cov), 5 * se_cov + allowance_cov)


# ----------------------------------------------------------------------------- inpainting

INDEPENDENT = FullGaussian([0.5, -0.5, 1., 0.],
                           [[1., 0.5, 0., 0.], [0.5, 1., 0., 0.],
                            [0., 0., 0.5, 0.3], [0., 0., 0.3, 0.8]])
KNOWN = np.array([True, True, False, False])


@pytest.mark.parametrize('sde_eps,predictor,corrector,allowance', [
    # Measured with 400,000 samples: EM alone is within 0.01 of the marginal; the Langevin
    # corrector (snr 0.16) inflates variances by 2.5%, its fixed-step stationary bias.
    (VP, 'euler_maruyama', 'none', (0.01, 0.015)),
    (VE, 'reverse_diffusion', 'langevin', (0.01, 0.04)),
], ids=['vp-em', 've-rd-langevin'])
def test_inpainting_independent_parts_keeps_known_and_samples_the_marginal(
    sde_eps, predictor, corrector, allowance):
  sde, eps = sde_eps
  known = INDEPENDENT.sample(jax.random.PRNGKey(0), N).astype(np.float32)   # any values
  run = jax.jit(lambda k, y: controllable.constrained_pc(
      k, INDEPENDENT.score_fn(sde), sde, y, KNOWN, predictor=predictor, corrector=corrector,
      num_steps=200, eps=eps))
  x, nfe = run(jax.random.PRNGKey(1), known)
  x = np.asarray(x)
  assert nfe == 200 * (1 + (corrector != 'none'))
  np.testing.assert_array_equal(x[:, :2], known[:, :2])   # bit for bit
  assert_moments(x[:, 2:], INDEPENDENT.mean[2:], INDEPENDENT.cov[2:, 2:], *allowance)


RHO = 0.8
CORRELATED = FullGaussian([0.5, -0.5, 1., 0.],
                          [[1., 0., RHO, 0.], [0., 1., 0., RHO],
                           [RHO, 0., 1., 0.], [0., RHO, 0., 1.]])


@pytest.mark.parametrize('predictor,corrector,mean_fraction,var_ratio', [
    ('euler_maruyama', 'none', 0.629, 1.385),
    ('reverse_diffusion', 'langevin', 0.893, 1.084),
])
def test_inpainting_correlated_parts_has_the_measured_bias(predictor, corrector, mean_fraction,
                                                           var_ratio):
  """Replacement is an approximation when the parts are correlated (cross-correlation 0.8,
  known part fixed at m_k + (1, -1); VP, 200 steps). Exact conditional: mean m_u + 0.8 (1, -1),
  variance 1 - 0.8^2 = 0.36. Measured with 400,000 samples:
    euler_maruyama alone: the mean moves 62.9% of the way from m_u to the conditional mean,
      the variance is 1.385x the conditional one (0.499; the marginal's is 1);
    reverse_diffusion + langevin (snr 0.16): 89.3% and 1.084x (VE, same pair: 99.9%, 1.023x).
  The corrector is what pulls the unknown part towards the conditional: at fixed t it
  equilibrates to p_t(x_u | x_k) given the re-imposed x_k. Asserted within 5 standard errors."""
  sde, eps = VP
  offset = np.array([1., -1.], np.float32)
  known = np.broadcast_to(np.concatenate([CORRELATED.mean[:2] + offset, [0., 0.]]),
                          (N, 4)).astype(np.float32)
  x, _ = jax.jit(lambda k: controllable.constrained_pc(
      k, CORRELATED.score_fn(sde), sde, known, KNOWN, predictor=predictor, corrector=corrector,
      num_steps=200, eps=eps))(jax.random.PRNGKey(2))
  u = np.asarray(x, np.float64)[:, 2:]
  cond_shift, cond_var = RHO * offset, 1. - RHO ** 2
  var = var_ratio * cond_var
  fraction = (u.mean(0) - CORRELATED.mean[2:]) / cond_shift
  np.testing.assert_allclose(fraction, mean_fraction, atol=5 * np.sqrt(var / N) / RHO)
  np.testing.assert_allclose(np.diag(np.cov(u.T)) / cond_var, var_ratio,
                             atol=5 * var_ratio * np.sqrt(2 / N))
  assert abs(fraction.mean() - 1) > 0.05 and abs(var_ratio - 1) > 0.05   # the bias is real


# The replacement chain's own law. With correlated parts the method is an approximation,
# but on Gaussian data with the exact score it is still an affine-Gaussian chain whose
# output law is exact (`exact.pc_output_law(known=...)`): 5 standard errors, no allowance.
# The chains are short (20-30 steps) and VP's beta_min is 1, so that the last step's noise
# (what x_mean leaves out) is ~10% of the conditional variance: large against the 0.45%
# standard error of 100,000 samples.
CHAIN_B = 100_000
Y0 = np.array([1.5, -1.5, 0., 0.])    # the known part, m_k + (1, -1); ignored where unknown


@pytest.mark.parametrize('sde,coeffs,eps,predictor,corrector,n', [
    pytest.param(sde_lib.VPSDE(beta_min=1.), ('vp', 1., 20.), 1e-3, 'euler_maruyama', 'none', 20,
                 marks=pytest.mark.slow, id='vp-em'),
    pytest.param(sde_lib.VPSDE(beta_min=1.), ('vp', 1., 20.), 1e-3, 'reverse_diffusion', 'ald',
                 30, id='vp-rd-ald'),
    pytest.param(sde_lib.VESDE(sigma_min=0.05, sigma_max=10.), ('ve', 0.05, 10.), 1e-5,
                 'reverse_diffusion', 'ald', 30, marks=pytest.mark.slow, id='ve-rd-ald'),
])
def test_inpainting_correlated_parts_has_the_exact_law_of_the_replacement_chain(
    sde, coeffs, eps, predictor, corrector, n):
  """Cross-correlation 0.8 between known and unknown dims, so how the known part is imposed
  (fresh draws of p_t(y_t | y0) after each step, the mean for x_mean) shapes the unknown
  part's law; the denoised output is x_mean's, whose unknown part carries no last-step noise
  (visible with reverse_diffusion, whose last step adds beta_0 = beta_min / N; Euler's last
  step, from eps to 0, adds only beta(eps) eps)."""
  known = np.broadcast_to(Y0, (CHAIN_B, 4)).astype(np.float32)
  x, _ = jax.jit(lambda k: controllable.constrained_pc(
      k, CORRELATED.score_fn(sde), sde, known, KNOWN, predictor=predictor, corrector=corrector,
      snr=0.3, num_steps=n, eps=eps))(jax.random.PRNGKey(21))
  x = np.asarray(x, np.float64)
  np.testing.assert_array_equal(x[:, :2], known[:, :2])
  mean, cov = exact.pc_output_law(CORRELATED, exact.ChainCoeffs(coeffs[0], n, *coeffs[1:]), eps,
                                  predictor, corrector, snr=0.3, known=(KNOWN, Y0))
  exact.assert_gaussian_moments(x[:, 2:], mean[2:], cov[2:, 2:])


def test_ncsn_inpainting_correlated_parts_has_the_exact_law_of_its_chain():
  """NCSN v1 inpainting (sigma 3 -> 0.3, L = 10, T = 20, step_lr 0.05, prior init) on the
  correlated Gaussian: the known part y0 + sigma_i z is held through each level and enters
  the unknown part's update through the cross-score, so its noise shapes the output law
  (`exact.ncsn_inpaint_law`, 5 standard errors)."""
  sde = sde_lib.VESDE(sigma_min=0.3, sigma_max=3., N=10)
  known = np.broadcast_to(Y0, (CHAIN_B, 4)).astype(np.float32)
  x, _ = jax.jit(lambda k: controllable.constrained_ald_ncsn(
      k, CORRELATED.score_fn(sde), sde, known, KNOWN, n_steps_each=20, step_lr=0.05,
      init='prior'))(jax.random.PRNGKey(22))
  x = np.asarray(x, np.float64)
  np.testing.assert_array_equal(x[:, :2], known[:, :2])
  sigmas = 3. * (0.3 / 3.) ** (np.arange(10) / 9)          # sigma_1 = 3 > ... > sigma_L = 0.3
  mean, cov = exact.ncsn_inpaint_law(CORRELATED, sigmas, 20, 0.05, (KNOWN, Y0),
                                     (np.zeros(4), 9. * np.eye(4)))
  exact.assert_gaussian_moments(x[:, 2:], mean[2:], cov[2:, 2:])


# ----------------------------------------------------------------------------- colorization

def colour_gaussian(pixels: int):
  """Per pixel x = C^T y with independent y ~ N(mu_y, diag(s_y^2)) in the decoupled basis."""
  mu_y, s_y = np.array([0.8, 0.2, -0.3]), np.array([0.6, 0.3, 0.5])
  c = controllable.COLOR_MATRIX.astype(np.float64)
  mean = np.tile(mu_y @ c, pixels)
  cov = np.kron(np.eye(pixels), c.T @ np.diag(s_y ** 2) @ c)
  return FullGaussian(mean, cov), mu_y, s_y


def test_colorization_keeps_the_gray_and_samples_the_decoupled_marginal():
  """Images [B, 1, 2, 3]. The gray (channel mean) is y_0 / sqrt(3), independent of the
  colour components y_1, y_2, so these must follow N(mu_y, s_y^2) whatever the gray."""
  sde, eps = VP
  data, mu_y, s_y = colour_gaussian(2)
  images = data.sample(jax.random.PRNGKey(3), N).astype(np.float32).reshape(N, 1, 2, 3)
  gray = images.mean(-1, keepdims=True)

  def run(k, gray):
    known, mask = controllable.gray_constraint(gray)
    return controllable.constrained_pc(k, data.score_fn(sde), sde, known, mask,
                                       basis=controllable.COLOR, num_steps=200, eps=eps)

  x, _ = jax.jit(run)(jax.random.PRNGKey(4), gray)
  # Float32 rounding of the 3x3 orthonormal maps, a few ulps of |x| < 5: 2e-6.
  np.testing.assert_allclose(np.asarray(x).mean(-1, keepdims=True), gray, rtol=0, atol=2e-6)
  y = np.asarray(controllable.decouple(x), np.float64).reshape(N * 2, 3)
  assert_moments(y[:, 1:], mu_y[1:], np.diag(s_y[1:] ** 2), 0.01, 0.015)   # EM, as above


def test_colorization_correlated_gray_has_the_exact_law_of_the_replacement_chain():
  """One pixel whose decoupled components y = C x are correlated (gray with both colour
  axes): in the decoupled basis the constrained chain is the inpainting chain with y_0 known,
  so its law is `exact.pc_output_law` on N(mu_y, S_y) with mask (1, 0, 0). Imposing in the
  wrong basis, or x_mean from the noised x, moves it (VP, beta_min 1, reverse_diffusion + ald)."""
  mu_y = np.array([0.8, 0.2, -0.3])
  s_y = np.array([[0.5, 0.3, -0.25], [0.3, 0.4, 0.], [-0.25, 0., 0.3]])
  c = controllable.COLOR_MATRIX.astype(np.float64)
  data = FullGaussian(mu_y @ c, c.T @ s_y @ c)                  # x = C^T y
  sde, n, eps = sde_lib.VPSDE(beta_min=1.), 30, 1e-3
  gray = np.full((CHAIN_B, 1, 1, 1), 0.9 / np.sqrt(3), np.float32)   # y_0 = 0.9, off its mean

  def run(k):
    known, mask = controllable.gray_constraint(jnp.asarray(gray))
    return controllable.constrained_pc(
        k, lambda x, t: data.score_fn(sde)(x.reshape(-1, 3), t).reshape(x.shape), sde, known,
        mask, basis=controllable.COLOR, predictor='reverse_diffusion', corrector='ald', snr=0.3,
        num_steps=n, eps=eps)[0]

  y = np.asarray(controllable.decouple(jax.jit(run)(jax.random.PRNGKey(23))),
                 np.float64).reshape(CHAIN_B, 3)
  np.testing.assert_allclose(y[:, 0], 0.9, atol=2e-6)
  mean, cov = exact.pc_output_law(FullGaussian(mu_y, s_y), exact.ChainCoeffs('vp', n, 1., 20.),
                                  eps, 'reverse_diffusion', 'ald', snr=0.3,
                                  known=(np.array([True, False, False]), np.array([0.9, 0, 0])))
  exact.assert_gaussian_moments(y[:, 1:], mean[1:], cov[1:, 1:])


def test_decoupling_is_orthonormal_with_the_gray_axis_first():
  c = controllable.COLOR_MATRIX.astype(np.float64)
  np.testing.assert_allclose(c @ c.T, np.eye(3), atol=1e-7)
  np.testing.assert_allclose(c[0], np.ones(3) / np.sqrt(3), atol=1e-7)
  x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
  np.testing.assert_allclose(controllable.couple(controllable.decouple(x)), x, atol=1e-6)


# ----------------------------------------------------------------------------- NCSN v1

def test_ncsn_inpainting_keeps_known_and_recovers_the_independent_marginal():
  """The paper's settings (sigma 1 -> 0.01, L = 10, T = 100, eps = 2e-5). Unknown dims are
  independent N(0.3, 0.3^2), so each follows Algorithm 1's exact output law for that
  Gaussian (`ncsn_output_law`, 5 standard errors; NCSN v1 itself overshoots the data
  variance by 6.2% here) and stays uncorrelated with the known dims."""
  sde = sde_lib.VESDE(sigma_min=0.01, sigma_max=1., N=10)
  m0, s0 = 0.3, 0.3
  data = FullGaussian([-0.2, -0.2, m0, m0], np.diag([0.25, 0.25, s0 ** 2, s0 ** 2]))
  known = data.sample(jax.random.PRNGKey(5), N).astype(np.float32)
  x, nfe = jax.jit(lambda k: controllable.constrained_ald_ncsn(
      k, data.score_fn(sde), sde, known, KNOWN, n_steps_each=100, step_lr=2e-5))(
          jax.random.PRNGKey(6))
  x = np.asarray(x, np.float64)
  assert nfe == 1000
  np.testing.assert_array_equal(x[:, :2], known[:, :2])
  mean, var = ncsn_output_law(sde.discrete_sigmas[::-1], 100, 2e-5, m0, s0, False)
  assert_moments(x[:, 2:], np.full(2, mean), np.eye(2) * var, 0., 0.)
  cross = np.corrcoef(x.T)[:2, 2:]
  np.testing.assert_array_less(np.abs(cross), 5 / np.sqrt(N))   # SE of a correlation: 1/sqrt(n)


# ----------------------------------------------------------------------------- modes

def test_masks_and_mask_file_errors(tmp_path):
  config = tiny_config(image=True)
  half = controllable.load_mask(config, 8, 8)
  assert half[:, :4].all() and not half[:, 4:].any()
  config.sampling.mask = 'center'
  center = controllable.load_mask(config, 8, 8)
  assert center.sum() == 64 - 16 and not center[2:6, 2:6].any()
  config.sampling.mask = 'random'
  assert 0 < controllable.load_mask(config, 8, 8).sum() < 64
  config.sampling.mask = 'star'
  with pytest.raises(ConfigError, match='sampling.mask'):
    controllable.load_mask(config, 8, 8)
  path = str(tmp_path / 'm.npy')
  np.save(path, np.ones((8, 8)))
  config.sampling.mask = path
  assert controllable.load_mask(config, 8, 8).all()
  np.save(path, np.ones((4, 8)))
  with pytest.raises(DataError, match=r'm.npy has shape \(4, 8\).*\(8, 8\)'):
    controllable.load_mask(config, 8, 8)


def test_wrong_shape_mask_is_one_line_from_the_cli(tmp_path):
  path = str(tmp_path / 'mask.npy')
  np.save(path, np.ones((5, 5)))
  proc = run_python(['main.py', '--config', 'configs/vp/digits_ddpmpp_continuous.py',
                     '--workdir', str(tmp_path / 'w'), '--mode', 'inpaint',
                     f'--config.sampling.mask={path}'], timeout=180)
  assert proc.returncode == 2, proc.stderr[-2000:]
  lines = [l for l in proc.stderr.strip().splitlines() if l.startswith('error:')]
  assert len(lines) == 1 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
  assert 'mask.npy' in lines[0] and '(8, 8)' in lines[0], lines[0]
  assert not os.path.exists(tmp_path / 'w')          # config checked before the workdir


def test_colorize_needs_three_channels():
  with pytest.raises(ConfigError, match='num_channels=3'):
    controllable.colorize_mode(tiny_config(image=True), '/nonexistent')


@pytest.fixture(scope='module')
def rgb_run(tmp_path_factory):
  """A tiny 3-channel NCSN++ (VE) checkpoint of host-drawn params, and a .npy RGB source.

  The bundled digits have one channel, so the 3-channel model is not trained; the
  modes' plumbing and constraints do not depend on the params' values."""
  tmp = tmp_path_factory.mktemp('rgb')
  config = tiny_config('vesde', image=True)
  config.data.num_channels = 3
  config.sampling.num_images = 2
  images = np.random.default_rng(0).random((3, 8, 8, 3)).astype(np.float32)
  config.sampling.source = str(tmp / 'rgb.npy')
  np.save(config.sampling.source, images)
  workdir = str(tmp / 'w')
  state = host_state(config, (8, 8, 3))
  ckpt = checkpointing.Checkpointer(workdir)
  ckpt.save(0, state, force=True)
  ckpt.wait()
  ckpt.close()
  return config, workdir, images


def read_outputs(out, workdir):
  for kind in ('png', 'npz', 'json'):
    assert os.path.exists(out['paths'][kind]), out['paths']
  assert os.path.dirname(out['paths']['png']) == os.path.join(workdir, 'samples')
  with open(out['paths']['json']) as f:
    return json.load(f), np.load(out['paths']['npz'])


def test_inpaint_mode_end_to_end(rgb_run):
  """--mode inpaint with PC (center mask): files, JSON fields, known pixels exact."""
  config, workdir, images = rgb_run
  config = config.copy_and_resolve_references()
  config.sampling.num_steps, config.sampling.mask = 3, 'center'
  meta, arrays = read_outputs(controllable.inpaint_mode(config, workdir), workdir)
  assert meta['nfe'] == 3 and meta['seconds'] > 0 and meta['num_images'] == 2
  assert meta['known_max_abs_error'] == 0. and meta['mask'] == 'center'
  assert meta['known_fraction'] == 0.75 and meta['task'] == 'inpaint'
  assert meta['config_name'] == config.name and meta['sampler']['predictor'] == 'reverse_diffusion'
  known = controllable.load_mask(config, 8, 8)
  assert arrays['result'].shape == (2, 8, 8, 3)
  np.testing.assert_allclose(arrays['result'][:, known], images[:2, known], atol=1e-7)


def test_colorize_mode_end_to_end_with_ncsn(rgb_run):
  """--mode colorize with NCSN v1's sampler: the result's channel mean is the input gray."""
  config, workdir, images = rgb_run
  config = config.copy_and_resolve_references()
  s = config.sampling
  s.method, s.num_steps, s.n_steps_each = 'ald_ncsn', 2, 2
  meta, arrays = read_outputs(controllable.colorize_mode(config, workdir), workdir)
  assert meta['nfe'] == 2 * 2 + 1 and meta['gray_max_abs_error'] < 2e-6   # + denoising step
  assert meta['task'] == 'colorize' and meta['columns'] == ['gray', 'result', 'original']
  np.testing.assert_allclose(arrays['result'].mean(-1), images[:2].mean(-1), atol=2e-6)
  # Chroma RMSE: the two non-gray rows of the orthonormal decoupling, computed directly;
  # the baseline's colour is the .npy source's own mean chroma.
  chroma = lambda v: (np.asarray(v, np.float64) @ controllable.COLOR_MATRIX.T)[..., 1:]
  truth = chroma(arrays['original'])
  assert meta['mean_colour_from'] == 'source'
  np.testing.assert_allclose(meta['mean_colour_chroma'], truth.reshape(-1, 2).mean(0), atol=1e-6)
  np.testing.assert_allclose(meta['chroma_rmse'],
                             np.sqrt(((chroma(arrays['result']) - truth) ** 2).mean()), rtol=1e-5)
  np.testing.assert_allclose(meta['chroma_rmse_mean_colour'],
                             np.sqrt(((truth.reshape(-1, 2).mean(0) - truth) ** 2).mean()),
                             rtol=1e-5)


@pytest.mark.slow
def test_inpaint_mode_after_training(tmp_path):
  """Train 1 step with train_and_evaluate (digits, VP), then --mode inpaint (half mask)."""
  config = tiny_config('vpsde', image=True)
  # Only the train step is compiled: no snapshot sampler, no eval before step 2.
  config.training.snapshot_sampling, config.training.eval_freq = False, 2
  workdir = str(tmp_path)
  train.train_and_evaluate(config, workdir)
  config.sampling.num_images, config.sampling.num_steps = 2, 3
  meta, arrays = read_outputs(controllable.inpaint_mode(config, workdir), workdir)
  assert meta['nfe'] == 3 and meta['known_max_abs_error'] == 0. and meta['mask'] == 'half'
  assert meta['checkpoint_step'] == 1
  np.testing.assert_array_equal(arrays['result'][:, :, :4], arrays['original'][:, :, :4])
