"""A/B of XLA:CPU settings: YNNPACK's defaults against the project's (xla_cpu.py).

    python benchmarks/xla_cpu_flags.py --out benchmarks/results/xla_cpu_flags.json
    python benchmarks/xla_cpu_flags.py --compare malloc --rounds 3 \
        --out benchmarks/results/xla_cpu_malloc.json
    python benchmarks/xla_cpu_flags.py --compare network_parts --rounds 3 \
        --out benchmarks/results/network_parts.json
    python benchmarks/xla_cpu_flags.py --compare revision --base HEAD~1 --rounds 3 \
        --out benchmarks/results/revision_ab.json

XLA reads its flags once, at start-up, so each setting runs in its own process,
alternating (--rounds rounds). Each process times, with CPU time / wall (how many
of the cores the op kept busy):
- 3x3 convolutions at DDPM++ nf-32 shapes, forward, and a 1024^3 / 4096x64x256 matmul;
- with --steps, the DDPM++ and NCSN++ train step at batch 16 and forward at batch
  64 through benchmarks/train_step.py (nf 32, ch_mult (1, 2, 2), 2 blocks, 32x32x3).
Settings: `ynnpack` = SCORE_XLA_CPU_DEFAULTS=0 (jaxlib's own defaults); `project`
= xla_cpu.FLAG. With --compare malloc: `glibc` = SCORE_CPU_MALLOC=0 (glibc's malloc
defaults, async dispatch) against `project` (xla_cpu.tune_malloc), both without
LD_PRELOAD, on the train steps only (DDPM++ at batch 16 and 64 too), with kernel time
and page faults per step. With --compare network_parts: `whole` =
training.network_parts=1 against `project` (the default, 0: on XLA:CPU the network in parts
of 16 32x32x3 images, train_state.parted_network), train steps at batch 32 and 64, with
peak RSS. With --compare revision: `base` = the code of git revision --base (checked out
into a temporary worktree) against `project` = this working tree, same settings, on the
forward passes at batch 64 and the DDPM++ train step at batch 16 and 64. Results and
conclusions: docs/performance.md.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# name -> {setting: environment (and '_args': extra train_step.py flags, '_cwd': the tree to
# run it from, set by --compare revision)}; ratio first / second
COMPARISONS = {
    'flags': {'ynnpack': {'SCORE_XLA_CPU_DEFAULTS': '0'},
              'project': {'SCORE_XLA_CPU_DEFAULTS': '1'}},
    'malloc': {'glibc': {'SCORE_CPU_MALLOC': '0', 'LD_PRELOAD': ''},
               'project': {'SCORE_CPU_MALLOC': '1', 'LD_PRELOAD': ''}},
    'network_parts': {'whole': {'_args': ['--config.training.network_parts=1']},
                      'project': {'_args': []}},
    'revision': {'base': {}, 'project': {}},
}
CONVS = [(64, 32, 32, 32), (64, 32, 32, 64), (64, 32, 32, 128), (64, 16, 16, 64)]  # B, H, W, C
MATMULS = [(1024, 1024, 1024), (4096, 64, 256)]
_UNET = ['--config.model.nf=32', '--config.model.ch_mult=(1,2,2)', '--config.model.num_res_blocks=2']
STEPS = {'flags': [('ddpmpp', 'train', 16), ('ncsnpp', 'train', 16), ('ddpmpp', 'forward', 64),
                   ('ncsnpp', 'forward', 64)],
         'malloc': [('ddpmpp', 'train', 16), ('ddpmpp', 'train', 64), ('ncsnpp', 'train', 16),
                    ('ddpmpp', 'forward', 64)],
         'network_parts': [('ddpmpp', 'train', 64), ('ncsnpp', 'train', 64),
                           ('ddpmpp', 'train', 32)],
         'revision': [('ddpmpp', 'forward', 64), ('ncsnpp', 'forward', 64),
                      ('ddpmpp', 'train', 16), ('ddpmpp', 'train', 64)]}
CONFIGS = {'ddpmpp': 'configs/vp/cifar10_ddpmpp_continuous.py',
           'ncsnpp': 'configs/ve/cifar10_ncsnpp_continuous.py'}


def _time(f, *args, calls=5, windows=7):
  """Median (wall, CPU) seconds per call."""
  import jax
  jax.block_until_ready(f(*args))
  samples = []
  for _ in range(windows):
    tic, cpu = time.perf_counter(), time.process_time()
    for _ in range(calls):
      out = f(*args)
    jax.block_until_ready(out)
    samples.append(((time.perf_counter() - tic) / calls, (time.process_time() - cpu) / calls))
  return sorted(samples)[windows // 2]


def worker():
  """Times the convolutions and matmuls in this process's setting; prints JSON."""
  sys.path.insert(0, ROOT)
  import xla_cpu  # noqa: F401  (before JAX starts)
  import jax
  import jax.numpy as jnp
  rng = np.random.default_rng(0)
  rows = []
  conv = jax.jit(lambda x, w: jax.lax.conv_general_dilated(
      x, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')))
  for b, h, w, c in CONVS:
    x = jnp.asarray(rng.normal(size=(b, h, w, c)).astype(np.float32))
    k = jnp.asarray(rng.normal(size=(3, 3, c, c)).astype(np.float32))
    wall, cpu = _time(conv, x, k)
    rows.append({'what': f'conv3x3 {b}x{h}x{w}x{c}', 'seconds': wall, 'cores_busy': cpu / wall,
                 'gflops': 2 * b * h * w * 9 * c * c / wall / 1e9})
  matmul = jax.jit(lambda a, b: a @ b)
  for m, k, n in MATMULS:
    a = jnp.asarray(rng.normal(size=(m, k)).astype(np.float32))
    bm = jnp.asarray(rng.normal(size=(k, n)).astype(np.float32))
    wall, cpu = _time(matmul, a, bm, calls=10)
    rows.append({'what': f'matmul {m}x{k}x{n}', 'seconds': wall, 'cores_busy': cpu / wall,
                 'gflops': 2 * m * k * n / wall / 1e9})
  print(json.dumps({'xla_flags': os.environ.get('XLA_FLAGS', ''), 'rows': rows}))


def _row_name(row):
  """'conv3x3 ...' / 'matmul ...' for op rows, 'ddpmpp train b16' for step rows."""
  return f"{row['model']} {row['what']} b{row['batch']}" if 'model' in row else row['what']


def _run(env_setting, args):
  cwd = env_setting.get('_cwd', ROOT)
  env_setting = {k: v for k, v in env_setting.items() if not k.startswith('_')}
  env = {**os.environ, 'XLA_FLAGS': '', 'JAX_ENABLE_COMPILATION_CACHE': 'false', **env_setting}
  out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout
  return json.loads(out[out.index('{'):])


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--compare', default='flags', choices=sorted(COMPARISONS))
  p.add_argument('--rounds', type=int, default=2)
  p.add_argument('--base', default='HEAD', help='with --compare revision: the git revision to '
                 'compare this working tree against')
  p.add_argument('--steps', action=argparse.BooleanOptionalAction, default=True,
                 help='also time the train steps and forward passes (about 6 min more)')
  p.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
  p.add_argument('--out', default=None)
  args = p.parse_args()
  if args.worker:
    return worker()
  settings = COMPARISONS[args.compare]
  result = {'benchmark': 'xla_cpu_flags', 'compare': args.compare, 'date_utc': time.strftime('%Y-%m-%dT%H:%MZ', time.gmtime()),
            'cpu_count': os.cpu_count(), 'load_average_start': os.getloadavg(), 'rounds': []}
  if args.compare == 'revision':
    with tempfile.TemporaryDirectory() as tmp:
      base = os.path.join(tmp, 'base')
      git = lambda *a: subprocess.run(['git', *a], cwd=ROOT, check=True, capture_output=True,  # noqa: E731
                                      text=True).stdout.strip()
      git('worktree', 'add', '--detach', base, args.base)
      try:
        result['revisions'] = {'base': git('rev-parse', args.base),
                               'project': git('rev-parse', 'HEAD') + (
                                   ' + uncommitted changes' if git('status', '--porcelain') else '')}
        settings = {'base': {'_cwd': base}, 'project': {}}
        return _compare(args, settings, result)
      finally:
        git('worktree', 'remove', '--force', base)
  return _compare(args, settings, result)


def _compare(args, settings, result):
  first, second = settings
  for r in range(args.rounds):
    for setting, env in settings.items():
      entry = {'round': r, 'setting': setting, 'ops': {'rows': []} if args.compare != 'flags'
               else _run(env, [sys.executable, __file__, '--worker'])}
      if args.steps:
        entry['steps'] = []
        for model, what, batch in STEPS[args.compare]:
          d = _run(env, [sys.executable, 'benchmarks/train_step.py',
                             f'--config={CONFIGS[model]}', *_UNET, f'--batch_size={batch}',
                             f'--what={what}', '--steps=3', '--repeats=3', *env.get('_args', [])])
          entry['steps'].append({'model': model, 'what': what, 'batch': batch,
                                 'seconds': d['seconds_per_step_median'],
                                 'cores_busy': d['cpu_seconds_per_step_median'] /
                                 d['seconds_per_step_median'],
                                 'sys_seconds': d['sys_seconds_per_step_median'],
                                 'page_faults': d['minor_page_faults_per_step_median'],
                                 'peak_rss_mb': d['peak_rss_mb']})
      result['rounds'].append(entry)
      for row in entry['ops']['rows'] + entry.get('steps', []):
        name = _row_name(row)
        print(f"round {r} {setting:8s} {name:28s} {row['seconds'] * 1e3:8.1f} ms"
              f"  cores {row['cores_busy']:.2f}"
              + (f"  faults {row['page_faults']:.0f}" if 'page_faults' in row else ''), flush=True)
  result['load_average_end'] = os.getloadavg()
  summary = {}   # row -> setting -> median seconds over rounds
  for entry in result['rounds']:
    for row in entry['ops']['rows'] + entry.get('steps', []):
      name = _row_name(row)
      summary.setdefault(name, {}).setdefault(entry['setting'], []).append(row['seconds'])
  result['median_seconds'] = {name: {k: float(np.median(v)) for k, v in by.items()}
                              for name, by in summary.items()}
  for name, by in result['median_seconds'].items():
    print(f"{name:28s} {first} / {second} = {by[first] / by[second]:.2f}")
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(result, f, indent=1)


if __name__ == '__main__':
  main()
