"""Real processes, real signals: SIGKILL and SIGTERM mid-run, then resume.

The resumed run must end with exactly (bit for bit) the parameters, EMA and
optimizer state of an uninterrupted run with the same seed: batch k is a pure
function of (seed, k) and step k's randomness is fold_in(rng, k).
"""
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np

import checkpointing
import train
from tests.helpers import REPO, tiny_config

N_ITERS = 3000
CONFIG = f"""
import sys
sys.path.insert(0, {REPO!r})
from tests.helpers import tiny_config

def get_config():
  c = tiny_config('vpsde', n_iters={N_ITERS})
  t = c.training
  t.log_freq = t.eval_freq = t.snapshot_freq_for_preemption = 100
  t.snapshot_freq = {N_ITERS}
  t.snapshot_sampling = False
  return c
"""


def start(config_path, workdir):
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'PYTHONPATH': REPO}
  return subprocess.Popen([sys.executable, 'main.py', '--config', str(config_path), '--workdir',
                           str(workdir), '--mode', 'train'], cwd=REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finished_steps(workdir):
  d = os.path.join(workdir, 'checkpoints')
  return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if os.path.isdir(d) else []


def wait_for_step(proc, workdir, step, timeout=240):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if any(s >= step for s in finished_steps(workdir)):
      return
    assert proc.poll() is None, proc.stdout.read()[-3000:]
    time.sleep(0.02)
  raise AssertionError(f'no checkpoint >= {step} within {timeout}s')


def final_state(workdir):
  config = tiny_config('vpsde')
  import losses
  import parallel
  from models import create_model
  abstract = jax.eval_shape(lambda: train.init_state(
      config, create_model(config), losses.get_optimizer(config), (2,), parallel.make_mesh()))
  ckpt = checkpointing.Checkpointer(str(workdir), create=False)
  return ckpt.restore(abstract, step=N_ITERS)


def test_sigkill_and_sigterm_then_resume_is_bit_identical(tmp_path):
  config_path = tmp_path / 'tiny_config.py'
  config_path.write_text(CONFIG)

  straight = start(config_path, tmp_path / 'a')
  out, _ = straight.communicate(timeout=600)
  assert straight.returncode == 0, out[-3000:]

  workdir = tmp_path / 'b'
  proc = start(config_path, workdir)
  wait_for_step(proc, workdir, 500)
  proc.send_signal(signal.SIGKILL)                       # no chance to clean up
  proc.wait()
  killed_at = max(finished_steps(workdir))
  assert killed_at < N_ITERS

  proc = start(config_path, workdir)                     # resumes from the last checkpoint
  wait_for_step(proc, workdir, killed_at + 500)
  proc.send_signal(signal.SIGTERM)                       # checkpoint, then a clean exit
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 0, out[-3000:]
  assert 'SIGTERM: checkpointed step' in out
  assert max(finished_steps(workdir)) < N_ITERS

  proc = start(config_path, workdir)
  out, _ = proc.communicate(timeout=600)
  assert proc.returncode == 0, out[-3000:]
  assert 'Resumed from' in out

  a, b = final_state(tmp_path / 'a'), final_state(workdir)
  assert int(b.step) == N_ITERS
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
