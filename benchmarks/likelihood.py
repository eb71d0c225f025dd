"""Bits/dim throughput: seconds per batch, NFE and seconds per NFE at two tolerances.

    python benchmarks/likelihood.py --config configs/vp/digits_ddpmpp_continuous.py \
        --batch_size 16 --workdir runs/demo --out benchmarks/results/likelihood_digits.json

It times `evaluate.make_bpd_fn` (the jitted PF-ODE solve of `--mode likelihood`:
dequantization, Hutchinson divergence, bits/dim) on the first batch of
`eval.bpd_dataset`, at rtol = atol = 1e-5 and 1e-3. The params are the EMA params
of the newest checkpoint in --workdir, or the random initialisation without it
(the JSON says which: a near-untrained score makes the ODE easier, so fewer NFE).
Each tolerance is compiled once, then run --runs times with the same key; the
median is reported.
"""
import copy
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import xla_cpu  # noqa: E402,F401  (first: XLA:CPU flags must be set before JAX starts)

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

import evaluate  # noqa: E402
import io_utils  # noqa: E402
import parallel  # noqa: E402
import restore  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
flags.DEFINE_integer('batch_size', None, 'Global batch size (default: eval.batch_size).')
flags.DEFINE_string('workdir', None, 'Take the newest checkpoint\'s EMA params from here '
                    '(default: random initialisation).')
flags.DEFINE_integer('runs', 5, 'Timed runs per tolerance; the median is reported.')
flags.DEFINE_multi_float('tol', [1e-5, 1e-3], 'rtol = atol values to time.')
flags.DEFINE_string('out', None, 'Write the JSON here as well as to stdout.')
flags.mark_flag_as_required('config')


def main(_):
  config = FLAGS.config
  batch = FLAGS.batch_size or config.eval.batch_size
  config.eval.batch_size = batch
  evaluate.check_eval_config(config)
  ds, quant = evaluate.bpd_data(config)
  if FLAGS.workdir:
    run = restore.restore_run(config, FLAGS.workdir, shape=ds.data_shape)
    source = f'checkpoint step {run.step} of {FLAGS.workdir} (EMA)'
  else:
    run = restore.fresh_run(config, shape=ds.data_shape)
    source = 'random initialisation'
  sde, model, mesh, params = run.sde, run.model, run.mesh, run.ema_params
  x, _ = next(ds.iterate(batch))
  x = parallel.global_batch(x, mesh)
  key = evaluate.batch_key(config.seed, 0, 0)

  rows = []
  for tol in FLAGS.tol:
    cfg = copy.deepcopy(config)
    cfg.eval.rtol = cfg.eval.atol = tol
    tic = time.perf_counter()
    compiled = evaluate.make_bpd_fn(cfg, sde, model, mesh, quant).lower(params, key, x).compile()
    compile_s = time.perf_counter() - tic
    times = []
    for _ in range(FLAGS.runs):
      tic = time.perf_counter()
      bpd, nfe = jax.block_until_ready(compiled(params, key, x))
      times.append(time.perf_counter() - tic)
    sec, nfe = float(np.median(times)), int(nfe)
    rows.append({'rtol': tol, 'atol': tol, 'seconds_per_batch': sec, 'seconds_all': times,
                 'nfe': nfe, 'seconds_per_nfe': sec / nfe,
                 'bpd_mean': float(np.mean(parallel.to_host(bpd))), 'compile_seconds': compile_s})
    print(f'rtol=atol={tol:g}: {sec:.3f} s/batch, {nfe} NFE, {sec / nfe * 1e3:.2f} ms/NFE, '
          f'bpd {rows[-1]["bpd_mean"]:.4f}', file=sys.stderr)

  result = {
      'benchmark': 'likelihood',
      'config': config.name or os.path.relpath(config_flags.get_config_filename(FLAGS['config'])),
      'params': source, 'batch_size': batch, 'data_shape': list(ds.data_shape),
      'split': config.eval.bpd_dataset, 'probe': config.eval.probe,
      'ode_method': config.eval.ode_method, 'eps': config.eval.eps,
      'device_count': jax.device_count(), 'device_kind': jax.devices()[0].device_kind,
      'cpu_count': os.cpu_count(), 'runs': FLAGS.runs, 'results': rows,
      'overrides': [a for a in sys.argv[1:] if a.startswith('--config.')],
  }
  print(json.dumps(result, indent=2))
  if FLAGS.out:
    io_utils.write_json(os.path.abspath(FLAGS.out), result)


if __name__ == '__main__':
  app.run(main)
