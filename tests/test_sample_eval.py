"""The sample-quality protocol of `--mode eval` (sample_eval.py): per-sample keys, 8-bit
quantisation, exact sample counts, resumable shards, results; and the published configs'
protocol settings."""
import glob
import json
import os

import jax
import numpy as np
import pytest

import configs
import datasets
import io_utils
import distances
import metrics
import optim
import parallel
import sample_eval
import sampling
import sde_lib
import train
from models import create_model
from models import utils as mutils
from tests.helpers import host_state, run_python, tiny_config

_DEVICE_CODE = '''
import json, sys, numpy as np, jax
sys.path.insert(0, "tests")
from tests.test_sample_eval import toy_setup
import sample_eval
config, sde, model, mesh, params = toy_setup()
sampler = sample_eval.make_indexed_sampler(config, sde, model, mesh, (2,))
x, nfe = sampler(params, sample_eval.sample_keys(config.seed, 0, 8))
print(json.dumps([jax.device_count(), np.asarray(x).tolist()]))
'''


def toy_setup(**sampling_overrides):
  config = tiny_config('vesde')             # VE: Langevin needs no minimum step count
  config.sampling.corrector = 'langevin'    # score_sde's batch-averaged step: must be per sample
  config.sampling.num_steps = 5
  for k, v in sampling_overrides.items():
    setattr(config.sampling, k, v)
  sde, _ = sde_lib.get_sde(config)
  model, mesh = create_model(config), parallel.make_mesh()
  params = train.init_state(config, model, optim.get_optimizer(config), (2,), mesh).params
  return config, sde, model, mesh, params


def test_sample_i_depends_only_on_its_key():
  """Sample i is the batch-of-one sampler run on fold_in(PRNGKey(seed), i): the same for a
  batch of 8 and two batches of 4."""
  config, sde, model, mesh, params = toy_setup()
  sampler = sample_eval.make_indexed_sampler(config, sde, model, mesh, (2,))
  x8, nfe = sampler(params, sample_eval.sample_keys(config.seed, 0, 8))
  x4 = np.concatenate([sampler(params, sample_eval.sample_keys(config.seed, f, 4))[0]
                       for f in (0, 4)])
  # The same maths per row; only XLA's batching of the MLP's matmuls may round differently.
  np.testing.assert_allclose(x4, x8, rtol=1e-5, atol=1e-6)
  # 5 steps x (predictor + 1 Langevin step) score evaluations per sample.
  np.testing.assert_array_equal(nfe, 10)
  one, _ = sampling.get_sampler(config, sde, (1, 2))
  score_fn = mutils.score_fn_from_config(config, sde, model, params)
  for i in (0, 5):
    direct, _ = jax.jit(one, static_argnums=1)(jax.random.fold_in(jax.random.PRNGKey(config.seed),
                                                                  i), score_fn)
    np.testing.assert_allclose(x8[i], direct[0], rtol=1e-5, atol=1e-6)
  # Samples differ from one another (a key shared by a batch would repeat them).
  assert len({tuple(np.round(r, 4)) for r in np.asarray(x8)}) == 8


@pytest.mark.slow
def test_samples_on_two_devices_equal_one_device():
  config, sde, model, mesh, params = toy_setup()
  sampler = sample_eval.make_indexed_sampler(config, sde, model, mesh, (2,))
  x8, _ = sampler(params, sample_eval.sample_keys(config.seed, 0, 8))
  proc = run_python(_DEVICE_CODE, env={'XLA_FLAGS': '--xla_force_host_platform_device_count=2'})
  assert proc.returncode == 0, proc.stderr[-3000:]
  n, x_two = json.loads(proc.stdout.strip().splitlines()[-1])
  assert n == 2
  np.testing.assert_allclose(np.asarray(x_two), x8, rtol=1e-5, atol=1e-6)


