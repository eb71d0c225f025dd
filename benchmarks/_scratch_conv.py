"""Each 3x3 convolution of DDPM++ (nf 32) alone: XLA against torch, forward and both gradients.

    python benchmarks/conv_vs_torch.py --ref_python /work/side/refenv/bin/python \
        --batch 64 --out benchmarks/results/conv_vs_torch_b64.json

For the shapes of the network's levels (H = W, C_in -> C_out), times the forward
convolution, its input gradient and its weight gradient, each on its own: XLA's
(lax.conv_general_dilated and its VJPs, jitted, NHWC) in this process, then torch's
(conv2d and aten.convolution_backward with one output requested, NCHW, 2 threads) in a
subprocess under --ref_python, then XLA again, so that a change of machine load shows as
a difference between the two XLA passes. GFLOP/s = 2 B H W 9 C_in C_out / seconds.
Whether the train step's gap to the reference lies in its convolutions or elsewhere:
docs/performance.md.
"""
import argparse
import json
import os
import subprocess
import sys
import time

SHAPES = [(32, 3, 32), (32, 32, 3), (32, 32, 32)]
KINDS = ('forward', 'input_grad', 'weight_grad')


def _median_ms(fn, sync, windows=5, calls=5):
  sync(fn())
  samples = []
  for _ in range(windows):
    tic = time.perf_counter()
    for _ in range(calls):
      r = fn()
    sync(r)
    samples.append((time.perf_counter() - tic) / calls)
  return sorted(samples)[len(samples) // 2] * 1e3


def time_xla(batch):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  import xla_cpu  # noqa: F401  (before JAX starts: XLA:CPU flags)
  import jax
  import numpy as np
  dn = ('NHWC', 'HWIO', 'NHWC')

  def conv(x, w):
    return jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME', dimension_numbers=dn)

  fwd = jax.jit(conv)
  dx = jax.jit(lambda x, w, g: jax.vjp(lambda x: conv(x, w), x)[1](g)[0])
  dw = jax.jit(lambda x, w, g: jax.vjp(lambda w: conv(x, w), w)[1](g)[0])
  rng, out = np.random.default_rng(0), {}
  for h, ci, co in SHAPES:
    x = jax.numpy.asarray(rng.normal(size=(batch, h, h, ci)).astype(np.float32))
    w = jax.numpy.asarray(rng.normal(size=(3, 3, ci, co)).astype(np.float32) * 0.1)
    g = jax.numpy.asarray(rng.normal(size=(batch, h, h, co)).astype(np.float32))
    fns = (lambda: fwd(x, w), lambda: dx(x, w, g), lambda: dw(x, w, g))
    out[f'{h}x{h}x{ci}->{co}'] = {k: _median_ms(f, jax.block_until_ready)
                                  for k, f in zip(KINDS, fns)}
  return out


def time_torch(batch, threads):
  import torch
  torch.set_num_threads(threads)
  backward = torch.ops.aten.convolution_backward
  out = {}
  for h, ci, co in SHAPES:
    x, g = torch.randn(batch, ci, h, h), torch.randn(batch, co, h, h)
    w = torch.randn(co, ci, 3, 3) * 0.1

    def grad(which):
      return lambda: backward(g, x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
                              [which == 0, which == 1, False])[which]

    def fwd():
      with torch.no_grad():
        return torch.nn.functional.conv2d(x, w, padding=1)

    out[f'{h}x{h}x{ci}->{co}'] = {k: _median_ms(f, lambda r: None)
                                  for k, f in zip(KINDS, (fwd, grad(0), grad(1)))}
  return out


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--ref_python', required=True, help='a python with torch (the reference venv)')
  p.add_argument('--batch', type=int, default=64)
  p.add_argument('--threads', type=int, default=2, help="torch's threads")
  p.add_argument('--torch_worker', action='store_true', help=argparse.SUPPRESS)
  p.add_argument('--out', default=None)
  args = p.parse_args()
  if args.torch_worker:
    print(json.dumps(time_torch(args.batch, args.threads)))
    return
  load = [os.getloadavg()[0]]
  xla_first = time_xla(args.batch)
  load.append(os.getloadavg()[0])
  done = subprocess.run([args.ref_python, os.path.abspath(__file__), '--torch_worker',
                         '--ref_python', args.ref_python, f'--batch={args.batch}',
                         f'--threads={args.threads}'],
                        capture_output=True, text=True, check=True,
                        env=dict(os.environ, OMP_NUM_THREADS=str(args.threads)))
  torch_ms = json.loads(done.stdout.strip().splitlines()[-1])
  load.append(os.getloadavg()[0])
  xla_again = time_xla(args.batch)   # jit caches: the same executables, timed again
  load.append(os.getloadavg()[0])
  rows, totals = [], {'xla': {k: 0. for k in KINDS}, 'torch': {k: 0. for k in KINDS}}
  for (h, ci, co), key in zip(SHAPES, xla_first):
    flop = 2. * args.batch * h * h * 9 * ci * co
    row = {'shape': key}
    for k in KINDS:
      xla_ms = (xla_first[key][k] + xla_again[key][k]) / 2
      row[k] = {'xla_ms': round(xla_ms, 3), 'xla_ms_both_passes': [xla_first[key][k],
                                                                   xla_again[key][k]],
                'torch_ms': round(torch_ms[key][k], 3),
                'xla_gflops': round(flop / xla_ms / 1e6, 1),
                'torch_gflops': round(flop / torch_ms[key][k] / 1e6, 1)}
      totals['xla'][k] += xla_ms
      totals['torch'][k] += torch_ms[key][k]
    rows.append(row)
  result = {'benchmark': 'conv_vs_torch', 'batch': args.batch, 'torch_threads': args.threads,
            'load_average_1min_at_each_pass': load, 'rows': rows,
            'sum_over_shapes_ms': totals,
            'note': 'xla_ms is the mean of two passes, one before and one after torch'}
  print(json.dumps(result, indent=1))
  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
      json.dump(result, f, indent=1)


if __name__ == '__main__':
  main()
