"""`--mode likelihood` and `--mode eval` (evaluate.py) end to end, checked against direct
computations with likelihood.log_likelihood and against closed-form bits/dim.

One tiny MLP on the `gmm` toy, trained 2 steps as a *discrete* VP model (DDPM time
labels), gives the checkpoints; the exact tests substitute an exact score for the
network, so their answers are known in closed form.
"""
import json
import os
import shutil
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import checkpointing
import datasets
import evaluate
import io_utils
import likelihood
import objectives
import optim
import parallel
import restore
import sde_lib
import train
from errors import CheckpointError, ConfigError
from models import create_model
from models import utils as mutils
from tests import exact
from tests.helpers import run_python, tiny_config
from tests.test_main import assert_one_line_error

LN2 = np.log(2.)


def toy_config():
  config = tiny_config('vpsde', n_iters=2)
  config.training.continuous = False     # discrete time labels must work too
  config.training.snapshot_freq = 1      # ckpt n = step n: checkpoints 1 and 2 are kept
  config.training.snapshot_sampling = False
  e = config.eval
  e.batch_size, e.bpd_num_batches, e.num_repeats = 64, 3, 2
  e.rtol = e.atol = 1e-3
  return config


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('trained'))
  train.train_and_evaluate(toy_config(), workdir)
  return workdir


def fresh_workdir(trained, tmp_path):
  shutil.copytree(os.path.join(trained, 'checkpoints'), tmp_path / 'checkpoints')
  return str(tmp_path)


def read_progress(workdir):
  with open(os.path.join(workdir, 'eval', 'likelihood_progress.jsonl')) as f:
    return f.read().splitlines()


class Interrupted(Exception):
  pass


