"""Two real processes on the JAX distributed runtime against one process with two devices.

Each process of the pair owns one CPU device and talks to the other through
JAX's CPU collectives (gloo over TCP on 127.0.0.1, the default
`jax_cpu_collectives_implementation` of the pinned jax). The reference is one
process with two simulated devices (`--xla_force_host_platform_device_count=2`).
Both see the same global batches, because batch k is a pure function of
(seed, k) and each process keeps its rows of it, so their loss curves, eval
losses, gathered samples and checkpoints must agree.

Only process 0 may write outside `checkpoints/` (where Orbax has every process
write its own shard). Each process runs main.py under a Python audit hook that
records every file it opens for writing, creates, renames or removes in the
workdir; process 1's record must be empty outside `checkpoints/`.
"""
import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

import checkpointing
import losses
import parallel
import train
from models import create_model
from tests.helpers import REPO, tiny_config

N_ITERS = 20

CONFIG = """
import sys
sys.path.insert(0, {repo!r})
from tests.helpers import tiny_config

def get_config():
  c = tiny_config('vpsde', image={image}, n_iters={n})
  t = c.training
  t.log_freq = 1
  t.eval_freq = t.snapshot_freq_for_preemption = 10
  t.snapshot_freq = {n}
  return c
"""

# main.py under an audit hook (PEP 578) that records what this process writes in the workdir.
AUDITED_MAIN = r"""
import atexit, json, os, runpy, sys
record_path, workdir = sys.argv[1], os.path.realpath(sys.argv[2])
written = set()
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

def hook(event, args):
  if event == 'open':
    paths = [args[0]] if args[2] & WRITE_FLAGS else []
  elif event in ('os.rename', 'os.symlink', 'os.link'):
    paths = args[:2]                                   # both ends change
  elif event in ('os.mkdir', 'os.remove', 'os.rmdir', 'os.truncate', 'shutil.rmtree'):
    paths = args[:1]
  else:
    return
  for path in paths:
    if isinstance(path, (str, bytes, os.PathLike)):
      path = os.path.realpath(os.fsdecode(path))
      if path == workdir or path.startswith(workdir + os.sep):
        written.add(os.path.relpath(path, workdir))

def dump():
  with open(record_path, 'w') as f:
    json.dump(sorted(written), f)

atexit.register(dump)
sys.addaudithook(hook)
sys.argv = ['main.py'] + sys.argv[3:]
runpy.run_path('main.py', run_name='__main__')
"""


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def launch(workdir, record, args, *, process_id=None, port=None, devices=1):
  """Starts main.py (audited) as one process of a 2-process job, or alone with `devices`.

  The job's coordinates reach process 0 as main.py's flags and process 1 as the
  JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID environment, so both
  ways of launching are exercised.
  """
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'PYTHONPATH': REPO,
         'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}'}
  cmd = [sys.executable, '-c', AUDITED_MAIN, str(record), str(workdir), '--workdir', str(workdir),
         *args]
  if process_id == 0:     # process 0 is told by flags, process 1 by the environment
    cmd += ['--coordinator_address', f'127.0.0.1:{port}', '--num_processes', '2',
            '--process_id', '0']
  elif process_id is not None:
    env.update(JAX_COORDINATOR_ADDRESS=f'127.0.0.1:{port}', JAX_NUM_PROCESSES='2',
               JAX_PROCESS_ID=str(process_id))
  return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def run_both(tmp_path, tag, args):
  """Runs `args` as 2 processes x 1 device (workdir mp/) and as 1 process x 2 devices (sp/).

  Returns:
    {'mp0' | 'mp1' | 'sp': [paths that process wrote in its workdir]}.
  """
  port = free_port()
  procs = {f'mp{i}': launch(tmp_path / 'mp', tmp_path / f'{tag}_mp{i}.json', args,
                            process_id=i, port=port) for i in (0, 1)}
  procs['sp'] = launch(tmp_path / 'sp', tmp_path / f'{tag}_sp.json', args, devices=2)
  try:
    for name, proc in procs.items():
      out, _ = proc.communicate(timeout=900)
      assert proc.returncode == 0, f'{name}:\n{out[-4000:]}'
  finally:   # a process whose peer died waits on the collectives forever
    for proc in procs.values():
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  records = {name: json.load(open(tmp_path / f'{tag}_{name}.json')) for name in procs}
  return records


def metrics(workdir, key):
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f]
  return np.array([[r['step'], r[key]] for r in rows if key in r])


