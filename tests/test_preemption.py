"""Real processes, real signals: SIGKILL at random moments and mid-checkpoint, SIGTERM, a
corrupted newest checkpoint; then resume.

The resumed run must end with exactly (bit for bit) the parameters, EMA and
optimizer state of an uninterrupted run with the same seed, and must have seen
the same data in the same order: batch k is a pure function of (seed, k) and
step k's randomness is fold_in(rng, k), so the loss logged at every step,
replayed steps included, equals the uninterrupted run's loss at that step.
"""
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np

import checkpointing
import train
from tests.helpers import REPO, tiny_config

N_ITERS = 1200
EVERY = 40        # rolling checkpoint period (snapshot_freq_for_preemption)
CONFIG = f"""
import sys
sys.path.insert(0, {REPO!r})
from tests.helpers import tiny_config

def get_config():
  c = tiny_config('vpsde', n_iters={N_ITERS})
  t = c.training
  t.log_freq = 1                     # every step's loss: the data-order check
  t.snapshot_freq_for_preemption = {EVERY}
  t.eval_freq = t.snapshot_freq = {N_ITERS}
  t.snapshot_sampling = False
  return c
"""


def start(config_path, workdir):
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'PYTHONPATH': REPO}
  log = open(os.path.join(os.path.dirname(workdir), f'{os.path.basename(workdir)}.log'), 'a')
  return subprocess.Popen([sys.executable, 'main.py', '--config', str(config_path), '--workdir',
                           str(workdir), '--mode', 'train'], cwd=REPO, env=env,
                          stdout=log, stderr=subprocess.STDOUT, text=True)


def output_since(workdir, offset):
  with open(os.path.join(os.path.dirname(workdir), f'{os.path.basename(workdir)}.log')) as f:
    return f.read()[offset:]


def log_size(workdir):
  path = os.path.join(os.path.dirname(workdir), f'{os.path.basename(workdir)}.log')
  return os.path.getsize(path) if os.path.exists(path) else 0


def finished_steps(workdir):
  d = os.path.join(workdir, 'checkpoints')
  return sorted(int(n) for n in os.listdir(d) if n.isdigit()) if os.path.isdir(d) else []


def writing(workdir):
  """Checkpoints being written: Orbax's temporary folders, renamed into place when complete."""
  return glob.glob(os.path.join(workdir, 'checkpoints', '*.orbax-checkpoint-tmp*'))


def wait_until(proc, condition, what, timeout=300, poll=0.02):
  deadline = time.time() + timeout
  while time.time() < deadline:
    if condition():
      return
    assert proc.poll() is None, f'exited while waiting for {what}'
    time.sleep(poll)
  raise AssertionError(f'no {what} within {timeout}s')


def kill(proc):
  proc.send_signal(signal.SIGKILL)                       # no chance to clean up
  proc.wait()


def resumed_at(text):
  steps = re.findall(r'Resumed from \S+ at step (\d+)', text)
  assert len(steps) == 1, text[-3000:]
  return int(steps[0])


def final_state(workdir):
  config = tiny_config('vpsde')
  import optim
  import parallel
  from models import create_model
  abstract = jax.eval_shape(lambda: train.init_state(
      config, create_model(config), optim.get_optimizer(config), (2,), parallel.make_mesh()))
  ckpt = checkpointing.Checkpointer(str(workdir), create=False)
  return ckpt.restore(abstract, step=N_ITERS)


def logged_losses(workdir):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [(r['step'], r['loss']) for r in map(json.loads, f) if 'loss' in r]


def test_preemption_at_random_moments_resumes_bit_identical(tmp_path):
  config_path = tmp_path / 'tiny_config.py'
  config_path.write_text(CONFIG)
  rng = np.random.default_rng(0)
  straight = start(config_path, tmp_path / 'a')            # the reference, alongside

  workdir = str(tmp_path / 'b')
  # 1. SIGKILL at random moments: some time after a new checkpoint has appeared.
  for _ in range(2):
    before = max(finished_steps(workdir), default=0)
    offset = log_size(workdir)
    proc = start(config_path, workdir)
    wait_until(proc, lambda: max(finished_steps(workdir), default=0) > before, 'new checkpoint')
    time.sleep(rng.uniform(0., 0.5))
    kill(proc)
    if before:
      assert resumed_at(output_since(workdir, offset)) == before

  # 2. SIGKILL while a checkpoint is being written: it must not count.
  for _ in range(5):
    proc = start(config_path, workdir)
    wait_until(proc, lambda: writing(workdir), 'checkpoint being written', poll=0.001)
    kill(proc)
    partial = writing(workdir)
    if partial:
      break
  assert partial, 'never caught a checkpoint mid-write'
  complete = max(finished_steps(workdir))
  assert all(int(os.path.basename(p).split('.')[0]) > complete for p in partial)

  # 3. A corrupted newest checkpoint (its array files truncated, as a crash on a
  # non-atomic file system would leave them) is skipped with a warning for the previous one.
  corrupt, previous = finished_steps(workdir)[-1], finished_steps(workdir)[-2]
  for path in glob.glob(os.path.join(workdir, 'checkpoints', str(corrupt), '**', 'd', '*'),
                        recursive=True):
    open(path, 'wb').close()
  offset = log_size(workdir)
  proc = start(config_path, workdir)
  # 4. ... and that run gets SIGTERM once it is past the corrupt step: checkpoint, clean exit.
  wait_until(proc, lambda: max(finished_steps(workdir)) > corrupt, 'checkpoint past the corrupt one')
  time.sleep(rng.uniform(0., 0.5))
  proc.send_signal(signal.SIGTERM)
  assert proc.wait(timeout=120) == 0
  text = output_since(workdir, offset)
  assert f'Skipping unreadable checkpoint {workdir}/checkpoints/{corrupt}' in text, text[-3000:]
  assert resumed_at(text) == previous
  assert not writing(workdir)                              # the mid-write leftover is gone
  assert os.path.isdir(os.path.join(workdir, 'checkpoints', f'{corrupt}.unreadable'))
  stopped = int(re.search(r'SIGTERM: checkpointed step (\d+)', text).group(1))
  assert stopped == max(finished_steps(workdir)) < N_ITERS

  # 5. Resume to the end.
  offset = log_size(workdir)
  proc = start(config_path, workdir)
  assert proc.wait(timeout=600) == 0, output_since(workdir, offset)[-3000:]
  assert resumed_at(output_since(workdir, offset)) == stopped
  assert straight.wait(timeout=600) == 0

  a, b = final_state(tmp_path / 'a'), final_state(workdir)
  assert int(b.step) == N_ITERS
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  # The same data in the same order: every logged step's loss, replays included, is the
  # uninterrupted run's (exactly: the same computation on the same inputs).
  reference = dict(logged_losses(tmp_path / 'a'))
  assert sorted(reference) == list(range(1, N_ITERS + 1))
  replayed = logged_losses(workdir)
  assert len(replayed) > N_ITERS                           # some steps ran twice
  for step, loss in replayed:
    assert loss == reference[step], step
