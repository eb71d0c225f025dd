"""Where a train step's time goes, per HLO op kind and per network block (this project).

    python benchmarks/profile_ops.py --model ddpmpp --batch 16 --steps 5 \
        --out benchmarks/results/profile_ddpmpp_b16.json

Builds the row's jitted train step as benchmarks/versus_reference.py does, takes
XLA's own FLOP count (`compiled.cost_analysis()`), then traces --steps calls with
`jax.profiler` and sums every HLO instruction's thunk time over all threads
(CPU seconds). Each instruction is mapped, through the compiled HLO text, to
- a kind: conv forward / conv input-gradient / conv weight-gradient, dot,
  fusion (elementwise, reductions: GroupNorm, softmax, optimizer), copy/transpose;
- a block: the Flax module path in its `op_name` metadata (e.g.
  ResnetBlockDDPM_3, AttnBlock_0), forward or backward (`transpose(jvp(...))`).
Convolution FLOPs per kind come from the HLO shapes (2 x output size x window x
input features per group), so each kind's GFLOP/s can be set against the matmul
peak measured by --peak. The reference's per-op table is `vs_reference_torch.py
--profile` (torch.profiler). Results are written up in docs/performance.md.
"""
import argparse
import collections
import glob
import json
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import xla_cpu  # noqa: E402,F401  (first: XLA:CPU flags must be set before JAX starts)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import versus_reference  # noqa: E402
import vs_reference_ours  # noqa: E402

_INSTR = re.compile(r'^\s*(?:ROOT )?%?([\w.\-]+) = (\S+?)\[([\d,]*)\]\S* (\w[\w\-]*)\((.*)$')
_WINDOW = re.compile(r'window=\{size=([\dx]+)')
_LABELS = re.compile(r'dim_labels=(\w+)_(\w+)->(\w+)')
_GROUPS = re.compile(r'feature_group_count=(\d+)')
_OPNAME = re.compile(r'op_name="([^"]*)"')


def _conv_kind_and_flops(rest, out, shapes):
  """Kind and FLOPs of one HLO convolution; `rest` is its text after the opcode."""
  window = [int(w) for w in _WINDOW.search(rest)[1].split('x')] if _WINDOW.search(rest) else [1]
  lhs_labels, _, out_labels = _LABELS.search(rest).groups()
  lhs_dims = shapes[re.search(r'%([\w.\-]+)', rest)[1]]
  groups = int(_GROUPS.search(rest)[1]) if _GROUPS.search(rest) else 1
  cin = lhs_dims[lhs_labels.index('f')] // groups
  flops = 2. * np.prod(out) * np.prod(window) * cin
  out_spatial = np.prod([out[out_labels.index(d)] for d in out_labels if d.isdigit()])
  # XLA canonicalises every convolution to b01f form, so the labels do not tell a weight
  # gradient apart; its shape does: the window spans the activation, the output is a kernel.
  return ('weight-gradient' if np.prod(window) > out_spatial else 'forward/input-gradient'), flops


def parse_hlo(text):
  """name -> {opcode, flops, kind, block} for every instruction of the compiled module.

  A fusion (XLA:CPU wraps convolutions and dots in YNNPACK `__ynn_fusion`s) takes the
  kind and FLOPs of the convolution or dot inside its fused computation.
  """
  shapes, parsed, computation, inner = {}, [], None, {}
  for line in text.splitlines():
    head = re.match(r'^(?:ENTRY )?%([\w.\-]+) .*\{$', line)
    if head:
      computation = head[1]
    m = _INSTR.match(line)
    if m:
      shapes[m[1]] = [int(d) for d in m[3].split(',') if d]
      parsed.append((computation,) + m.groups())
  for computation, name, _, out_dims, opcode, rest in parsed:
    if opcode == 'convolution':
      out = [int(d) for d in out_dims.split(',') if d]
      inner.setdefault(computation, []).append(('conv',) + _conv_kind_and_flops(rest, out, shapes))
    elif opcode == 'dot':
      inner.setdefault(computation, []).append(('dot', 'matmul', 0.))
  info = {}
  for computation, name, _, out_dims, opcode, rest in parsed:
    if computation and computation.startswith(('fused_computation', 'wrapped_')) and \
        opcode not in ('fusion',):
      continue   # instructions inside fusions are not run (or traced) on their own
    op_name = (_OPNAME.search(rest) or [None, ''])[1]
    backward = 'transpose(' in op_name
    blocks = re.findall(r'([A-Z]\w*_\d+)', op_name)
    block = '/'.join(b for b in blocks if not b.startswith(('Conv_', 'NIN_', 'Dense_',
                                                          'GroupNorm_', 'Dropout_')))
    block = ('backward ' if backward else 'forward ') + (block or 'outside the network')
    calls = re.search(r'calls=%([\w.\-]+)', rest)
    contents = inner.get(calls[1], []) if calls else []
    if opcode == 'convolution':
      out = [int(d) for d in out_dims.split(',') if d]
      contents = [('conv',) + _conv_kind_and_flops(rest, out, shapes)]
    flops = sum(c[2] for c in contents)
    if any(c[0] == 'conv' for c in contents):
      sub = next(c[1] for c in contents if c[0] == 'conv')
      kind = ('conv weight-gradient' if sub == 'weight-gradient' else
              'conv input-gradient' if backward else 'conv forward')
    elif contents or opcode == 'dot':
      kind = 'dot (matmul: dense, NIN, attention)'
    elif opcode in ('copy', 'transpose') or 'copy' in name or 'transpose' in name:
      kind = 'copy / transpose (layout changes)'
    elif opcode == 'fusion':
      kind = ('reduction fusion (GroupNorm stats, softmax, sums)' if 'reduce' in name
              else 'elementwise fusion (activations, GroupNorm apply, optimizer)')
    else:
      kind = opcode
    info[name] = {'opcode': opcode, 'flops': flops, 'kind': kind, 'block': block}
  return info


