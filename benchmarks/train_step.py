"""Train-step throughput: steps/s, examples/s, compile time, peak RSS.

    python benchmarks/train_step.py --config configs/vp/digits_ddpmpp_continuous.py \
        --batch_size 128 --out benchmarks/results/train_step_digits.json

It times the jitted, donated train step of `train.py` (the same function, with
n_jitted_steps=1) on a fixed synthetic batch of the config's data shape, so
neither the data pipeline nor a missing TFDS dataset affects the figure. It
reports the median and spread over --repeats timing windows.
"""
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

import losses  # noqa: E402
import parallel  # noqa: E402
import sde_lib  # noqa: E402
import train  # noqa: E402
from models import create_model  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
flags.DEFINE_integer('batch_size', None, 'Global batch size (default: the config\'s).')
flags.DEFINE_integer('steps', 20, 'Steps per timing window.')
flags.DEFINE_integer('repeats', 5, 'Timing windows; the median is reported.')
flags.DEFINE_string('out', None, 'Write the JSON here as well as to stdout.')
flags.mark_flag_as_required('config')


def data_shape(config):
  if config.model.name == 'mlp':
    return (config.data.dim,)
  return (config.data.image_size, config.data.image_size, config.data.num_channels)


def main(_):
  config = FLAGS.config
  batch = FLAGS.batch_size or config.training.batch_size
  sde, _ = sde_lib.get_sde(config)
  model = create_model(config)
  optimizer = losses.get_optimizer(config)
  mesh = parallel.make_mesh()
  shape = data_shape(config)
  state = train.init_state(config, model, optimizer, shape, mesh)
  n_params = sum(x.size for x in jax.tree.leaves(state.params))
  rep = parallel.replicated(mesh)
  step = jax.jit(losses.get_train_step(config, sde, model, optimizer),
                 in_shardings=(rep, parallel.data_sharding(mesh)), out_shardings=(rep, rep),
                 donate_argnums=0)
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

  windows = []
  for _ in range(FLAGS.repeats):
    tic = time.perf_counter()
    for _ in range(FLAGS.steps):
      state, loss = compiled(state, x)
    jax.block_until_ready(loss)
    windows.append((time.perf_counter() - tic) / FLAGS.steps)
  sec = float(np.median(windows))
  result = {
      'benchmark': 'train_step',
      'config': config.name or os.path.relpath(config_flags.get_config_filename(FLAGS['config'])),
      'model': config.model.name, 'params': int(n_params), 'data_shape': list(shape),
      'batch_size': batch, 'device_count': jax.device_count(),
      'device_kind': jax.devices()[0].device_kind, 'cpu_count': os.cpu_count(),
      'seconds_per_step_median': sec, 'seconds_per_step_all': windows,
      'steps_per_sec': 1. / sec, 'examples_per_sec': batch / sec,
      'compile_seconds': compile_s,
      'xla_flops_per_step': flops, 'achieved_gflops': flops / sec / 1e9,
      'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.,
      'overrides': [a for a in sys.argv[1:] if a.startswith('--config.')],
  }
  text = json.dumps(result, indent=2)
  print(text)
  if FLAGS.out:
    os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    with open(FLAGS.out, 'w') as f:
      f.write(text + '\n')


if __name__ == '__main__':
  app.run(main)
