"""Train-step throughput: steps/s, examples/s, compile time, peak RSS.

    python benchmarks/train_step.py --config configs/vp/digits_ddpmpp_continuous.py \
        --batch_size 128 --out benchmarks/results/train_step_digits.json

It times the jitted, donated train step of `train.py` (the same function, with
n_jitted_steps=1) on a fixed synthetic batch of the config's data shape, so
neither the data pipeline nor a missing TFDS dataset affects the figure. It
reports the median and spread over --repeats timing windows. `--what forward`
times one score evaluation (the network's forward pass) instead.

The model zoo sweep runs every model family at a small size and at its
published CIFAR-10 size, each in its own process (its own compile and peak
RSS), and writes one JSON list:

    python benchmarks/train_step.py --sweep --out benchmarks/results/train_step_zoo.json
"""
import json
import os
import resource
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import xla_cpu  # noqa: E402,F401  (first: XLA:CPU flags must be set before JAX starts)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

import io_utils  # noqa: E402
import objectives  # noqa: E402
import optim  # noqa: E402
import parallel  # noqa: E402
import sde_lib  # noqa: E402
import train  # noqa: E402
from models import create_model  # noqa: E402
from models import utils as mutils  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
flags.DEFINE_integer('batch_size', None, 'Global batch size (default: the config\'s).')
flags.DEFINE_integer('steps', 20, 'Steps per timing window.')
flags.DEFINE_integer('repeats', 5, 'Timing windows; the median is reported.')
flags.DEFINE_string('out', None, 'Write the JSON here as well as to stdout.')
flags.DEFINE_enum('what', 'train', ['train', 'forward'], 'Time the train step or one forward pass.')
flags.DEFINE_bool('sweep', False, 'Run SWEEP (each model family, small and published size).')
flags.DEFINE_enum('sweep_size', 'all', ['all', 'small', 'published'], 'Which SWEEP sizes to run.')

# (family, size, config, overrides, batch, steps per window, windows). Small is
# nf = 32 (ch_mult (1, 2, 2), 2 blocks for the U-Nets) at 32x32x3; published is
# the family's CIFAR-10 config as is, at a batch that fits a CPU time budget.
_UNET_SMALL = ['--config.model.nf=32', '--config.model.ch_mult=(1,2,2)',
               '--config.model.num_res_blocks=2']
SWEEP = [
    ('ddpm', 'small', 'configs/vp/cifar10_ddpm_continuous.py', _UNET_SMALL, 16, 3, 3),
    ('ddpm++', 'small', 'configs/vp/cifar10_ddpmpp_continuous.py', _UNET_SMALL, 16, 3, 3),
    ('ncsn++', 'small', 'configs/ve/cifar10_ncsnpp_continuous.py', _UNET_SMALL, 16, 3, 3),
    ('ncsn', 'small', 'configs/ncsn/cifar10_ncsn_discrete.py', ['--config.model.nf=32'], 16, 3, 3),
    ('ncsnv2', 'small', 'configs/ncsnv2/cifar10_ncsnv2_64_discrete.py', ['--config.model.nf=32'],
     16, 3, 3),
    ('ddpm', 'published', 'configs/vp/cifar10_ddpm_continuous.py', [], 2, 1, 3),
    ('ddpm++', 'published', 'configs/vp/cifar10_ddpmpp_continuous.py', [], 2, 1, 3),
    ('ncsn++', 'published', 'configs/ve/cifar10_ncsnpp_continuous.py', [], 2, 1, 3),
    ('ncsn', 'published', 'configs/ncsn/cifar10_ncsn_discrete.py', [], 2, 1, 3),
    ('ncsnv2', 'published', 'configs/ncsnv2/cifar10_ncsnv2_64_discrete.py', [], 2, 1, 3),
]


def run_sweep():
  """Each SWEEP entry in a fresh process; returns the list of their JSON results."""
  results = []
  for family, size, config, overrides, batch, steps, repeats in SWEEP:
    if FLAGS.sweep_size not in ('all', size):
      continue
    cmd = [sys.executable, os.path.abspath(__file__), '--config', config, *overrides,
           f'--batch_size={batch}', f'--steps={steps}', f'--repeats={repeats}']
    logging.info('sweep: %s %s: %s', family, size, ' '.join(cmd[1:]))
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout[done.stdout.index('{'):])
    results.append({'family': family, 'size': size, **result})
    write(results, echo=False)   # partial results survive an interrupted sweep
  return results


