"""Every issue-17 study, one after another, with each one's wall time: the whole set.

    python studies/run_all.py [--quick] [--root studies/results] [--only ncsn,dsb_digits]

Runs each study as its own process (a fresh JAX, so one study's compilations and memory do
not carry into the next) in the order below, the score-SDE studies sharing one trained-models
directory (<root>/models: sde_samplers trains the VP and VE models that sde_likelihood and
conditional reuse). A full run writes each study's JSON and PNG under <root>/<study>/; --quick
writes under <root>/quick/<study>/ so that it never overwrites a full run's results. Each
study's stdout and stderr go to its run.log; <root>[/quick]/run_all.json records every
study's command, exit status, wall seconds and the load average before and after (the
machine may be shared: a wall time means little without it). A failed study is recorded and
the next one still runs. --only runs the named studies in the order given and updates their
rows of an existing run_all.json, keeping the others' (the whole set's time is the sum).
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# (study, script, extra flags); {models} is the shared score-SDE models directory.
STUDIES = [
    ('sde_samplers', 'studies/sde_samplers.py', ['--models={models}']),
    ('sde_likelihood', 'studies/sde_likelihood.py', ['--models={models}']),
    ('conditional', 'studies/conditional.py', ['--models={models}']),
    ('ncsn', 'studies/ncsn.py', ['--models={models}']),
    ('dmcmc_digits', 'studies/dmcmc_digits.py', []),
    ('dsb_digits', 'studies/dsb_digits.py', []),
]


def main() -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--quick', action='store_true', help="every study's --quick sizes")
  parser.add_argument('--root', default='studies/results', help='results root directory')
  parser.add_argument('--only', default='', help='comma-separated study names (default all)')
  args = parser.parse_args()
  names = [s[0] for s in STUDIES]
  only = [n for n in args.only.split(',') if n]
  unknown = sorted(set(only) - set(names))
  if unknown:
    print(f"run_all.py: --only names unknown studies {unknown}; choose from {names}",
          file=sys.stderr)
    return 2
  root = os.path.join(args.root, 'quick') if args.quick else args.root
  models = os.path.join(root, 'models')
  summary = os.path.join(root, 'run_all.json')
  record = {'quick': args.quick, 'root': root, 'studies': []}
  if only and os.path.exists(summary):   # update these studies' rows, keep the others'
    with open(summary) as f:
      record = json.load(f)
    record['studies'] = [r for r in record['studies'] if r['study'] not in only]
  record.setdefault('dates', []).append(time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime()))
  by_name = {s[0]: s for s in STUDIES}
  for name in only or names:
    _, script, extra = by_name[name]
    out = os.path.join(root, name)
    os.makedirs(out, exist_ok=True)
    cmd = [sys.executable, script, f'--out={out}'] + [e.format(models=models) for e in extra]
    cmd += ['--quick'] if args.quick else []
    load0, tic = list(os.getloadavg()), time.time()
    print(f'[run_all] {name}: {" ".join(cmd[1:])}', flush=True)
    with open(os.path.join(out, 'run.log'), 'w') as log:
      rc = subprocess.call(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    row = {'study': name, 'command': ' '.join(['python'] + cmd[1:]), 'returncode': rc,
           'wall_seconds': round(time.time() - tic, 1), 'load_average_start': load0,
           'load_average_end': list(os.getloadavg()),
           'started': time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(tic))}
    record['studies'].append(row)
    print(f"[run_all] {name}: exit {rc}, {row['wall_seconds'] / 60:.1f} min "
          f"(load {load0[0]:.1f} -> {row['load_average_end'][0]:.1f})", flush=True)
    record['wall_seconds'] = round(sum(r['wall_seconds'] for r in record['studies']), 1)
    with open(summary, 'w') as f:     # rewritten after every study: progress survives a stop
      json.dump(record, f, indent=1)
  print(f"[run_all] all: {record.get('wall_seconds', 0) / 60:.1f} min -> {summary}", flush=True)
  return int(any(r['returncode'] for r in record['studies']))


if __name__ == '__main__':
  sys.exit(main())