def restore(config, workdir, data_shape):
  """The final TrainState of `workdir`, restored onto this test process's one device."""
  mesh = parallel.make_mesh()
  abstract = jax.eval_shape(lambda: train.init_state(
      config, create_model(config), losses.get_optimizer(config), data_shape, mesh))
  # With target shardings, as train.py and generate.py restore: Orbax then reshards the
  # 2-process checkpoint onto this process's single device.
  abstract = checkpointing.abstract_like(abstract, parallel.replicated(mesh))
  ckpt = checkpointing.Checkpointer(str(workdir), create=False)
  try:
    return ckpt.restore(abstract, step=N_ITERS)
  finally:
    ckpt.close()


def check_pair(tmp_path, image):
  config_path = tmp_path / 'config.py'
  config_path.write_text(CONFIG.format(repo=REPO, image=image, n=N_ITERS))
  train_args = ['--config', str(config_path), '--mode', 'train']
  records = run_both(tmp_path, 'train', train_args)

  mp, sp = tmp_path / 'mp', tmp_path / 'sp'
  # The two runs compute the same sums over the same 2 shards; only the transport of
  # the cross-device reduction differs (gloo vs in-process), which could at most
  # reorder one float32 addition of two partial sums: relative error <= 2^-23 per
  # reduction, compounded over 20 Adam steps; 1e-5 allows for that. (Measured: 0.)
  loss_mp, loss_sp = metrics(mp, 'loss'), metrics(sp, 'loss')
  assert len(loss_mp) == N_ITERS and np.array_equal(loss_mp[:, 0], np.arange(1, N_ITERS + 1))
  np.testing.assert_allclose(loss_mp, loss_sp, rtol=1e-5, atol=0)
  np.testing.assert_allclose(metrics(mp, 'eval_loss'), metrics(sp, 'eval_loss'), rtol=1e-5)

  # The snapshot sampler's output is gathered once (parallel.to_host) into the whole
  # global batch: the same samples as the 2-device run, not one process's half.
  x_mp = np.load(mp / 'samples' / f'step_{N_ITERS}.npz')['samples']
  x_sp = np.load(sp / 'samples' / f'step_{N_ITERS}.npz')['samples']
  assert len(x_mp) == tiny_config(image=image).sampling.batch_size
  np.testing.assert_allclose(x_mp, x_sp, rtol=1e-4, atol=1e-5)   # 5 sampler steps of the above

  # Only process 0 writes logs, images and JSON; process 1 writes only its checkpoint shard.
  assert {'metrics.jsonl', f'samples/step_{N_ITERS}.png', f'samples/step_{N_ITERS}.json'} \
      <= set(records['mp0']), records['mp0']                    # the audit hook sees writes
  outside = [p for p in records['mp1'] if p.split(os.sep)[0] != 'checkpoints']
  assert outside == [], outside
  assert any(p.startswith('checkpoints') for p in records['mp1'])   # it did write its shard

  # The 2-process Orbax checkpoint restores (here on 1 device) to the 2-device run's state.
  config = tiny_config(image=image)
  shape = (8, 8, 1) if image else (2,)
  a, b = restore(config, mp, shape), restore(config, sp, shape)
  assert int(a.step) == N_ITERS
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-7)
  return config_path


def test_two_processes_match_two_devices(tmp_path):
  """Toy MLP: training, eval loss, snapshot gathering, writers, checkpoints, then --mode sample."""
  config_path = check_pair(tmp_path, image=False)

  # --mode sample on the 2-process checkpoint: the global sample batch is gathered once
  # and written once, by process 0, and equals the 2-device run's.
  records = run_both(tmp_path, 'sample', ['--config', str(config_path), '--mode', 'sample'])
  name = f'euler_maruyama_none_ckpt{N_ITERS}'
  x_mp = np.load(tmp_path / 'mp' / 'samples' / f'{name}.npz')['samples']
  x_sp = np.load(tmp_path / 'sp' / 'samples' / f'{name}.npz')['samples']
  assert x_mp.shape == (16, 2)
  np.testing.assert_allclose(x_mp, x_sp, rtol=1e-4, atol=1e-5)
  assert f'samples/{name}.npz' in records['mp0']
  assert records['mp1'] == [], records['mp1']                  # sampling writes nothing there


@pytest.mark.slow
def test_two_processes_match_two_devices_image(tmp_path):
  """Tiny NCSN++ on digits: each process reads its own rows of the real data, flips included."""
  check_pair(tmp_path, image=True)
