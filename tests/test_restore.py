"""restore.py: one restore for every mode, from the abstract state, without training code."""
import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import optim
import restore
import sde_lib
import train
from errors import CheckpointError
from models import utils as mutils
from tests.helpers import run_python, tiny_config

# Every module a non-training mode runs from (main.MODES) and the restore itself.
SAMPLING_MODULES = ('restore', 'generate', 'guidance', 'controllable', 'evaluate', 'likelihood',
                    'sample_eval', 'fid_stats', 'dmcmc.run')


def test_sampling_modes_do_not_import_training():
  """Importing any sampling / evaluation mode leaves train.py unimported."""
  code = ('import json, sys\n' + ''.join(f'import {m}\n' for m in SAMPLING_MODULES) +
          "print(json.dumps(sorted(m for m in sys.modules if m == 'train')))")
  proc = run_python(code)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def _count_network_inits(monkeypatch):
  """Counts network inits that actually run (a callback runs on execution, not on tracing)."""
  calls = [0]
  original = nn.Module.init

  def bump():
    calls[0] += 1

  def init(self, *args, **kwargs):
    out = original(self, *args, **kwargs)
    jax.debug.callback(bump)
    return out

  monkeypatch.setattr(nn.Module, 'init', init)
  return calls


def test_restore_run_is_the_checkpoint_and_initialises_nothing(tmp_path, monkeypatch):
  """The Run holds the trained EMA params and step, the config's SDE, eps and shape, and its
  score_fn is the EMA network's; neither it nor a resumed train run executes an init."""
  config = tiny_config('vpsde', n_iters=2)
  config.training.snapshot_sampling = False
  state = train.train_and_evaluate(config, str(tmp_path))

  inits = _count_network_inits(monkeypatch)
  train.train_and_evaluate(config, str(tmp_path))   # resumes at the end: nothing to train
  run = restore.restore_run(config, str(tmp_path))
  jax.effects_barrier()
  assert inits[0] == 0

  assert run.step == 2 and run.data_shape == (2,) and run.workdir == str(tmp_path)
  assert isinstance(run.sde, sde_lib.VPSDE) and run.eps == config.sampling.eps
  for got, want in zip(jax.tree.leaves(run.ema_params), jax.tree.leaves(state.ema_params)):
    np.testing.assert_array_equal(got, want)
    assert got.sharding.is_fully_replicated
  # EMA, not the training params: after 2 steps at ema_rate < 1 they differ.
  assert any(not np.array_equal(a, b) for a, b in
             zip(jax.tree.leaves(run.ema_params), jax.tree.leaves(state.params)))
  x, t = jnp.linspace(-1., 1., 8).reshape(4, 2), jnp.array([0.1, 0.3, 0.6, 0.9])
  want = mutils.score_fn_from_config(config, run.sde, run.model, state.ema_params)(x, t)
  np.testing.assert_array_equal(run.score_fn(x, t), want)

  older = restore.restore_run(config, str(tmp_path), step=1)
  assert older.step == 1


def test_fresh_run_is_the_training_initialisation():
  """fresh_run's params are train.init_state's (one init definition for both)."""
  config = tiny_config('vesde')
  run = restore.fresh_run(config)
  state = train.init_state(config, run.model, optim.get_optimizer(config), (2,), run.mesh)
  assert run.step == 0
  for got, want in zip(jax.tree.leaves(run.ema_params), jax.tree.leaves(state.ema_params)):
    np.testing.assert_array_equal(got, want)
  np.testing.assert_array_equal(state.rng, restore.init_state_rng(config))


def test_restore_run_without_checkpoint_is_one_line_and_writes_nothing(tmp_path):
  workdir = tmp_path / 'never_trained'
  with pytest.raises(CheckpointError) as e:
    restore.restore_run(tiny_config(), str(workdir))
  message = str(e.value)
  assert '\n' not in message and message.startswith('no checkpoint in '), message
  assert '--mode train' in message
  assert not workdir.exists()
