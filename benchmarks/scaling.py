"""Training throughput on 1 device, 2 simulated devices and 2 processes (JAX distributed runtime).

    python benchmarks/scaling.py --config configs/vp/digits_ddpmpp_continuous.py \
        --n_iters 300 --log_freq 25 --out benchmarks/results/scaling_digits.json

Each setup runs the real `main.py --mode train` loop (data, sharding, the donated
train step, logging) in fresh processes, one after another:

  1dev   one process, one CPU device;
  2dev   one process, two simulated devices (--xla_force_host_platform_device_count=2);
  2proc  two processes on 127.0.0.1 with one device each, joined by
         jax.distributed and JAX's CPU collectives (gloo).

The global batch is the same in every setup. Steps/s are read from the run's
metrics.jsonl (process 0's logged rate per `log_freq` window); the first window
holds the compilation and is dropped, and the median of the rest is reported
with examples/s = steps/s x global batch. On a CPU host the simulated devices
and the processes share the same cores, so the figures show the overhead of
sharding and of cross-process collectives, not a speed-up.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl import app, flags, logging

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETUPS = {'1dev': (1, 1), '2dev': (1, 2), '2proc': (2, 1)}   # name -> (processes, devices each)

FLAGS = flags.FLAGS
flags.DEFINE_string('config', 'configs/vp/digits_ddpmpp_continuous.py', 'Config file.')
flags.DEFINE_multi_string('override', [], 'Extra --config.x=y overrides, e.g. '
                          '--override=--config.model.nf=32.')
flags.DEFINE_integer('n_iters', 300, 'Training steps per setup.')
flags.DEFINE_integer('log_freq', 25, 'Steps per timing window.')
flags.DEFINE_integer('batch_size', None, 'Global batch size (default: the config\'s).')
flags.DEFINE_list('setups', list(SETUPS), f'Which of {list(SETUPS)} to run.')
flags.DEFINE_string('out', None, 'Write the JSON here as well as to stdout.')


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def run_setup(name: str, workdir: str) -> dict:
  """Trains in `workdir` as setup `name`; returns its throughput figures."""
  processes, devices = SETUPS[name]
  args = [sys.executable, 'main.py', '--config', FLAGS.config, '--workdir', workdir,
          '--mode', 'train', f'--config.training.n_iters={FLAGS.n_iters}',
          f'--config.training.log_freq={FLAGS.log_freq}',
          f'--config.training.eval_freq={FLAGS.n_iters}',
          f'--config.training.snapshot_freq={FLAGS.n_iters}',
          f'--config.training.snapshot_freq_for_preemption={FLAGS.n_iters}',
          '--config.training.snapshot_sampling=False', *FLAGS.override]
  if FLAGS.batch_size:
    args.append(f'--config.training.batch_size={FLAGS.batch_size}')
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu', 'PYTHONPATH': REPO,
         'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}'}
  port = free_port()
  procs = []
  tic = time.time()
  for i in range(processes):
    extra = ([] if processes == 1 else
             ['--coordinator_address', f'127.0.0.1:{port}', '--num_processes', str(processes),
              '--process_id', str(i)])
    procs.append(subprocess.Popen(args + extra, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True))
  try:
    outputs = []
    for p in procs:
      out, _ = p.communicate()
      if p.returncode:
        raise RuntimeError(f'{name} failed:\n{out[-3000:]}')
      outputs.append(out)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  wall = time.time() - tic
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    rows = [json.loads(line) for line in f]
  rates = [r['steps_per_sec'] for r in rows if 'steps_per_sec' in r][1:]   # drop the compile
  batch = int(re.search(r'global batch (\d+)', outputs[0]).group(1))   # as train.py logs it
  steps_per_sec = float(np.median(rates))
  return {'setup': name, 'processes': processes, 'devices_per_process': devices,
          'global_batch': batch, 'steps_per_sec': steps_per_sec,
          'steps_per_sec_min_max': [float(np.min(rates)), float(np.max(rates))],
          'examples_per_sec': steps_per_sec * batch, 'windows': len(rates),
          'wall_seconds_incl_startup_and_compile': wall}


def main(argv):
  del argv
  unknown = set(FLAGS.setups) - set(SETUPS)
  if unknown:
    raise app.UsageError(f'--setups: unknown {sorted(unknown)}; valid: {list(SETUPS)}')
  if FLAGS.n_iters < 3 * FLAGS.log_freq:
    raise app.UsageError('--n_iters must be at least 3 x --log_freq (the first window is '
                         'dropped as compilation)')
  results = []
  for name in FLAGS.setups:
    workdir = tempfile.mkdtemp(prefix=f'scaling_{name}_')
    try:
      logging.info('%s: training %d steps', name, FLAGS.n_iters)
      results.append(run_setup(name, workdir))
      logging.info('%s: %.2f steps/s, %.0f examples/s', name, results[-1]['steps_per_sec'],
                   results[-1]['examples_per_sec'])
    finally:
      shutil.rmtree(workdir, ignore_errors=True)
  payload = {'config': FLAGS.config, 'overrides': FLAGS.override, 'n_iters': FLAGS.n_iters,
             'log_freq': FLAGS.log_freq, 'cpu_count': os.cpu_count(),
             'load_average_1min': os.getloadavg()[0], 'results': results}
  text = json.dumps(payload, indent=2)
  print(text)
  if FLAGS.out:
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    with open(FLAGS.out, 'w') as f:
      f.write(text + '\n')


if __name__ == '__main__':
  app.run(main)
