"""Two real processes on the JAX distributed runtime against one process with two devices.

Each process of the pair owns one CPU device and talks to the other through
JAX's CPU collectives (gloo over TCP on 127.0.0.1, the default
`jax_cpu_collectives_implementation` of the pinned jax). The reference is one
process with two simulated devices (`--xla_force_host_platform_device_count=2`).
Both see the same global batches, because batch k is a pure function of
(seed, k) and each process keeps its rows of it, so their loss curves, eval
losses, gathered samples and checkpoints must agree.

The evaluation modes (likelihood, eval, DMCMC, DSB) are held to the same
standard: each result is gathered once and equals the 2-device run's.

Only process 0 may write outside `checkpoints/` (where Orbax has every process
write its own shard). Each process runs main.py under a Python audit hook that
records every file it opens for writing, creates, renames or removes in the
workdir; process 1's record must be empty outside `checkpoints/`.
"""
import json
import os
import shutil
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

import checkpointing
import optim
import parallel
import train
from dmcmc import run as dmcmc_run
from models import create_model
from tests.helpers import REPO, tiny_config
from tests.test_dmcmc import _run_config as dmcmc_config
from tests.test_evaluate import toy_config as likelihood_config

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

# An audit hook (PEP 578) that records what this process writes in the workdir;
# argv: record path, workdir, then the program's own arguments.
AUDIT = r"""
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
"""

# main.py as a user runs it.
AUDITED_MAIN = AUDIT + r"""
sys.argv = ['main.py'] + sys.argv[3:]
runpy.run_path('main.py', run_name='__main__')
"""

# The evaluation modes one after another in one process (one start-up and one
# distributed runtime instead of one per mode), each through main.run as main.py
# dispatches it, with the tests' tiny configs; argv[3]: the pre-trained workdirs.
MODES_DRIVER = AUDIT + r"""
import jax
if os.environ.get('JAX_COORDINATOR_ADDRESS'):
  jax.distributed.initialize(os.environ['JAX_COORDINATOR_ADDRESS'],
                             int(os.environ['JAX_NUM_PROCESSES']),
                             int(os.environ['JAX_PROCESS_ID']))
import pathlib
import main
from tests.test_dmcmc import _run_config
from tests.test_dsb import tiny_toy_config
from tests.test_evaluate import toy_config
config = toy_config()
config.eval.begin_ckpt = config.eval.end_ckpt = 2
# 10 samples in shards of 4: sample i's key is fold_in(seed, i) on any process count.
config.eval.enable_sampling, config.eval.num_samples, config.sampling.batch_size = True, 10, 4
for mode in ('likelihood', 'eval'):
  main.run(config, os.path.join(workdir, 'score'), mode)
main.run(_run_config(pathlib.Path(sys.argv[3])), os.path.join(workdir, 'dmcmc'), 'dmcmc')
main.run(tiny_toy_config(), os.path.join(workdir, 'dsb'), 'dsb')
"""


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def launch(workdir, record, args, *, process_id=None, port=None, devices=1, program=None):
  """Starts main.py (audited) as one process of a 2-process job, or alone with `devices`.

  The job's coordinates reach process 0 as main.py's flags and process 1 as the
  JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID environment, so both
  ways of launching are exercised. `program` (MODES_DRIVER) replaces main.py; it
  reads the environment only.
  """
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'PYTHONPATH': REPO,
         'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}'}
  cmd = [sys.executable, '-c', program or AUDITED_MAIN, str(record), str(workdir),
         *(args if program else ['--workdir', str(workdir), *args])]
  if process_id == 0 and not program:  # process 0 is told by flags, process 1 by the environment
    cmd += ['--coordinator_address', f'127.0.0.1:{port}', '--num_processes', '2',
            '--process_id', '0']
  elif process_id is not None:
    env.update(JAX_COORDINATOR_ADDRESS=f'127.0.0.1:{port}', JAX_NUM_PROCESSES='2',
               JAX_PROCESS_ID=str(process_id))
  return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def run_both(tmp_path, tag, args, program=None):
  """Runs `args` as 2 processes x 1 device (workdir mp/) and as 1 process x 2 devices (sp/).

  Returns:
    {'mp0' | 'mp1' | 'sp': [paths that process wrote in its workdir]}.
  """
  port = free_port()
  procs = {f'mp{i}': launch(tmp_path / 'mp', tmp_path / f'{tag}_mp{i}.json', args,
                            process_id=i, port=port, program=program) for i in (0, 1)}
  procs['sp'] = launch(tmp_path / 'sp', tmp_path / f'{tag}_sp.json', args, devices=2,
                       program=program)
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
      config, create_model(config), optim.get_optimizer(config), data_shape, mesh))
  # With target shardings, as train.py and restore.py restore: Orbax then reshards the
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
  """Tiny NCSN++ on digits: each process reads its own rows of the real data, flips included;
  then --mode inpaint, whose source images are each process's rows of the test split."""
  config_path = check_pair(tmp_path, image=True)
  records = run_both(tmp_path, 'inpaint', ['--config', str(config_path), '--mode', 'inpaint',
                                           '--config.sampling.num_images=4'])
  name = f'inpaint_half_euler_maruyama_none_ckpt{N_ITERS}'
  a, b = (np.load(tmp_path / w / 'samples' / f'{name}.npz') for w in ('mp', 'sp'))
  assert a['result'].shape == (4, 8, 8, 1)                      # both processes' images
  np.testing.assert_array_equal(a['original'], b['original'])   # the same 4 test images
  np.testing.assert_allclose(a['result'], b['result'], rtol=1e-4, atol=1e-5)
  assert f'samples/{name}.png' in records['mp0']
  assert records['mp1'] == [], records['mp1']


