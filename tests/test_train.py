"""End-to-end training: smoke runs, exact resumption, device-count invariance, NaN stop."""
import json
import os

import jax
import numpy as np
import pytest

import checkpointing
import datasets
import generate
import train
from errors import TrainingError
from tests.helpers import run_python, tiny_config


def leaves_equal(a, b):
  return all(np.array_equal(np.asarray(x), np.asarray(y))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def read_metrics(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f]


@pytest.mark.parametrize('sde', ['vesde', 'vpsde', 'subvpsde'])
def test_one_step_smoke(sde, tmp_path):
  config = tiny_config(sde)
  init = train.init_state(config, *_model_and_opt(config), (2,), _mesh())
  state = train.train_and_evaluate(config, str(tmp_path))
  assert int(state.step) == 1
  assert not leaves_equal(state.params, init.params)          # the step moved the params
  assert checkpointing.Checkpointer(str(tmp_path)).all_steps() == [1]
  for ext in ('png', 'npz', 'json'):
    assert os.path.exists(tmp_path / 'samples' / f'step_1.{ext}')
  meta = json.load(open(tmp_path / 'samples' / 'step_1.json'))
  assert meta['nfe'] == 5 and meta['config_name'] == config.name
  assert np.isfinite(read_metrics(tmp_path)[0]['loss'])
  assert os.listdir(tmp_path / 'tensorboard')


def test_image_smoke_then_sample_mode(tmp_path):
  config = tiny_config('vpsde', image=True, n_iters=2)
  config.training.snapshot_sampling = False   # the toy smoke test covers snapshots
  train.train_and_evaluate(config, str(tmp_path))
  result = generate.sample(config, str(tmp_path), name='test')
  x = np.load(result['paths']['npz'])['samples']
  assert x.shape == (4, 8, 8, 1) and np.all(np.isfinite(x))
  assert result['nfe'] == 5 and result['checkpoint_step'] == 2
  assert os.path.exists(tmp_path / 'samples' / 'test.png')


def test_resume_gives_identical_parameters(tmp_path):
  """Stopping at step 3 and resuming to 6 equals 6 uninterrupted steps, bit for bit."""
  straight = train.train_and_evaluate(tiny_config('vpsde', n_iters=6), str(tmp_path / 'a'))
  train.train_and_evaluate(tiny_config('vpsde', n_iters=3), str(tmp_path / 'b'))
  resumed = train.train_and_evaluate(tiny_config('vpsde', n_iters=6), str(tmp_path / 'b'))
  assert int(resumed.step) == 6
  assert leaves_equal(straight, resumed)   # params, EMA, optimizer state, step, rng
  losses_a = [m['loss'] for m in read_metrics(tmp_path / 'a') if 'loss' in m]
  losses_b = [m['loss'] for m in read_metrics(tmp_path / 'b') if 'loss' in m]
  assert losses_a == losses_b


def test_n_jitted_steps_match_single_steps(tmp_path):
  """Fusing steps with lax.scan must not change the computation."""
  one = train.train_and_evaluate(tiny_config('vesde', n_iters=4), str(tmp_path / 'a'))
  config = tiny_config('vesde', n_iters=4)
  config.training.n_jitted_steps = 2
  config.training.log_freq = config.training.eval_freq = 2
  config.training.snapshot_freq_for_preemption = 2
  fused = train.train_and_evaluate(config, str(tmp_path / 'b'))
  for x, y in zip(jax.tree.leaves(one.params), jax.tree.leaves(fused.params)):
    np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


_DEVICE_RUN = """
import json, sys, numpy as np, jax
import train
from tests.helpers import tiny_config
config = tiny_config('vpsde', image=sys.argv[2] == 'image', n_iters=5)
config.training.snapshot_sampling = False
config.training.microbatches = int(sys.argv[3])
state = train.train_and_evaluate(config, sys.argv[1])
np.savez(sys.argv[1] + '/params.npz', *[np.asarray(x) for x in jax.tree.leaves(state.params)])
print(json.dumps({'devices': jax.device_count()}))
"""


# The tiny MLP by default; the tiny NCSN++ (GroupNorm, attention) with -m slow.
@pytest.mark.parametrize('data,microbatches', [
    ('toy', 1), ('toy', 2), pytest.param('image', 1, marks=pytest.mark.slow)])
def test_two_devices_match_one(data, microbatches, tmp_path):
  """Same global batches on 1 vs 2 simulated CPU devices: same losses to float tolerance.

  The only difference is the order of the cross-device reductions (means over
  the batch and GroupNorm statistics are per example, so they are unaffected).
  With training.microbatches=2 the parts are the same rows (i::2 of the global
  batch) and get the same keys on either mesh, so this also checks the strided
  split of a batch sharded over 'data'.
  """
  results = {}
  for n in (1, 2):
    workdir = str(tmp_path / f'd{n}')
    proc = run_python(['-c', _DEVICE_RUN, workdir, data, str(microbatches)],
                      env={'XLA_FLAGS': f'--xla_force_host_platform_device_count={n}'})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])['devices'] == n
    params = np.load(workdir + '/params.npz')
    results[n] = ([m['loss'] for m in read_metrics(workdir) if 'loss' in m],
                  [params[k] for k in params.files])
  np.testing.assert_allclose(results[1][0], results[2][0], rtol=1e-5)
  assert len(results[1][0]) == 5
  for x, y in zip(results[1][1], results[2][1]):
    np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
  real = datasets.get_dataset

  def poisoned(config, split='train', **kw):
    ds = real(config, split, **kw)
    clean = ds.batch
    ds.batch = lambda step, b: clean(step, b) * (np.nan if step >= 3 else 1.)
    return ds

  monkeypatch.setattr(datasets, 'get_dataset', poisoned)
  with pytest.raises(TrainingError, match='last good checkpoint is step 3'):
    train.train_and_evaluate(tiny_config('vpsde', n_iters=6), str(tmp_path))
  ckpt = checkpointing.Checkpointer(str(tmp_path))
  assert ckpt.all_steps() == [1, 2, 3] or ckpt.all_steps() == [2, 3]   # max_to_keep=3
  state = ckpt.restore(jax.eval_shape(lambda: _init(tiny_config('vpsde'))))
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state.params))