def matmul_peak(threads_note=''):
  """GFLOP/s of a large f32 matmul (1024^3) on this backend, median of 5."""
  a = jnp.ones((1024, 1024), jnp.float32)
  f = jax.jit(lambda a: a @ a)
  f(a).block_until_ready()
  times = []
  for _ in range(5):
    tic = time.perf_counter()
    for _ in range(5):
      r = f(a)
    r.block_until_ready()
    times.append((time.perf_counter() - tic) / 5)
  return 2 * 1024 ** 3 / float(np.median(times)) / 1e9


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--model', default='ddpmpp', choices=list(versus_reference.MODELS))
  p.add_argument('--batch', type=int, default=16)
  p.add_argument('--steps', type=int, default=5)
  p.add_argument('--kind', default='train', choices=['train', 'forward'])
  p.add_argument('--peak', action='store_true', help='also measure the matmul peak')
  p.add_argument('--top', type=int, default=25)
  p.add_argument('--out', default=None)
  args = p.parse_args()

  row = next(r for r in versus_reference.all_rows()
             if r['model'] == args.model and r['kind'] == args.kind)
  row = {**row, 'batch': args.batch, 'id': 'profile'}
  ours = vs_reference_ours.Ours()
  ours.setup(row)
  run = ours.rows['profile']
  run()
  compiled = ours.compiled['profile']
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  info = parse_hlo(compiled.as_text())

  trace_dir = tempfile.mkdtemp(prefix='profile_ops_')
  jax.profiler.start_trace(trace_dir)
  tic, cpu_tic = time.perf_counter(), time.process_time()
  for _ in range(args.steps):
    run()
  wall = (time.perf_counter() - tic) / args.steps
  cpu = (time.process_time() - cpu_tic) / args.steps
  jax.profiler.stop_trace()
  path = glob.glob(os.path.join(trace_dir, '**', '*.xplane.pb'), recursive=True)[-1]
  data = jax.profiler.ProfileData.from_file(path)

  per_instr = collections.Counter()
  for plane in data.planes:
    if plane.name != '/host:CPU':
      continue
    for line in plane.lines:
      for ev in line.events:
        if ev.name in info:
          per_instr[ev.name] += ev.duration_ns * 1e-9 / args.steps

  def table(key):
    secs, flops = collections.Counter(), collections.Counter()
    for name, s in per_instr.items():
      secs[info[name][key]] += s
      flops[info[name][key]] += info[name]['flops']
    total = sum(secs.values())
    return [{key: k, 'op_seconds': s, 'share': s / total,
             'gflop': flops[k] / 1e9, 'gflops_per_op_second': flops[k] / s / 1e9 if s else 0.}
            for k, s in secs.most_common(args.top)]

  xla_flops = float(cost.get('flops', 0.)) if cost else 0.
  result = {
      'benchmark': 'profile_ops', 'model': args.model, 'kind': args.kind, 'batch': args.batch,
      'backend': jax.default_backend(), 'xla_flags': os.environ.get('XLA_FLAGS', ''),
      'wall_seconds_per_step': wall, 'cpu_seconds_per_step': cpu, 'cores_busy': cpu / wall,
      'op_seconds_per_step': sum(per_instr.values()),
      'xla_gflop_per_step': xla_flops / 1e9, 'xla_gflops_achieved': xla_flops / wall / 1e9,
      'load_average': os.getloadavg(),
      'by_kind': table('kind'), 'by_block': table('block'),
      'top_instructions': [{'name': n, **info[n], 'op_seconds': s}
                           for n, s in per_instr.most_common(args.top)],
  }
  if args.peak:
    result['matmul_peak_gflops'] = matmul_peak()
  print(json.dumps(result, indent=1))
  if args.out:
    versus_reference.write(args.out, result)


if __name__ == '__main__':
  main()
