"""Interleaved A/B: pooling as one 2-D window against two 1-D ones (models/pooling.py).

    python benchmarks/pooling.py --out benchmarks/results/pooling_ops.json

Two parts, each in one process with ABBA windows (the order flips every window) and
medians:
- the pools alone, at the shapes of NCSN's CRP blocks (nf 32 at 32x32 and 16x16, batch 16)
  and of the FID Inception's pools (batch 16), forward and forward + gradient;
- the FID Inception's forward pass (`models.inception.FIDInceptionV3`, random weights:
  the speed does not depend on them) on 32x32 images resized to 299, as `metrics.py`
  runs it, with its pools traced both ways.
The RefineNets' train steps are timed by `benchmarks/weight_grad.py --change pooling`.
Results: docs/performance.md.
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import xla_cpu  # noqa: E402,F401  (first: XLA:CPU flags must be set before JAX starts)

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import io_utils  # noqa: E402
from models import inception  # noqa: E402
from models.pooling import one_window_pools, separable_pool  # noqa: E402

# name -> (pool, input shape, window, strides, padding, kwargs)
OPS = {
    'crp_max_32x32x32': (nn.max_pool, (16, 32, 32, 32), (5, 5), (1, 1), 'SAME', {}),
    'crp_max_16x16x64': (nn.max_pool, (16, 16, 16, 64), (5, 5), (1, 1), 'SAME', {}),
    'crp_avg_32x32x32': (nn.avg_pool, (16, 32, 32, 32), (5, 5), (1, 1), 'SAME', {}),
    'crp_avg_16x16x64': (nn.avg_pool, (16, 16, 16, 64), (5, 5), (1, 1), 'SAME', {}),
    'inception_avg_35x35x288': (nn.avg_pool, (16, 35, 35, 288), (3, 3), (1, 1),
                                ((1, 1), (1, 1)), {'count_include_pad': False}),
    'inception_max_s2_35x35x288': (nn.max_pool, (16, 35, 35, 288), (3, 3), (2, 2), 'VALID', {}),
}


def ab(fns, args, windows, calls):
  """{name: median seconds per call} of jitted fns on args, ABBA windows."""
  times = {name: [] for name in fns}
  for f in fns.values():
    jax.block_until_ready(f(*args))
  for w in range(windows):
    for name, f in (list(fns.items()) if w % 2 == 0 else list(fns.items())[::-1]):
      tic = time.perf_counter()
      for _ in range(calls):
        out = f(*args)
      jax.block_until_ready(out)
      times[name].append((time.perf_counter() - tic) / calls)
  return {name: float(np.median(t)) for name, t in times.items()}


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--windows', type=int, default=7)
  p.add_argument('--inception_batch', type=int, default=16)
  p.add_argument('--out', default=None)
  args = p.parse_args()
  load_before = os.getloadavg()
  ops = {}
  for name, (pool, shape, window, strides, padding, kw) in OPS.items():
    x = jax.random.normal(jax.random.PRNGKey(0), shape)
    forms = {'2d': lambda x: pool(x, window, strides=strides, padding=padding, **kw),
             'two_1d': lambda x: separable_pool(pool, x, window, strides, padding, **kw)}
    fns = {}
    for form, f in forms.items():
      fns[f'{form}_forward'] = jax.jit(f)
      fns[f'{form}_value_and_grad'] = jax.jit(jax.value_and_grad(
          lambda x, f=f: jnp.sum(jnp.sin(f(x)))))
    sec = ab(fns, (x,), args.windows, calls=10)
    ops[name] = {'seconds': sec, 'speedup_forward': sec['2d_forward'] / sec['two_1d_forward'],
                 'speedup_value_and_grad': sec['2d_value_and_grad']
                 / sec['two_1d_value_and_grad']}
    print(name, json.dumps(ops[name]), file=sys.stderr, flush=True)

  model = inception.FIDInceptionV3()
  x = jax.random.uniform(jax.random.PRNGKey(0), (args.inception_batch, 32, 32, 3))
  variables = jax.jit(model.init)(jax.random.PRNGKey(1), x[:1])
  two_1d = jax.jit(lambda v, x: model.apply(v, x))
  with one_window_pools():
    two_d = jax.jit(lambda v, x: model.apply(v, x)).lower(variables, x).compile()
  feats = {'2d': two_d(variables, x)[0], 'two_1d': two_1d(variables, x)[0]}
  rel = float(jnp.max(jnp.abs(feats['2d'] - feats['two_1d'])) / jnp.max(jnp.abs(feats['2d'])))
  sec = ab({'2d': two_d, 'two_1d': two_1d}, (variables, x), args.windows, calls=2)
  result = {
      'benchmark': 'pooling', 'backend': jax.default_backend(),
      'xla_flags': os.environ.get('XLA_FLAGS', ''),
      'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
      'load_average_before': load_before, 'load_average_after': os.getloadavg(),
      'windows': args.windows, 'ops': ops,
      'inception_forward': {'batch': args.inception_batch, 'seconds': sec,
                            'speedup': sec['2d'] / sec['two_1d'],
                            'pool3_max_relative_difference': rel},
  }
  print(json.dumps(result, indent=1))
  if args.out:
    io_utils.write_json(args.out, result)


if __name__ == '__main__':
  main()
