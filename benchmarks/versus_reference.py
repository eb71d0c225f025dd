"""Side-by-side timing against the reference PyTorch implementation, in one run.

    python benchmarks/versus_reference.py --ref_dir /path/to/score_sde_pytorch \
        --ref_python /path/to/refenv/bin/python --out benchmarks/results/versus_reference.json

Two long-lived worker processes, one per implementation, each in its own
environment: `vs_reference_torch.py` under the reference's Python (torch, the
reference checkout on sys.path) and `vs_reference_ours.py` under this project's.
For every row both workers first build and warm up (compile, first call;
untimed), then the driver alternates timing windows, reference then ours, so
that a change of machine load hits both sides alike. Each window is `reps`
calls; the JSON keeps every window's wall and CPU seconds per call, the medians,
their ratio, NFE where it applies, the load average before and after each row,
versions and the date. Building the reference's environment: docs/performance.md.

Rows (nf 32, ch_mult (1, 2, 2), 2 res blocks, attention at 16, 32x32x3):
DDPM++ (VP) and NCSN++ (VE) continuous: train step at batch 16 and 64 (ours at its
defaults, which on XLA:CPU run the network in 4 parts of 16 at batch 64, and again with
training.network_parts=1, the whole batch at once: the `-whole` rows), forward
at batch 64, PC sampling (reverse diffusion + Langevin, 20 steps = 40 NFE) at
batch 16 (NCSN++ only: 20 steps on VP are degenerate), PF-ODE bits/dim at batch 4 with rtol = atol = 1e-5.

`--device gpu` (or tpu) runs this project on that backend and `--ref_device
cuda` the reference on CUDA (its own upfirdn2d kernels then need nvcc). With
`--threads N` (default 2) the reference uses torch.set_num_threads(N) and XLA:CPU
is limited to N cores by `taskset` of the whole worker, so neither side gets more
cores than the other. `--preload LIB` puts LIB (a malloc library) in both workers' LD_PRELOAD,
and `--glibc_tunables T` puts T in both workers' GLIBC_TUNABLES (e.g. glibc.malloc.hugetlb=1).
The order within a window alternates (reference first in even windows, ours first in odd
ones): in one process the first of two alternated timings can run 5-10% slow.
`--quick` times 1 window of 1 call on a subset (a smoke
test of the whole path, minutes); `--rows` picks rows by id.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import vs_protocol  # noqa: E402

ARCH = {'model.nf': 32, 'model.ch_mult': [1, 2, 2], 'model.num_res_blocks': 2,
        'model.attn_resolutions': [16]}
MODELS = {  # id -> (reference config module, this project's config module)
    'ddpmpp': ('configs.vp.cifar10_ddpmpp_continuous', 'configs.vp.cifar10_ddpmpp_continuous'),
    'ncsnpp': ('configs.ve.cifar10_ncsnpp_continuous', 'configs.ve.cifar10_ncsnpp_continuous'),
}
# (kind, batch, calls per window, extra fields)
ROWS = [
    ('train', 16, 3, {}), ('train', 64, 2, {}), ('forward', 64, 3, {}),
    ('pc', 16, 1, {'num_steps': 20}), ('bpd', 4, 1, {'tol': 1e-5}),
]
QUICK = {'ddpmpp-train-b16', 'ncsnpp-train-b16', 'ddpmpp-forward-b64', 'ncsnpp-pc-b16',
         'ncsnpp-bpd-b4'}


def all_rows():
  rows = []
  for model, (ref_cfg, ours_cfg) in MODELS.items():
    for kind, batch, reps, extra in ROWS:
      if kind == 'pc' and model != 'ncsnpp':
        # 20 reverse-diffusion steps on VP give beta_N = beta_max / 20 = 1, a degenerate
        # step that this project rejects (ConfigError): PC sampling is timed on VE only.
        continue
      rows.append({'id': f'{model}-{kind}-b{batch}', 'model': model, 'kind': kind,
                   'batch': batch, 'reps': reps, 'ref_config': ref_cfg,
                   'ours_config': ours_cfg, 'model_overrides': ARCH, **extra})
      if kind == 'train' and batch == 64:
        # Ours with the network on the whole batch of 64 at once (training.network_parts=1);
        # the row above has our default, 4 parts of 16 on XLA:CPU (the same loss and
        # gradient: train_state.parted_network). The reference runs its batch whole in both.
        rows.append({**rows[-1], 'id': f'{model}-{kind}-b{batch}-whole',
                     'ours_overrides': {'training.network_parts': 1}})
  return rows


class Worker:
  """A worker process speaking vs_protocol."""

  def __init__(self, name, cmd, env=None, cwd=None):
    self.name = name
    self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL if not os.environ.get('VS_DEBUG')
                                 else None, text=True, env=env, cwd=cwd)

  def ask(self, msg):
    self.proc.stdin.write(json.dumps(msg) + '\n')
    self.proc.stdin.flush()
    for line in self.proc.stdout:
      if line.startswith(vs_protocol.PREFIX):
        out = json.loads(line[len(vs_protocol.PREFIX):])
        if 'error' in out:
          raise RuntimeError(f'{self.name} worker: {out["error"]}\n{out["traceback"]}')
        return out
    raise RuntimeError(f'{self.name} worker exited (rc {self.proc.wait()}); rerun with '
                       'VS_DEBUG=1 to see its stderr')

  def close(self):
    try:
      self.proc.stdin.write(json.dumps({'cmd': 'quit'}) + '\n')
      self.proc.stdin.close()
    except OSError:
      pass
    self.proc.wait(timeout=60)


def pinned(cmd, threads):
  """`cmd` restricted to the first `threads` CPUs (Linux taskset), if there are more."""
  if threads and shutil.which('taskset') and (os.cpu_count() or 1) > threads:
    return ['taskset', '-c', f'0-{threads - 1}', *cmd]
  return cmd


def main():
  p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  p.add_argument('--ref_dir', required=True, help='checkout of yang-song/score_sde_pytorch')
  p.add_argument('--ref_python', required=True, help="python of the reference's venv")
  p.add_argument('--python', default=sys.executable, help="this project's python")
  p.add_argument('--device', default='cpu', help='JAX_PLATFORMS for this project: cpu|gpu|tpu')
  p.add_argument('--ref_device', default='cpu', help='torch device of the reference: cpu|cuda')
  p.add_argument('--threads', type=int, default=2, help='cores per side on CPU (0: all)')
  p.add_argument('--windows', type=int, default=3, help='timing windows per side and row')
  p.add_argument('--rows', default='', help='comma-separated row ids (default: all)')
  p.add_argument('--quick', action='store_true', help='1 window of 1 call on a few rows')
  p.add_argument('--out', default=None, help='write the JSON here as well as to stdout')
  p.add_argument('--preload', default='',
                 help='a malloc library (e.g. libtcmalloc_minimal.so.4) put in LD_PRELOAD of '
                      'both workers alike (docs/performance_history.md, allocators)')
  p.add_argument('--glibc_tunables', default='',
                 help='GLIBC_TUNABLES of both workers alike, e.g. glibc.malloc.hugetlb=1 '
                      '(docs/performance.md)')
  args = p.parse_args()

  if not os.path.isfile(os.path.join(args.ref_dir, 'models', 'ncsnpp.py')):
    p.error(f'--ref_dir={args.ref_dir}: no models/ncsnpp.py there; give a checkout of '
            'yang-song/score_sde_pytorch (docs/performance.md)')
  if not os.access(args.ref_python, os.X_OK):
    p.error(f'--ref_python={args.ref_python} is not an executable; give the python of the '
            "reference's venv (docs/performance.md)")
  rows = all_rows()
  if args.rows:
    wanted = set(args.rows.split(','))
    unknown = wanted - {r['id'] for r in rows}
    if unknown:
      p.error(f'--rows: unknown ids {sorted(unknown)}; valid: {[r["id"] for r in rows]}')
    rows = [r for r in rows if r['id'] in wanted]
  elif args.quick:
    rows = [r for r in rows if r['id'] in QUICK]
  windows = 1 if args.quick else args.windows
  if args.quick:
    rows = [{**r, 'reps': 1} for r in rows]

  if args.preload and not os.path.isfile(args.preload):
    p.error(f'--preload={args.preload}: no such file; give the path of the library, e.g. '
            '/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4 (Debian: libtcmalloc-minimal4)')
  cpu = args.device == 'cpu'
  both = {}   # the allocator settings, given to both workers alike
  if args.preload:
    both['LD_PRELOAD'] = args.preload
  if args.glibc_tunables:
    both['GLIBC_TUNABLES'] = args.glibc_tunables
  env = dict(os.environ, JAX_PLATFORMS=args.device, **both)
  ours = Worker('ours', pinned([args.python, os.path.join(HERE, 'vs_reference_ours.py')],
                               args.threads if cpu else 0), env=env, cwd=ROOT)
  ref_env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH',)}
  if args.threads:
    ref_env['OMP_NUM_THREADS'] = str(args.threads)
  ref_env.update(both)
  ref = Worker('reference', pinned([args.ref_python, os.path.join(HERE, 'vs_reference_torch.py'),
                                    os.path.abspath(args.ref_dir), args.ref_device,
                                    str(args.threads)],
                                   args.threads if args.ref_device == 'cpu' else 0), env=ref_env)
  tic = time.time()
  result = {
      'benchmark': 'versus_reference',
      'date_utc': datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
      'host': {'cpu_count': os.cpu_count(), 'machine': platform.machine(),
               'processor': platform.processor(), 'platform': platform.platform()},
      'threads_per_side': args.threads, 'windows': windows, 'quick': args.quick,
      'ld_preload_both_sides': args.preload or None,
      'glibc_tunables_both_sides': args.glibc_tunables or None,
      'order': 'alternating (reference first in even windows)',
      'architecture': ARCH, 'load_average_start': os.getloadavg(),
      'versions': {'reference': ref.ask({'cmd': 'versions'}),
                   'ours': ours.ask({'cmd': 'versions'})},
      'rows': [],
  }
  try:
    for row in rows:
      entry = {k: row[k] for k in ('id', 'model', 'kind', 'batch', 'reps')}
      entry.update({k: row[k] for k in ('num_steps', 'tol', 'ours_overrides') if k in row})
      entry['load_average_before'] = os.getloadavg()
      print(f'{row["id"]}: setting up', file=sys.stderr, flush=True)
      for name, w in (('reference', ref), ('ours', ours)):
        entry[f'{name}_setup'] = w.ask({'cmd': 'setup', 'row': row})
      times = {'reference': [], 'ours': []}
      order = (('reference', ref), ('ours', ours))
      for i in range(windows):
        for name, w in (order if i % 2 == 0 else order[::-1]):
          times[name].append(w.ask({'cmd': 'time', 'id': row['id'], 'reps': row['reps']}))
      for name in times:
        walls = [t['wall'] for t in times[name]]
        cpus = [t['cpu'] for t in times[name]]
        entry[name] = {'seconds_median': statistics.median(walls), 'seconds_all': walls,
                       'cpu_seconds_all': cpus,
                       'cores_busy_median': statistics.median(c / w for c, w in zip(cpus, walls)),
                       'last_result': times[name][-1]['result']}
        last = times[name][-1]['result']
        if isinstance(last, dict) and last.get('nfe'):   # adaptive solvers: NFE may differ
          entry[name]['seconds_per_nfe_median'] = statistics.median(walls) / last['nfe']
      entry['reference_over_ours'] = (entry['reference']['seconds_median']
                                      / entry['ours']['seconds_median'])
      entry['load_average_after'] = os.getloadavg()
      result['rows'].append(entry)
      print(f'{row["id"]}: reference {entry["reference"]["seconds_median"]:.3f} s, ours '
            f'{entry["ours"]["seconds_median"]:.3f} s, ref/ours '
            f'{entry["reference_over_ours"]:.2f}x', file=sys.stderr, flush=True)
      if args.out:   # partial results survive an interrupted run
        write(args.out, result)
  finally:
    ref.close()
    ours.close()
  result['load_average_end'] = os.getloadavg()
  result['total_seconds'] = time.time() - tic
  print(json.dumps(result, indent=1))
  if args.out:
    write(args.out, result)


def write(path, result):
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path + '.tmp', 'w') as f:
    json.dump(result, f, indent=1)
  os.replace(path + '.tmp', path)


if __name__ == '__main__':
  main()