def _mesh():
  import parallel
  return parallel.make_mesh()


def _model_and_opt(config):
  import optim
  from models import create_model
  return create_model(config), optim.get_optimizer(config)


def _init(config):
  return train.init_state(config, *_model_and_opt(config), (2,), _mesh())


def test_sigterm_on_a_checkpoint_step_saves_once_and_stops(tmp_path, monkeypatch):
  """SIGTERM arriving during step 4, which is also a periodic checkpoint step."""
  import signal
  real = datasets.get_dataset

  def signalling(config, split='train', **kw):
    ds = real(config, split, **kw)
    clean = ds.batch
    def batch(step, b):
      if split == 'train' and step == 3:
        os.kill(os.getpid(), signal.SIGTERM)   # the handler only sets a flag
      return clean(step, b)
    ds.batch = batch
    return ds

  monkeypatch.setattr(datasets, 'get_dataset', signalling)
  config = tiny_config('vpsde', n_iters=10)
  config.training.snapshot_freq_for_preemption = 2
  state = train.train_and_evaluate(config, str(tmp_path))
  assert int(state.step) == 4
  assert checkpointing.Checkpointer(str(tmp_path)).all_steps()[-1] == 4
  assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL   # the handler is removed again


def test_sample_mode_with_the_adaptive_ode_sampler(tmp_path):
  config = tiny_config('vesde', n_iters=1)
  config.training.snapshot_sampling = False
  train.train_and_evaluate(config, str(tmp_path))
  config.sampling.method = 'ode'
  result = generate.sample(config, str(tmp_path), name='ode')
  meta = json.load(open(result['paths']['json']))
  assert meta['nfe'] == result['nfe'] and isinstance(meta['nfe'], int) and meta['nfe'] > 6
  assert np.all(np.isfinite(np.load(result['paths']['npz'])['samples']))