def test_likelihood_mode_equals_direct_computation_and_resumes(trained, tmp_path, monkeypatch):
  config, workdir = toy_config(), fresh_workdir(trained, tmp_path)
  append, calls = io_utils.append_jsonl, []

  def dies_after_four(path, record):   # a crash right after the 4th batch is on disk
    append(path, record)
    calls.append(record)
    if len(calls) == 4:
      raise Interrupted()

  monkeypatch.setattr(io_utils, 'append_jsonl', dies_after_four)
  with pytest.raises(Interrupted):
    evaluate.likelihood_mode(config, workdir)
  assert not os.path.exists(os.path.join(workdir, 'eval', 'likelihood.json'))
  result = evaluate.likelihood_mode(config, workdir)   # resumes at repeat 1, batch 1
  lines = read_progress(workdir)
  keys = [(json.loads(l)['repeat'], json.loads(l)['batch']) for l in lines]
  # Only the two missing batches were computed, and the index restarted at 0 on repeat 1.
  assert len(calls) == 6 and keys == [(r, b) for r in range(2) for b in range(3)]

  with open(os.path.join(workdir, 'eval', 'likelihood.json')) as f:
    written = json.load(f)
  for field in ('bpd', 'bpd_stderr', 'num_images', 'num_repeats', 'nfe_mean', 'seconds',
                'config_name', 'checkpoint_step'):
    assert field in written, field
  assert written['config_name'] == config.name and written['checkpoint_step'] == 2
  assert written['num_images'] == 192 and written['num_repeats'] == 2

  # The same bits/dim computed directly: the documented batches and keys, log_likelihood,
  # and -log p / (D ln 2) (toys are continuous: no dequantization, no offset).
  sde, _ = sde_lib.get_sde(config)
  score_fn = restore.restore_run(config, workdir).score_fn
  e = config.eval
  direct_fn = jax.jit(lambda key, x: likelihood.log_likelihood(
      jax.random.split(key)[1], score_fn, sde, x, eps=e.eps, rtol=e.rtol, atol=e.atol,
      method=e.ode_method, probe=e.probe).logp)
  ds = datasets.get_dataset(config, 'test')
  batches = [x for x, _ in ds.iterate(64)][:3]
  direct = np.array([[-np.asarray(direct_fn(evaluate.batch_key(config.seed, r, b), x)) / (2 * LN2)
                      for b, x in enumerate(batches)] for r in range(2)])   # [R, batches, 64]
  stored = {k: np.asarray(json.loads(l)['bpd']) for k, l in zip(keys, lines)}
  # Same maths and keys; only XLA's fusion (sharded vs plain jit) may differ, i.e. float32
  # rounding, ~1e-7 relative, which an adaptive step could amplify: 1e-5 leaves room.
  for (r, b), values in stored.items():
    np.testing.assert_allclose(values, direct[r, b], rtol=1e-5)
  per_image = direct.mean(0).reshape(-1)     # repeats of one image averaged first
  np.testing.assert_allclose(written['bpd'], per_image.mean(), rtol=1e-5)
  np.testing.assert_allclose(written['bpd_stderr'], per_image.std(ddof=1) / np.sqrt(192),
                             rtol=1e-3)
  # Fresh probes each repeat. In 2-D, Rademacher probes e and -e give the same e^T J e, so
  # a repeat changes an image's value with probability 1/2: 96 +- 7 of 192 expected.
  assert np.sum(direct[0] != direct[1]) > 48

  # An interruption in the middle of a line: the torn line is dropped, the rest reused.
  path = os.path.join(workdir, 'eval', 'likelihood_progress.jsonl')
  with open(path, 'w') as f:
    f.write('\n'.join(lines[:2]) + '\n' + lines[2][:len(lines[2]) // 2])
  os.remove(os.path.join(workdir, 'eval', 'likelihood.json'))
  again = evaluate.likelihood_mode(config, workdir)
  assert len(calls) == 10 and len(read_progress(workdir)) == 6
  assert again['bpd'] == result['bpd'] and again['bpd_stderr'] == result['bpd_stderr']


def test_likelihood_mode_gmm_with_exact_score_gives_exact_bpd(trained, tmp_path, monkeypatch):
  """The gmm toy's own mixture score plugged in: bits/dim is -log p_eps(x) / (D ln 2)."""
  config, workdir = toy_config(), fresh_workdir(trained, tmp_path)
  e = config.eval
  e.bpd_num_batches, e.num_repeats, e.probe, e.rtol, e.atol = 2, 1, 'exact', 1e-5, 1e-5
  gmm = exact.GaussianMixture(*datasets.toy_gmm_params(2))
  monkeypatch.setattr(mutils, 'score_fn_from_config',
                      lambda config, sde, *a, **k: gmm.score_fn(sde))
  result = evaluate.likelihood_mode(config, workdir)

  sde = sde_lib.VPSDE(beta_min=config.model.beta_min, beta_max=config.model.beta_max)
  x = jnp.asarray(np.concatenate([x for x, _ in datasets.get_dataset(config, 'test').iterate(64)][:2]))
  exact_bpd = -np.asarray(gmm.log_prob_fn(sde)(x, jnp.full((128,), e.eps))) / (2 * LN2)
  # The PF ODE ends at the SDE's prior N(0, I), not at the exact p_T. The mean error this
  # adds is E_x[log p_T(z) - log N(z)] with z ~ p_T: measured here by exact sampling
  # from p_T (its mean is KL(p_T || N(0, I)); its spread over 128 images is the noise).
  key1, key2 = jax.random.split(jax.random.PRNGKey(0))
  t_end = jnp.full((20000,), sde.T)
  mean, std = sde.marginal_prob(gmm.sample(key1, 20000), t_end)
  z = mean + std[:, None] * jax.random.normal(key2, mean.shape)
  gap = np.asarray(gmm.log_prob_fn(sde)(z, t_end) - sde.prior_logp(z)) / (2 * LN2)
  # Solver error with the exact divergence at rtol 1e-5: test_likelihood bounds it by 0.01
  # bits/dim per image at rtol 1e-6; 2e-3 for a mean at 1e-5 is what we allow (measured ~3e-4).
  tol = abs(gap.mean()) + 5 * gap.std() / np.sqrt(128) + 2e-3
  assert abs(result['bpd'] - exact_bpd.mean()) < tol, (result['bpd'], exact_bpd.mean(), tol)
  # Per-image errors (< 0.03 bpd) are tiny next to the spread of exact bpd (~1): the
  # standard error matches the exact one within 5%.
  np.testing.assert_allclose(result['bpd_stderr'], exact_bpd.std(ddof=1) / np.sqrt(128), rtol=0.05)
  assert result['num_images'] == 128


def test_likelihood_mode_dequantized_digits_exact_bpd(tmp_path, monkeypatch):
  """Gaussian score on centred digits: every bits/dim value is known in closed form.

  For data N(m, s^2 I) the PF ODE is linear, z = a_T m + r (x - a_eps m) with
  r^2 = v_T / v_eps, v_t = a_t^2 s^2 + std_t^2, and log p(x) = log N(z; 0, I) + D log r.
  x is the dequantized image scale * (v + u) / L + shift, L = 17, scale 2, shift -1.
  """
  config = tiny_config('vpsde', image=True)
  e = config.eval
  e.batch_size, e.bpd_num_batches, e.num_repeats, e.rtol, e.atol = 64, 2, 2, 1e-5, 1e-5
  m, s, d = 0.2, 0.5, 64
  gauss = exact.gaussian(d, std=s, mean=m)

  def score_fn_from_config(config, sde, *args, **kwargs):
    score = gauss.score_fn(sde)
    return lambda x, t: score(x.reshape(x.shape[0], -1), t).reshape(x.shape)

  monkeypatch.setattr(mutils, 'score_fn_from_config', score_fn_from_config)
  def no_network(config, workdir, shape=None, mesh=None, step=None):   # no checkpoint needed
    return restore.Run(config=config, sde=sde_lib.get_sde(config)[0], eps=config.sampling.eps,
                       model=None, mesh=parallel.make_mesh(), data_shape=shape, ema_params={},
                       step=7)

  monkeypatch.setattr(restore, 'restore_run', no_network)
  result = evaluate.likelihood_mode(config, str(tmp_path))
  assert result['levels'] == 17 and result['scale'] == 2. and result['checkpoint_step'] == 7
  with open(tmp_path / 'eval' / 'likelihood_progress.jsonl') as f:
    records = {(r['repeat'], r['batch']): np.asarray(r['bpd']) for r in map(json.loads, f)}

  sde = sde_lib.VPSDE(beta_min=config.model.beta_min, beta_max=config.model.beta_max)
  (a_e, a_t), (sd_e, sd_t) = [np.asarray(c, np.float64) for c in
                              exact.marginal_coeffs(sde, jnp.array([e.eps, 1.]))]
  v_e, v_t = a_e ** 2 * s ** 2 + sd_e ** 2, a_t ** 2 * s ** 2 + sd_t ** 2
  r_ = np.sqrt(v_t / v_e)
  quantized = [x for x, _ in datasets.get_dataset(config, 'test').iterate(64)][:2]  # 2 v / 16 - 1
  levels = np.round((np.stack(quantized) + 1) / 2 * 16).reshape(2, 64, d)      # integer v
  offset = np.log2(17 / 2.)

  def bpd_of(x):   # closed form of the above, x [..., D] in model space
    z = a_t * m + r_ * (x - a_e * m)
    nll = 0.5 * np.sum(z ** 2, -1) + 0.5 * d * np.log(2 * np.pi) - d * np.log(r_)
    return nll / (d * LN2) + offset

  expected_mean, noise_var = 0., 0.
  for (rep, b), values in records.items():
    # 1) Value by value with the documented dequantization key: only the solver's error
    # (linear flow, rtol 1e-5 on |log p| ~ 100 nats: ~1e-5 bits/dim) and float32 remain.
    u = np.asarray(jax.random.uniform(jax.random.split(evaluate.batch_key(config.seed, rep, b))[0],
                                      (64, 8, 8, 1))).reshape(64, d)
    np.testing.assert_allclose(values, bpd_of(2 * (levels[b] + u) / 17 - 1), atol=1e-3)
    # 2) Against E_u in closed form (independent of the key convention): z = c0 + c1 u
    # per dim, u ~ U[0, 1): E z^2 = (c0 + c1/2)^2 + c1^2/12.
    c1 = r_ * 2 / 17
    c0 = a_t * m + r_ * (2 * levels[b] / 17 - 1 - a_e * m)
    ez2 = (c0 + c1 / 2) ** 2 + c1 ** 2 / 12
    expected_mean += np.mean((0.5 * ez2.sum(-1) + 0.5 * d * np.log(2 * np.pi) - d * np.log(r_))
                             / (d * LN2) + offset) / len(records)
    # Var(z^2 / 2) per dim from the moments of u: Var u = 1/12, Var u^2 = 4/45, Cov = 1/12.
    var = 0.25 * (4 * c0 ** 2 * c1 ** 2 / 12 + c1 ** 4 * 4 / 45 + 4 * c0 * c1 ** 3 / 12)
    noise_var += np.sum(var.sum(-1) / (d * LN2) ** 2)
  se = np.sqrt(noise_var) / (64 * len(records))
  assert abs(result['bpd'] - expected_mean) < 5 * se + 1e-4, (result['bpd'], expected_mean, se)
  assert result['num_images'] == 128 and result['num_repeats'] == 2


def test_eval_mode_writes_each_checkpoint_and_skips_done(trained, tmp_path, monkeypatch):
  config, workdir = toy_config(), fresh_workdir(trained, tmp_path)
  e = config.eval
  e.batch_size, e.enable_bpd, e.bpd_num_batches, e.num_repeats = 512, True, 1, 1
  e.enable_sampling, e.num_samples = True, 20
  seen = []

  def sample_quality(config, samples):   # helper C's metrics.sample_quality, recorded
    seen.append(samples)
    return {'fake_metric': float(np.mean(samples))}

  try:
    import metrics
    monkeypatch.setattr(metrics, 'sample_quality', sample_quality)
  except ImportError:
    monkeypatch.setitem(sys.modules, 'metrics', types.SimpleNamespace(sample_quality=sample_quality))

  e.begin_ckpt, e.end_ckpt = 1, 2           # ckpt n = step n * snapshot_freq (= 1 here)
  evaluate.eval_mode(config, workdir)
  eval_dir = os.path.join(workdir, 'eval')
  assert sorted(os.listdir(eval_dir)) == sorted(
      f'ckpt_{n}{suffix}' for n in (1, 2)
      for suffix in ('.json', '_bpd_progress.jsonl', '_samples.png', '_shards'))
  with open(os.path.join(eval_dir, 'ckpt_1.json')) as f:
    first = json.load(f)
  with open(os.path.join(eval_dir, 'ckpt_2.json')) as f:
    assert json.load(f)['step'] == 2
  assert first['ckpt'] == 1 and first['step'] == 1 and first['num_samples'] == 20
  assert first['bpd_num_images'] == 512 and np.isfinite(first['bpd'])
  assert len(seen) == 2 and seen[0].shape == (20, 2)
  assert first['fake_metric'] == pytest.approx(float(np.mean(seen[0])))

  # The test loss: per-example objectives.eval_loss_fn over the whole test split (10000
  # held-out points, the last batch padded), with the documented keys.
  sde, _ = sde_lib.get_sde(config)
  model, mesh = create_model(config), parallel.make_mesh()
  ckpt = checkpointing.Checkpointer(workdir, create=False)
  abstract = checkpointing.abstract_like(jax.eval_shape(lambda: train.init_state(
      config, model, optim.get_optimizer(config), (2,), mesh)), parallel.replicated(mesh))
  params = ckpt.restore(abstract, step=1).ema_params
  ckpt.close()
  eval_loss = jax.jit(jax.vmap(lambda k, x: objectives.eval_loss_fn(config, sde, model)(
      params, k, x[None])))
  per_example = np.concatenate([
      np.asarray(eval_loss(jax.random.split(jax.random.fold_in(jax.random.PRNGKey(config.seed + 1),
                                                                 b), 512), x))[mask]
      for b, (x, mask) in enumerate(datasets.get_dataset(config, 'test').iterate(512))])
  assert len(per_example) == datasets.TOY_HELDOUT_SIZE
  np.testing.assert_allclose(first['test_loss'], per_example.mean(), rtol=1e-5)  # float32 sums

  # Done checkpoints are skipped: nothing is recomputed or rewritten.
  mtimes = [os.path.getmtime(os.path.join(eval_dir, f'ckpt_{n}.json')) for n in (1, 2)]
  evaluate.eval_mode(config, workdir)
  assert len(seen) == 2
  assert mtimes == [os.path.getmtime(os.path.join(eval_dir, f'ckpt_{n}.json')) for n in (1, 2)]

  ckpt = checkpointing.Checkpointer(workdir, create=False)
  e.begin_ckpt = e.end_ckpt = 2
  assert evaluate.checkpoints_in_range(config, ckpt) == [(2, 2)]
  config.training.snapshot_freq = 2            # now step 2 is ckpt 1 and step 1 is no ckpt
  e.begin_ckpt, e.end_ckpt = 0, 9
  assert evaluate.checkpoints_in_range(config, ckpt) == [(1, 2)]
  ckpt.close()
  e.begin_ckpt, e.end_ckpt = 5, 9
  with pytest.raises(CheckpointError, match='eval.begin_ckpt'):
    evaluate.eval_mode(config, workdir)


def test_bad_eval_config_fails_before_touching_the_workdir(tmp_path):
  workdir = str(tmp_path / 'never')
  for field, value in [('probe', 'sobol'), ('ode_method', 'rk4'), ('bpd_dataset', 'valid'),
                       ('num_repeats', 0)]:
    config = toy_config()
    setattr(config.eval, field, value)
    for mode in (evaluate.likelihood_mode, evaluate.eval_mode):
      with pytest.raises(ConfigError, match=f'eval.{field}'):
        mode(config, workdir)
  assert not os.path.exists(workdir)


@pytest.mark.parametrize('mode', ['likelihood', 'eval'])
def test_no_checkpoint_is_one_line_error(tmp_path, mode):
  proc = run_python(['main.py', '--config', 'configs/toy/vp_checkerboard_mlp_continuous.py',
                     '--workdir', str(tmp_path), '--mode', mode], timeout=120)
  assert proc.returncode == 2
  assert_one_line_error(proc, 'no checkpoint', str(tmp_path))
  assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_two_devices_give_the_same_bpd(trained, tmp_path):
  """The batch sharded over 2 simulated devices, params replicated: the same numbers."""
  workdir = fresh_workdir(trained, tmp_path)
  code = ('import sys, json; sys.path.insert(0, "tests"); import jax; '
          'from tests.test_evaluate import toy_config; import evaluate; '
          f'r = evaluate.likelihood_mode(toy_config(), {workdir!r}); '
          'print(json.dumps([jax.device_count(), r["bpd"]]))')
  outs = []
  for n in (1, 2):
    shutil.rmtree(os.path.join(workdir, 'eval'), ignore_errors=True)
    proc = run_python(code, env={'XLA_FLAGS': f'--xla_force_host_platform_device_count={n}'})
    assert proc.returncode == 0, proc.stderr[-3000:]
    outs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
  assert [o[0] for o in outs] == [1, 2]
  # float32 reductions may be ordered differently across devices: 1e-5 relative.
  np.testing.assert_allclose(outs[1][1], outs[0][1], rtol=1e-5)


@pytest.mark.slow
def test_eval_mode_with_real_toy_metrics(trained, tmp_path):
  """metrics.sample_quality unmocked: the toy's sliced Wasserstein and MMD land in the JSON."""
  config, workdir = toy_config(), fresh_workdir(trained, tmp_path)
  e = config.eval
  e.begin_ckpt = e.end_ckpt = 2
  e.enable_loss, e.enable_sampling, e.num_samples = False, True, 64
  evaluate.eval_mode(config, workdir)
  with open(os.path.join(workdir, 'eval', 'ckpt_2.json')) as f:
    result = json.load(f)
  assert result['num_samples'] == 64 and 'test_loss' not in result
  # Two steps of training: samples are far from the mixture, so both distances are positive.
  assert result['sliced_wasserstein'] > 0 and np.isfinite(result['mmd'])
