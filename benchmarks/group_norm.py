"""Interleaved A/B: flax.linen.GroupNorm against models/group_norm.py (swish, GroupNorm, swish).

    python benchmarks/group_norm.py --out benchmarks/results/group_norm.json

Both variants are timed alternately in one process (--windows windows of --calls
calls each, medians), forward only and value + gradients (input, scale, bias), at
the DDPM++ / NCSN++ (nf 32) activation shapes. Each variant's outputs are checked
against Flax's (max relative error) before timing.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import xla_cpu  # noqa: E402,F401  (first: XLA:CPU flags must be set before JAX starts)

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from models.group_norm import group_norm  # noqa: E402

SHAPES = [(16, 32, 32, 64), (16, 32, 32, 128), (16, 16, 16, 64), (64, 32, 32, 64)]


def variants(groups):
  norm = nn.GroupNorm(num_groups=groups, epsilon=1e-6)
  return {
      'flax': lambda x, s, b: norm.apply({'params': {'scale': s, 'bias': b}}, x),
      'ours': lambda x, s, b: group_norm(x, s, b, groups, 1e-6),
  }


def bench_shape(shape, windows, calls):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(1., 2., shape).astype(np.float32))
  cot = jnp.asarray(rng.normal(size=shape).astype(np.float32))
  scale = jnp.asarray(rng.normal(1., .3, shape[-1]).astype(np.float32))
  bias = jnp.asarray(rng.normal(0., .3, shape[-1]).astype(np.float32))
  fns = {}
  for name, norm in variants(min(shape[-1] // 4, 32)).items():
    block = lambda x, s, b, norm=norm: jax.nn.silu(norm(jax.nn.silu(x), s, b))  # noqa: E731
    fns[(name, 'forward')] = jax.jit(block)
    fns[(name, 'value_and_grad')] = jax.jit(jax.value_and_grad(
        lambda x, s, b, block=block: jnp.sum(block(x, s, b) * cot), argnums=(0, 1, 2)))
  errors = {}
  for what in ('forward', 'value_and_grad'):
    ref = jax.tree.leaves(fns[('flax', what)](x, scale, bias))
    out = jax.tree.leaves(fns[('ours', what)](x, scale, bias))
    errors[what] = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b))) for a, b in zip(out, ref))
  times = {key: [] for key in fns}
  for _ in range(windows):
    for key, f in fns.items():
      tic = time.perf_counter()
      for _ in range(calls):
        out = f(x, scale, bias)
      jax.block_until_ready(out)
      times[key].append((time.perf_counter() - tic) / calls)
  rows = []
  for what in ('forward', 'value_and_grad'):
    flax_s, ours_s = (float(np.median(times[(n, what)])) for n in ('flax', 'ours'))
    rows.append({'shape': list(shape), 'what': what, 'flax_ms': 1e3 * flax_s, 'ours_ms': 1e3 * ours_s,
                 'speedup': flax_s / ours_s, 'max_rel_error_vs_flax': errors[what],
                 'flax_all_ms': [1e3 * t for t in times[('flax', what)]],
                 'ours_all_ms': [1e3 * t for t in times[('ours', what)]]})
  return rows


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--windows', type=int, default=9)
  p.add_argument('--calls', type=int, default=10)
  p.add_argument('--out', default=None)
  args = p.parse_args()
  load_start = os.getloadavg()
  rows = [r for shape in SHAPES for r in bench_shape(shape, args.windows, args.calls)]
  result = {'benchmark': 'group_norm', 'date_utc': time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime()),
            'backend': jax.default_backend(), 'xla_flags': os.environ.get('XLA_FLAGS', ''),
            'windows': args.windows, 'calls_per_window': args.calls,
            'load_average_start': load_start, 'load_average_end': os.getloadavg(), 'rows': rows}
  for r in rows:
    print(f"{str(r['shape']):20s} {r['what']:15s} flax {r['flax_ms']:7.2f} ms  ours {r['ours_ms']:7.2f} ms"
          f"  x{r['speedup']:.2f}  err {r['max_rel_error_vs_flax']:.1e}")
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(result, f, indent=1)


if __name__ == '__main__':
  main()