def digits_setup(tmp_path, num_samples=10, batch=4):
  config = tiny_config('vpsde', image=True)
  config.sampling.batch_size, config.eval.num_samples = batch, num_samples
  config.eval.feature_batch_size, config.eval.kid_num_subsets = 4, 5
  config.eval.kid_subset_size = 8
  config.eval.is_splits = 2
  config.eval.stats_dir = str(tmp_path / 'stats')
  sde, _ = sde_lib.get_sde(config)
  model, mesh = create_model(config), parallel.make_mesh()
  params = host_state(config, (8, 8, 1), mesh).params   # values do not matter; no init compile
  sampler = sample_eval.make_indexed_sampler(config, sde, model, mesh, (8, 8, 1))
  return config, sde, model, mesh, params, sampler


class Preempted(Exception):
  pass


def preempted_then_fresh(tmp_path, monkeypatch, sampler, run_protocol):
  """Runs the protocol preempted right after its 2nd shard is on disk, resumes it in the same
  dir ('a'), then runs it uninterrupted in a new dir ('b').

  Returns:
    (resumed result, fresh result, the list of sampler-call keys (the fresh run's so far),
    the counting sampler that appends to it).
  """
  calls, save, saved = [], sample_eval._save_shard, []

  def counting(p, keys):
    calls.append(np.asarray(keys))
    return sampler(p, keys)

  def dies_after_two(path, **arrays):
    save(path, **arrays)
    saved.append(path)
    if len(saved) == 2:
      raise Preempted()

  monkeypatch.setattr(sample_eval, '_save_shard', dies_after_two)
  with pytest.raises(Preempted):
    run_protocol(counting, tmp_path / 'a')
  monkeypatch.setattr(sample_eval, '_save_shard', save)
  resumed = run_protocol(counting, tmp_path / 'a')
  # 10 samples in shards of 4: 3 shards (4, 4, 2); only the 3rd is sampled again.
  assert len(calls) == 3 and resumed['shards_reused'] == 2
  calls.clear()
  fresh = run_protocol(counting, tmp_path / 'b')
  assert len(calls) == 3 and fresh['shards_reused'] == 0
  return resumed, fresh, calls, counting


