"""Interleaved A/B: a train step (or forward pass) with and without one CPU change.

    python benchmarks/weight_grad.py --model ddpmpp --batch 16 \
        --out benchmarks/results/weight_grad_ddpmpp_b16.json
    python benchmarks/weight_grad.py --change dropout --batch 16 \
        --out benchmarks/results/dropout_layout_ddpmpp_b16.json
    python benchmarks/weight_grad.py --change materialize --batch 16 \
        --out benchmarks/results/materialize_ddpmpp_b16.json
    python benchmarks/weight_grad.py --model ncsnv2 --change pooling --batch 16 \
        --out benchmarks/results/pooling_ncsnv2_b16.json

Builds the side-by-side benchmark's train step (benchmarks/versus_reference.py's row:
nf 32, ch_mult (1, 2, 2), 2 res blocks, 32x32x3) twice in one process: as the models
are ("weight_grad") and with `weight_grad.dense` / `weight_grad.conv_general_dilated`
swapped back to `jnp.tensordot` / `lax.conv_general_dilated` at trace time ("plain").
Both start from the same state and batch, so their first losses must be equal; then
--windows windows of steps, alternating, in ABBA order (an earlier fixed order gave the
variant that ran first in each window a 5-10% handicap), medians. `--kind forward` times
one score evaluation instead. The difference is only in how XLA lays out the weight
gradients (models/weight_grad.py explains why). With `--change dropout` the two steps
differ only in the dropout mask's threefry layout (`layers.dropout` against flax's
`nn.Dropout` as is); with `--change materialize`, only in whether the residual sums go
through `weight_grad.materialize`; `--change both` swaps all three ops of weight_grad.py.
With `--change pooling` (RefineNets only), only in whether CRP's 5x5 pools run as one 2-D
window or as two 1-D ones (models/pooling.py). `--model ncsn` / `ncsnv2` (not rows
of the side-by-side benchmark) are the CIFAR-10 RefineNets at nf 32 (benchmarks/
train_step.py's small sweep entries), whose undilated convs and residual sums use the same
ops. Results: docs/performance.md.
"""
import argparse
import contextlib
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
import xla_cpu  # noqa: E402,F401  (first: XLA:CPU flags must be set before JAX starts)

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import numpy as np  # noqa: E402

import io_utils  # noqa: E402
import versus_reference  # noqa: E402
import vs_reference_ours  # noqa: E402
from models import layers, weight_grad  # noqa: E402
from models.pooling import one_window_pools  # noqa: E402


@contextlib.contextmanager
def flax_dropout():
  """Trace with flax's nn.Dropout as is (JAX's default threefry layout)."""
  saved = layers.dropout
  layers.dropout = lambda rate, x, train: nn.Dropout(rate)(x, deterministic=not train)
  try:
    yield
  finally:
    layers.dropout = saved


# RefineNets: (config module, overrides), as benchmarks/train_step.py's small sweep.
REFINENETS = {'ncsn': ('configs.ncsn.cifar10_ncsn_discrete', {'model.nf': 32}),
              'ncsnv2': ('configs.ncsnv2.cifar10_ncsnv2_64_discrete', {'model.nf': 32})}


def bench_row(model, kind):
  """The train-step (or forward) row that vs_reference_ours.Ours builds for `model`."""
  if model in REFINENETS:
    config, overrides = REFINENETS[model]
    return {'kind': kind, 'ours_config': config, 'model_overrides': overrides}
  return next(r for r in versus_reference.all_rows()
              if r['model'] == model and r['kind'] == kind)


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--model', default='ddpmpp', choices=['ddpmpp', 'ncsnpp', *REFINENETS])
  p.add_argument('--kind', default='train', choices=['train', 'forward'],
                 help='time the train step or one score evaluation (t = 0.5)')
  p.add_argument('--batch', type=int, default=16)
  p.add_argument('--windows', type=int, default=10)
  p.add_argument('--change', default='weight_grad',
                 choices=['weight_grad', 'dropout', 'materialize', 'both', 'pooling'])
  p.add_argument('--order', default='plain,change',
                 help='build order (the timing order alternates every window)')
  p.add_argument('--out', default=None)
  args = p.parse_args()
  row = bench_row(args.model, args.kind)
  steps = {}
  plain = {'weight_grad': lambda: weight_grad.plain_lax_ops(('dense', 'conv_general_dilated')),
           'dropout': flax_dropout,
           'materialize': lambda: weight_grad.plain_lax_ops(('materialize',)),
           'both': weight_grad.plain_lax_ops,
           'pooling': one_window_pools}[args.change]
  contexts = {args.change: contextlib.nullcontext, 'plain': plain}
  for name in args.order.replace('change', args.change).split(','):
    ctx = contexts[name]
    ours = vs_reference_ours.Ours()
    with ctx():
      ours.setup({**row, 'batch': args.batch, 'id': name})
    steps[name] = ours.rows[name]
  first = {name: float(run()) for name, run in steps.items()}
  calls = max(1, 64 // args.batch)
  times = {name: [] for name in steps}
  cpu = {name: [] for name in steps}   # CPU seconds: the work done, less noisy than wall time
  load_before = os.getloadavg()
  for w in range(args.windows):
    # ABBA: the order flips every window, so that neither side always runs first.
    for name, run in (list(steps.items()) if w % 2 == 0 else list(steps.items())[::-1]):
      tic, cpu_tic = time.perf_counter(), time.process_time()
      for _ in range(calls):
        run()
      times[name].append((time.perf_counter() - tic) / calls)
      cpu[name].append((time.process_time() - cpu_tic) / calls)
    print(f'window {w + 1}/{args.windows}: ' + ', '.join(
        f'{n} {t[-1]:.3f} s' for n, t in times.items()), file=sys.stderr, flush=True)
  med = {name: float(np.median(t)) for name, t in times.items()}
  result = {
      'benchmark': 'weight_grad', 'change': args.change, 'model': args.model, 'kind': args.kind,
      'batch': args.batch,
      'order': args.order, 'backend': jax.default_backend(),
      'xla_flags': os.environ.get('XLA_FLAGS', ''),
      'ld_preload': os.environ.get('LD_PRELOAD', ''),
      'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
      'load_average_before': load_before, 'load_average_after': os.getloadavg(),
      'first_loss': first,   # the first call's value: the loss, or the mean score (forward)
      'calls_per_window': calls,
      'seconds_per_step_all': times, 'seconds_per_step_median': med,
      'speedup_plain_over_change': med['plain'] / med[args.change],
      'cpu_seconds_per_step_median': {name: float(np.median(t)) for name, t in cpu.items()},
      'windows_change_faster': int(sum(
          a < b for a, b in zip(times[args.change], times['plain']))),
  }
  print(json.dumps(result, indent=1))
  if args.out:
    io_utils.write_json(args.out, result)


if __name__ == '__main__':
  main()
