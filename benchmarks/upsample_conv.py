"""Interleaved A/B: conv3x3 of a nearest-upsampled image, as written vs models/upsample_conv.py.

    python benchmarks/upsample_conv.py --batch 64 --out benchmarks/results/upsample_conv.json

For the DDPM++ (nf 32) up-blocks' shapes (8 -> 16 and 16 -> 32 pixels, 64 channels),
times value only and value + both gradients (through a swish, as in the blocks) of
`conv3x3(naive_upsample(h))` and of `upsample_conv3x3(h)` (four 2x2 convolutions),
alternating in one process (--windows windows of 5 calls, medians), and records their
largest relative difference. Results: docs/performance.md.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import xla_cpu  # noqa: E402,F401  (first: XLA:CPU flags must be set before JAX starts)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import io_utils  # noqa: E402
from models.layers import naive_upsample  # noqa: E402
from models.upsample_conv import upsample_conv3x3  # noqa: E402

DN = ('NHWC', 'HWIO', 'NHWC')
SHAPES = [(8, 64, 64), (16, 64, 64)]   # (low-resolution H = W, C_in, C_out)


def as_written(h, w):
  return jax.lax.conv_general_dilated(naive_upsample(h), w, (1, 1), 'SAME', dimension_numbers=DN)


def four_convs(h, w):
  return upsample_conv3x3(h, w, (1, 1), 'SAME', dimension_numbers=DN)


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--batch', type=int, default=64)
  p.add_argument('--windows', type=int, default=7)
  p.add_argument('--out', default=None)
  args = p.parse_args()
  rng = np.random.default_rng(0)
  result = {'benchmark': 'upsample_conv', 'batch': args.batch, 'backend': jax.default_backend(),
            'xla_flags': os.environ.get('XLA_FLAGS', ''), 'load_average_before': os.getloadavg(),
            'rows': []}
  for size, cin, cout in SHAPES:
    h = jnp.asarray(rng.normal(size=(args.batch, size, size, cin)).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(3, 3, cin, cout)).astype(np.float32) * 0.1)
    g = jnp.asarray(rng.normal(size=(args.batch, 2 * size, 2 * size, cout)).astype(np.float32))
    fns, outs = {}, {}
    for name, f in (('as_written', as_written), ('four_convs', four_convs)):
      fns[f'{name}_value'] = (jax.jit(f), (h, w))
      fns[f'{name}_value_and_grads'] = (
          jax.jit(lambda h, w, g, f=f: jax.vjp(lambda h, w: f(jax.nn.swish(h), w), h, w)[1](g)),
          (h, w, g))
      outs[name] = [fns[f'{name}_value'][0](h, w), *fns[f'{name}_value_and_grads'][0](h, w, g)]
    rel = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
              for a, b in zip(outs['four_convs'], outs['as_written']))
    times = {k: [] for k in fns}
    for k, (f, a) in fns.items():
      jax.block_until_ready(f(*a))
    for _ in range(args.windows):
      for k, (f, a) in fns.items():   # interleaved: a load change hits both alike
        tic = time.perf_counter()
        for _ in range(5):
          r = f(*a)
        jax.block_until_ready(r)
        times[k].append((time.perf_counter() - tic) / 5)
    row = {'shape': f'{args.batch}x{size}x{size}x{cin} -> {2 * size}x{2 * size}x{cout}',
           'max_relative_difference': rel}
    for k, v in times.items():
      row[f'{k}_ms'] = round(float(np.median(v)) * 1e3, 2)
    for part in ('value', 'value_and_grads'):
      row[f'{part}_speedup'] = row[f'as_written_{part}_ms'] / row[f'four_convs_{part}_ms']
    result['rows'].append(row)
  result['load_average_after'] = os.getloadavg()
  print(json.dumps(result, indent=1))
  if args.out:
    io_utils.write_json(os.path.abspath(args.out), result)


if __name__ == '__main__':
  main()
