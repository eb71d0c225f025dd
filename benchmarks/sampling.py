"""Sampler throughput on a config's model: score evaluations per second and seconds per sample.

    python benchmarks/sampling.py --config configs/vp/digits_ddpmpp_continuous.py \
        --num_steps 100 --batch_size 64 --out benchmarks/results/sampling_digits.json

Each sampler runs through `generate.make_snapshot_sampler` (the jitted, batch-sharded
sampler of `--mode sample`) with the model's initial parameters (speed does not
depend on their values; --workdir uses a checkpoint's EMA params instead, restored by
`restore.restore_run` as every mode restores). The first
call is timed as compile + run; then the median of --repeats runs. A sampler that
makes no sense for the config's SDE (ancestral on sub-VP, NCSN v1 on VP) is
reported as skipped with its one-line error.
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import xla_cpu  # noqa: E402,F401  (first: XLA:CPU flags must be set before JAX starts)

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

import generate  # noqa: E402
import io_utils  # noqa: E402
import restore  # noqa: E402
from errors import ConfigError  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
flags.DEFINE_integer('batch_size', None, 'Global sample batch (default: sampling.batch_size).')
flags.DEFINE_integer('num_steps', None, 'sampling.num_steps for the fixed-step samplers.')
flags.DEFINE_integer('repeats', 3, 'Timed runs after the first; the median is reported.')
flags.DEFINE_string('samplers', '', 'Comma-separated subset of SAMPLERS (default: all).')
flags.DEFINE_string('workdir', None, 'Take EMA params from this workdir\'s checkpoint.')
flags.DEFINE_string('out', None, 'Write the JSON here as well as to stdout.')
flags.mark_flag_as_required('config')

SAMPLERS = {
    'pc:euler_maruyama/none': dict(method='pc', predictor='euler_maruyama', corrector='none'),
    'pc:reverse_diffusion/langevin': dict(method='pc', predictor='reverse_diffusion',
                                          corrector='langevin'),
    'pc:ancestral_sampling/none': dict(method='pc', predictor='ancestral_sampling',
                                       corrector='none'),
    'pc:none/ald': dict(method='pc', predictor='none', corrector='ald'),
    'ald_ncsn': dict(method='ald_ncsn'),
    'ode': dict(method='ode'),
    'edm:heun': dict(method='edm', s_churn=0.),
    'edm:stochastic': dict(method='edm', s_churn=40.),
}


def time_sampler(config, run: restore.Run):
  sample = generate.make_snapshot_sampler(config, run.sde, run.model, run.mesh, run.data_shape)
  params = run.ema_params
  key = jax.random.PRNGKey(0)
  tic = time.time()
  x, nfe = sample(key, params)
  jax.block_until_ready(x)
  first = time.time() - tic
  times = []
  for i in range(FLAGS.repeats):
    tic = time.time()
    x, nfe = sample(jax.random.fold_in(key, i + 1), params)
    jax.block_until_ready(x)
    times.append(time.time() - tic)
  seconds = float(np.median(times))
  batch = config.sampling.batch_size
  return {'nfe': nfe, 'seconds_per_batch': seconds, 'compile_seconds': first - seconds,
          'score_evals_per_s': nfe / seconds, 'example_score_evals_per_s': nfe * batch / seconds,
          'seconds_per_sample': seconds / batch, 'seconds_spread': [min(times), max(times)]}


def main(argv):
  del argv
  config = FLAGS.config
  config.name = config.name or os.path.splitext(os.path.relpath(
      config_flags.get_config_filename(FLAGS['config']), 'configs'))[0]
  if FLAGS.batch_size:
    config.sampling.batch_size = FLAGS.batch_size
  if FLAGS.num_steps:
    config.sampling.num_steps = FLAGS.num_steps
  run = (restore.restore_run(config, FLAGS.workdir) if FLAGS.workdir
         else restore.fresh_run(config))
  names = FLAGS.samplers.split(',') if FLAGS.samplers else list(SAMPLERS)
  results = {}
  for name in names:
    cfg = config.copy_and_resolve_references()
    for field, value in SAMPLERS[name].items():
      setattr(cfg.sampling, field, value)
    try:
      results[name] = time_sampler(cfg, run)
    except ConfigError as e:
      results[name] = {'skipped': str(e)}
    logging.info('%s: %s', name, results[name])
  n_params = sum(p.size for p in jax.tree.leaves(run.ema_params))
  out = {'config': config.get('name') or None, 'sde': type(run.sde).__name__,
         'model': config.model.name, 'params': int(n_params), 'data_shape': list(run.data_shape),
         'batch_size': config.sampling.batch_size,
         'num_steps': config.sampling.num_steps or config.model.num_scales,
         'ode': {'method': config.sampling.ode_method, 'rtol': config.sampling.rtol,
                 'atol': config.sampling.atol},
         'device_count': jax.device_count(), 'device': jax.devices()[0].device_kind,
         'samplers': results}
  print(json.dumps(out, indent=1))
  if FLAGS.out:
    io_utils.write_json(FLAGS.out, out, config)


if __name__ == '__main__':
  app.run(main)