def test_toy_protocol_counts_exactly_and_resumes(tmp_path, monkeypatch):
  """10 samples in shards of 4 (4, 4, 2); preempted after 2 shards, the rerun samples only
  the third and gives the uninterrupted result."""
  config, sde, model, mesh, params = toy_setup()
  config.sampling.batch_size, config.eval.num_samples = 4, 10
  sampler = sample_eval.make_indexed_sampler(config, sde, model, mesh, (2,))
  run = lambda sampler_fn, d: sample_eval.sample_quality_protocol(
      config, params, sampler=sampler_fn, mesh=mesh, step=1, eval_dir=str(d), ckpt_n=1)
  resumed, fresh, calls, _ = preempted_then_fresh(tmp_path, monkeypatch, sampler, run)
  for k in ('sliced_wasserstein', 'mmd', 'num_samples', 'nfe_per_sample'):
    assert resumed[k] == fresh[k], k
  assert fresh['num_samples'] == 10 and fresh['nfe_per_sample'] == 10
  shards = sorted(glob.glob(str(tmp_path / 'a' / 'ckpt_1_shards' / 'shard_*.npz')))
  samples = np.concatenate([np.load(s)['samples'] for s in shards])
  assert [len(np.load(s)['samples']) for s in shards] == [4, 4, 2]
  # Rows 0..9 of one batch of 12 keys: none dropped, none twice, each from its own key.
  x, _ = sampler(params, sample_eval.sample_keys(config.seed, 0, 12))
  np.testing.assert_allclose(samples, np.asarray(x)[:10], rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(calls[2], sample_eval.sample_keys(config.seed, 8, 4))


@pytest.mark.slow
def test_protocol_quantises_counts_exactly_and_resumes(tmp_path, monkeypatch):
  config, sde, model, mesh, params, sampler = digits_setup(tmp_path)
  run = lambda sampler_fn, d: sample_eval.sample_quality_protocol(
      config, params, sampler=sampler_fn, mesh=mesh, step=3, eval_dir=str(d), ckpt_n=1)
  resumed, fresh, calls, counting = preempted_then_fresh(tmp_path, monkeypatch, sampler, run)
  for k in ('digits_fd', 'digits_kid', 'digits_is', 'num_samples', 'nfe_per_sample'):
    assert resumed[k] == fresh[k], k
  assert fresh['num_samples'] == 10 and fresh['seed'] == config.seed
  assert fresh['nfe_per_sample'] == 5 and fresh['sampler']['num_steps'] == 5
  assert fresh['reference']['split'] == 'train' and fresh['reference']['count'] == 1500
  # The third shard drew the keys of samples 8..11 and kept 8 and 9.
  np.testing.assert_array_equal(calls[2], sample_eval.sample_keys(config.seed, 8, 4))
  shards = sorted(glob.glob(str(tmp_path / 'b' / 'ckpt_1_shards' / 'shard_*.npz')))
  assert [os.path.basename(s) for s in shards] == [f'shard_0000{k}.npz' for k in range(3)]
  data = [dict(np.load(s)) for s in shards]
  samples = np.concatenate([d['samples'] for d in data])
  feats = np.concatenate([d['features'] for d in data])
  assert samples.dtype == np.uint8 and samples.shape == (10, 8, 8, 1) and feats.shape == (10, 64)
  # The uint8 samples are io_utils.to_uint8 (the PNG writer's rounding) of sample i's key.
  x, _ = sampler(params, sample_eval.sample_keys(config.seed, 0, 12))
  want = io_utils.to_uint8(datasets.get_data_inverse_scaler(config)(np.asarray(x)))[:10]
  np.testing.assert_array_equal(samples, want)
  # The feature network saw those 8-bit images, not the float samples.
  ext = metrics.get_extractor(config)
  direct = np.asarray(ext.apply(ext.variables, want / np.float32(255.))[0])
  np.testing.assert_allclose(feats, direct, rtol=1e-5, atol=1e-6)   # float32 batching
  unquantised = np.asarray(ext.apply(ext.variables, np.asarray(
      datasets.get_data_inverse_scaler(config)(np.asarray(x)))[:10])[0])
  assert np.max(np.abs(unquantised - feats)) > 1e-4
  # FD and IS (2 splits of 5) of exactly these 10 feature rows against the train split.
  ref = metrics.reference_stats(config)
  np.testing.assert_allclose(fresh['digits_fd'], distances.frechet_distance(
      *distances.feature_stats(feats), ref.mu, ref.cov), rtol=1e-10)
  logits = np.concatenate([d['logits'] for d in data])
  np.testing.assert_allclose(fresh['digits_is'], distances.inception_score(logits, 2)[0],
                             rtol=1e-12)
  assert os.path.exists(tmp_path / 'b' / 'ckpt_1_samples.png')
  # A shard made with other settings (another checkpoint step) is not reused.
  calls.clear()
  sample_eval.sample_quality_protocol(config, params, sampler=counting, mesh=mesh, step=4,
                                      eval_dir=str(tmp_path / 'b'), ckpt_n=1)
  assert len(calls) == 3


def test_published_configs_use_the_papers_protocol():
  """50000 samples and 10 IS splits for the CIFAR-10 / CelebA / LSUN / FFHQ families."""
  published = [n for n in configs.ALL if any(d in n for d in (
      'cifar10', 'celeba', 'bedroom', 'church', 'ffhq'))] if hasattr(configs, 'ALL') else None
  if published is None:
    import importlib
    import pkgutil
    published = []
    for family in ('ve', 'vp', 'subvp', 'ncsn', 'ncsnv2'):
      pkg = importlib.import_module(f'configs.{family}')
      published += [f'configs.{family}.{m.name}' for m in pkgutil.iter_modules(pkg.__path__)
                    if any(d in m.name for d in ('cifar10', 'celeba', 'bedroom', 'church',
                                                 'ffhq'))]
  assert len(published) >= 20
  for name in published:
    import importlib
    config = importlib.import_module(name if name.startswith('configs.') else
                                     f'configs.{name}').get_config()
    assert config.eval.num_samples == 50000 and config.eval.is_splits == 10, name
  from configs.default_digits import get_digits_configs
  assert get_digits_configs().eval.num_samples == 1000