@pytest.mark.slow
def test_evaluation_modes_two_processes_match_two_devices(tmp_path):
  """--mode likelihood, eval, dmcmc and dsb as 2 processes: each result is gathered once,
  written once by process 0, and equals the 2-device run's (the same global batches and
  per-row random draws for any process count: Dataset.iterate, DSB's endpoints)."""
  pre = tmp_path / 'pre'                 # read-only inputs, trained here on one device
  config = dmcmc_config(pre)
  train.train_and_evaluate(config, config.dmcmc.score_workdir)
  train.train_and_evaluate(dmcmc_run.classifier_config(config), config.dmcmc.classifier_workdir)
  train.train_and_evaluate(likelihood_config(), str(pre / 'score'))
  for run in ('mp', 'sp'):
    shutil.copytree(pre / 'score' / 'checkpoints', tmp_path / run / 'score' / 'checkpoints')
  records = run_both(tmp_path, 'modes', [str(pre)], program=MODES_DRIVER)

  mp, sp = tmp_path / 'mp', tmp_path / 'sp'
  # Same reasoning as the training test: only the transport of a cross-device sum can
  # differ, a float32 rounding or so per reduction (measured: equal to the last bit).
  for name, key in (('likelihood.json', 'bpd'), ('ckpt_2.json', 'test_loss')):
    a, b = (json.load(open(w / 'score' / 'eval' / name)) for w in (mp, sp))
    np.testing.assert_allclose(a[key], b[key], rtol=1e-5)
  assert json.load(open(mp / 'score' / 'eval' / 'likelihood.json'))['num_images'] == 3 * 64
  shards = {w: np.concatenate([np.load(w / 'score' / 'eval' / 'ckpt_2_shards' / f'shard_0000{k}.npz')
                               ['samples'] for k in range(3)]) for w in (mp, sp)}
  assert shards[mp].shape == (10, 2)
  np.testing.assert_allclose(shards[mp], shards[sp], rtol=1e-4, atol=1e-5)   # as dmcmc's below
  a, b = (json.load(open(w / 'score' / 'eval' / 'ckpt_2.json')) for w in (mp, sp))
  np.testing.assert_allclose(a['sliced_wasserstein'], b['sliced_wasserstein'], rtol=1e-4)
  x = {w: np.load(w / 'dmcmc' / 'dmcmc' / 'samples.npz')['samples'] for w in (mp, sp)}
  assert x[mp].shape == (config.dmcmc.num_outputs, 2)          # every process's chains
  np.testing.assert_allclose(x[mp], x[sp], rtol=1e-4, atol=1e-5)
  for key in ('samples', 'forward'):                            # both directions, 64 each
    a, b = (np.load(w / 'dsb' / 'dsb' / 'samples' / 'iter_2.npz')[key] for w in (mp, sp))
    assert a.shape == (64, 2)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
  a, b = (json.load(open(w / 'dsb' / 'dsb' / 'metrics.json')) for w in (mp, sp))
  np.testing.assert_allclose([h['loss'] for h in a['halves']], [h['loss'] for h in b['halves']],
                             rtol=1e-5)
  np.testing.assert_allclose([i['sw_data'] for i in a['iterations']],
                             [i['sw_data'] for i in b['iterations']], rtol=1e-4)

  expected = {'score/eval/likelihood.json', 'score/eval/ckpt_2.json',
              'dmcmc/dmcmc/samples.npz', 'dmcmc/dmcmc/samples.png', 'dsb/dsb/metrics.json',
              'dsb/dsb/samples/iter_2.npz'}
  assert expected <= set(records['mp0']), records['mp0']
  # Process 1 writes only its shard of DSB's Orbax checkpoints.
  outside = [p for p in records['mp1'] if 'checkpoints' not in p.split(os.sep)]
  assert outside == [], outside