def data_shape(config):
  if config.model.name == 'mlp':
    return (config.data.dim,)
  return (config.data.image_size, config.data.image_size, config.data.num_channels)


def main(_):
  if FLAGS.sweep:
    write(run_sweep())
    return
  if FLAGS.config is None:
    raise app.UsageError('--config is required (or --sweep)')
  config = FLAGS.config
  batch = FLAGS.batch_size or config.training.batch_size
  sde, _ = sde_lib.get_sde(config)
  model = create_model(config)
  optimizer = optim.get_optimizer(config)
  mesh = parallel.make_mesh()
  shape = data_shape(config)
  state = train.init_state(config, model, optimizer, shape, mesh)
  n_params = sum(x.size for x in jax.tree.leaves(state.params))
  rep = parallel.replicated(mesh)
  if FLAGS.what == 'train':
    step = jax.jit(objectives.get_train_step(config, sde, model, optimizer),
                   in_shardings=(rep, parallel.data_sharding(mesh)), out_shardings=(rep, rep),
                   donate_argnums=0)
  else:
    # One forward pass: the score at t = 0.5 (the state passes through, so
    # that the timing loop below is the same).
    def forward(state, x):
      score_fn = mutils.score_fn_from_config(config, sde, model, state.params)
      return state, jnp.mean(score_fn(x, jnp.full((x.shape[0],), 0.5)))

    step = jax.jit(forward, in_shardings=(rep, parallel.data_sharding(mesh)),
                   out_shardings=(rep, rep))
  x = np.random.default_rng(0).uniform(-1, 1, (batch,) + shape).astype(np.float32)
  x = parallel.global_batch(x, mesh)

  tic = time.perf_counter()
  compiled = step.lower(state, x).compile()
  compile_s = time.perf_counter() - tic
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  flops = float(cost.get('flops', 0.)) if cost else 0.
  state, loss = compiled(state, x)
  jax.block_until_ready(loss)

  windows, cpu_windows, sys_windows, faults = [], [], [], []
  for _ in range(FLAGS.repeats):
    usage = resource.getrusage(resource.RUSAGE_SELF)
    tic, cpu_tic = time.perf_counter(), time.process_time()
    for _ in range(FLAGS.steps):
      state, loss = compiled(state, x)
    jax.block_until_ready(loss)
    windows.append((time.perf_counter() - tic) / FLAGS.steps)
    cpu_windows.append((time.process_time() - cpu_tic) / FLAGS.steps)
    after = resource.getrusage(resource.RUSAGE_SELF)
    sys_windows.append((after.ru_stime - usage.ru_stime) / FLAGS.steps)
    faults.append((after.ru_minflt - usage.ru_minflt) / FLAGS.steps)
  sec = float(np.median(windows))
  result = {
      'benchmark': 'train_step' if FLAGS.what == 'train' else 'forward',
      'config': config.name or os.path.relpath(config_flags.get_config_filename(FLAGS['config'])),
      'model': config.model.name, 'params': int(n_params), 'data_shape': list(shape),
      'batch_size': batch, 'device_count': jax.device_count(),
      'device_kind': jax.devices()[0].device_kind, 'cpu_count': os.cpu_count(),
      'seconds_per_step_median': sec, 'seconds_per_step_all': windows,
      'steps_per_sec': 1. / sec,
      # CPU seconds of this process per step (all its threads): on a machine
      # shared with other jobs, wall time inflates but this much less.
      'cpu_seconds_per_step_median': float(np.median(cpu_windows)),
      # Kernel time and minor page faults per step: fresh pages that the kernel zeroes,
      # e.g. XLA:CPU's per-call temporary buffer under glibc (docs/performance.md).
      'sys_seconds_per_step_median': float(np.median(sys_windows)),
      'minor_page_faults_per_step_median': float(np.median(faults)),
      'ld_preload': os.environ.get('LD_PRELOAD', ''),
      'glibc_malloc_tuned': xla_cpu.MALLOC_TUNED,   # xla_cpu.tune_malloc
      'load_average_1min': os.getloadavg()[0], 'examples_per_sec': batch / sec,
      'compile_seconds': compile_s,
      'xla_flops_per_step': flops, 'achieved_gflops': flops / sec / 1e9,
      'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.,
      'overrides': [a for a in sys.argv[1:] if a.startswith('--config.')],
  }
  write(result)


def write(result, echo=True):
  if echo:
    print(json.dumps(result, indent=2))
  if FLAGS.out:
    io_utils.write_json(os.path.abspath(FLAGS.out), result)


if __name__ == '__main__':
  app.run(main)
