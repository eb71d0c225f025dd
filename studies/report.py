"""Markdown tables of every study's JSON (the tables of docs/results.md).

    python studies/report.py [--results studies/results] [--progress DIR]

Prints one section per study found under --results (sde_samplers, sde_likelihood, ncsn,
conditional, dmcmc_digits, dsb_digits) and the wall times of studies/run_all.py's
run_all.json; a study whose JSON is missing is named as missing.
"""
import argparse
import json
import os


def cell(c: dict, digits: int = 2) -> str:
  return f"{c['mean']:.{digits}f} ± {c['se']:.{digits}f}"


def samplers(p: dict) -> str:
  out = [f"{p['num_samples']} samples per FD, {p['seeds']} seeds; floor (as many real test "
         f"digits vs train): {cell(p['fd_floor'])}; wall {p['wall_seconds'] / 60:.1f} min"
         f"{' (QUICK)' if p['quick'] else ''}", '']
  for name, m in p['models'].items():
    budgets = p['budgets']
    out += [f"**{name.upper()}** ({m['config']}, {m['train_steps']} steps):", '',
            '| sampler | ' + ' | '.join(f'B = {b}: NFE, FD' for b in budgets) + ' |',
            '|---|' + '---|' * len(budgets)]
    for label, cells in m['cells'].items():
      out.append(f'| {label} | ' + ' | '.join(f"{c['nfe']:g}, {cell(c['fd'])}" for c in cells)
                 + ' |')
    out.append('')
  return '\n'.join(out)


def likelihood(p: dict) -> str:
  out = [f"test split ({p['num_test_digits']} digits), rtol = atol = {p['tol']:g}, "
         f"{p['repeats']} repeat(s), {p['train_steps']} training steps; SE over "
         f"{p['se_over']}; wall {p['wall_seconds'] / 60:.1f} min"
         f"{' (QUICK)' if p['quick'] else ''}", '',
         '| SDE | unweighted: bits/dim (NFE) | likelihood weighting, t ~ U | '
         'likelihood weighting, t ~ g²/std² |', '|---|---|---|---|']
  by = {}
  for c in p['cells'].values():
    by.setdefault(c['sde'], {})[(c['likelihood_weighting'],
                                 c.get('importance_sampling', False))] = c
  for sde, d in by.items():
    out.append(f'| {sde} | ' + ' | '.join(
        f"{d[w]['bpd']:.3f} ± {d[w]['bpd_stderr']:.3f} ({d[w]['nfe_mean']:.0f})" if w in d
        else '' for w in ((False, False), (True, False), (True, True))) + ' |')
  return '\n'.join(out)


def ncsn(p: dict) -> str:
  out = [f"{p['num_samples']} samples, {p['seeds']} seeds, L = {p['levels']}, T = "
         f"{p['n_steps_each']}, eps = {p['step_lr']:g}, {p['train_steps']} training steps; "
         f"floor {cell(p['fd_floor'])}; wall {p['wall_seconds'] / 60:.1f} min"
         f"{' (QUICK)' if p['quick'] else ''}", '', '| convention | NFE | digits FD |',
         '|---|---|---|']
  for k, c in p['cells'].items():
    out.append(f"| {k} | {c['nfe']} | {cell(c['fd'])} |")
  return '\n'.join(out)


def conditional(p: dict) -> str:
  cc, col = p['class_conditional'], p['colorization_photo_crops']
  out = [f"class-conditional: {cc['sampler']}, {cc['num_samples']} samples per seed, "
         f"{p['seeds']} seeds; score model {cc['train_steps']} steps, classifier "
         f"{cc['classifier_train_steps']} steps; FD floor {cell(cc['fd_floor'])}; wall "
         f"{p['wall_seconds'] / 60:.1f} min{' (QUICK)' if p['quick'] else ''}", '',
         '| w | accuracy (digits classifier) | worst class | digits FD |', '|---|---|---|---|']
  for k, c in cc['cells'].items():
    worst = min(range(10), key=lambda j: c['per_class_accuracy'][j]['mean'])
    out.append(f"| {k} | {cell(c['label_accuracy'])} | {worst}: "
               f"{cell(c['per_class_accuracy'][worst])} | {cell(c['fd'])} |")
  out += ['', f"colorization (photo_crops, {col['num_test_crops']} test crops, "
          f"{col['sampler']}, model {col['train_steps']} steps):", '',
          '| | RGB MSE | chroma RMSE |', '|---|---|---|',
          f"| diffusion colorization | {cell(col['rgb_mse'], 4)} | {cell(col['chroma_rmse'], 4)} |",
          f"| mean-colour baseline | | {col['chroma_rmse_mean_colour']:.4f} |",
          f"| gray only (no colour) | {col['rgb_mse_gray_only']:.4f} | |", '',
          f"digits: {p['colorization_digits']}"]
  return '\n'.join(out)


def dmcmc(p: dict) -> str:
  settings = [s['name'] for s in p['settings']]
  out = [f"{p['num_outputs']} outputs per cell from {p['n_chains']} chains, {p['seeds']} seeds; "
         f"models {p['train_steps']}; real test digits FD {p['real_test_digits_fd']:.2f}; wall "
         f"{p['wall_seconds'] / 60:.1f} min{' (QUICK)' if p['quick'] else ''}", '',
         '| model | integrator | N / rtol | plain | ' + ' | '.join(f'DLG {s}' for s in settings)
         + ' |', '|---|---|---|---|' + '---|' * len(settings)]
  key = lambda c: (c['sde'], c['integrator'], c['budget'])
  by = {}
  for c in p['cells']:
    by.setdefault(key(c), {})[c['source']] = c
  for (sde, name, budget), row in by.items():
    out.append(f'| {sde.upper()} | {name} | {budget:g} | ' + ' | '.join(
        f"{cell(row[s]['fd'])} ({row[s]['nfe']:g})" if s in row else '' for s in
        ['plain'] + settings) + ' |')
  out += ['', '| model | integrator | DLG setting | plain best FD (NFE) | DLG matches at NFE | '
          'DLG best FD (NFE) |', '|---|---|---|---|---|---|']
  for r in p['matches']:
    match = f"{r['dlg_match_nfe']:g}" if r['dlg_match_nfe'] is not None else 'never'
    out.append(f"| {r['sde'].upper()} | {r['integrator']} | {r['setting']} | "
               f"{cell(r['plain_best_fd'])} ({r['plain_best_nfe']:g}) | {match} | "
               f"{cell(r['dlg_best_fd'])} ({r['dlg_best_nfe']:g}) |")
  out += ['', 'levels handed to the integrator (sigma_n median, 10-90 %): ' + '; '.join(
      f"{sde.upper()} {k} {v['median']:.2f} ({v['q10']:.2f}-{v['q90']:.2f})"
      for sde, d in p['sigma_n'].items() for k, v in d.items())]
  if p['failed_cells']:
    out += ['', f"failed cells: {p['failed_cells']}"]
  return '\n'.join(out)


def dsb(p: dict) -> str:
  out = [f"real test digits FD {p['real_test_digits_fd']:.2f}; wall "
         f"{p['wall_seconds'] / 60:.1f} min{' (QUICK)' if p['quick'] else ''}"]
  g, t = p.get('gaussian_to_digits'), p.get('letters_to_digits')
  if g:
    d = g['dsb']
    out += ['', f"Gaussian -> digits: {d['n_ipf']} IPF iterations of 2 x {d['num_iter']} steps, "
            f"{g['num_samples']} samples per seed; prior draws FD {cell(g['prior_fd'])}; "
            f"training {g['train_seconds']:.0f} s",
            '', '| IPF iteration | digits FD (last-step mean) | digits FD (true draws) |',
            '|---|---|---|']
    out += [f"| {r['iteration']} | {cell(r['fd_mean'])} | {cell(r['fd_draws'])} |"
            for r in g['iterations']]
  if t:
    d = t['dsb']
    out += ['', f"letters -> digits: {d['n_ipf']} IPF iterations of 2 x {d['num_iter']} steps, "
            f"{t['num_transported']} held-out letters; threshold max softmax >= {t['threshold']}",
            '', '| IPF iteration | confident (mean) | confident (draws) | digits FD |',
            '|---|---|---|---|']
    out += [f"| {r['iteration']} | {cell(r['confident_fraction'], 3)} | "
            f"{cell(r['confident_fraction_draws'], 3)} | {cell(r['fd_mean'])} |"
            for r in t['iterations']]
    out += [f"| real test digits | {t['confident_fraction_real_test_digits']:.3f} | | "
            f"{t['fd_real_test_digits']:.2f} |",
            f"| letters, untransported | {t['confident_fraction_untransported_letters']:.3f} | | "
            f"{t['fd_untransported_letters']:.2f} |"]
  return '\n'.join(out)


def run_all(p: dict) -> str:
  out = [f"run_all{' --quick' if p['quick'] else ''}: {p.get('wall_seconds', 0) / 60:.1f} min "
         'in all (the sum of the studies\' wall times)', '',
         '| study | started | exit | wall (min) | load average start -> end (1 min) |',
         '|---|---|---|---|---|']
  out += [f"| {r['study']} | {r.get('started', '')} | {r['returncode']} | "
          f"{r['wall_seconds'] / 60:.1f} | {r['load_average_start'][0]:.1f} -> "
          f"{r['load_average_end'][0]:.1f} |" for r in p['studies']]
  return '\n'.join(out)


def likelihood_progress(models: str, tol: float = 1e-5) -> str:
  """The bits/dim finished so far, read from each model's resumable progress file
  (<models>/<tag>/eval/study_bpd_<tol>.jsonl, one line per finished batch): for a study
  that was stopped before it wrote its JSON. SE over the digits (one repeat)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  rows = ['| model | bits/dim | digits | NFE |', '|---|---|---|---|']
  per_digit, steps = {}, ''
  for tag in sorted(os.listdir(models)):
    path = os.path.join(models, tag, 'eval', f'study_bpd_{tol:g}.jsonl')
    if not os.path.exists(path):
      continue
    with open(path) as f:
      recs = [json.loads(line) for line in f if line.strip()]
    if not recs:
      continue
    bpd = np.concatenate([r['bpd'] for r in recs])
    per_digit[tag] = bpd
    steps = tag.rsplit('_', 1)[-1]
    rows.append(f'| {tag} | {bpd.mean():.3f} ± {bpd.std(ddof=1) / np.sqrt(len(bpd)):.3f} | '
                f"{len(bpd)} | {np.mean([r['nfe'] for r in recs]):.0f} |")
  rows += ['', 'Paired differences (the same digits, dequantization noise and probes: batch keys '
           'depend on config.seed, repeat and batch only), mean ± SE of the per-digit difference:',
           '', '| difference | bits/dim | digits |', '|---|---|---|']
  for a, b in (('subvp', 'vp'), ('subvp_lw', 'vp_lw'), ('vp_lw', 'vp'), ('subvp_lw', 'subvp'),
               ('ve_lw', 've'), ('ve', 'vp'), ('vp_lw_is', 'vp'), ('subvp_lw_is', 'subvp'),
               ('vp_lw_is', 'vp_lw'), ('subvp_lw_is', 'subvp_lw'), ('subvp_lw_is', 'vp_lw_is')):
    pa, pb = (per_digit.get(f'{name}_{steps}') for name in (a, b))
    if pa is None or pb is None or len(pa) != len(pb):
      continue
    d = pa - pb
    rows.append(f'| {a} − {b} | {d.mean():+.3f} ± {d.std(ddof=1) / np.sqrt(len(d)):.3f} | '
                f'{len(d)} |')
  return '\n'.join(rows)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--results', default='studies/results')
  parser.add_argument('--progress', default='', help='a --models dir: print the bits/dim '
                      'finished so far from its progress files')
  args = parser.parse_args()
  if args.progress:
    print(likelihood_progress(args.progress))
    return
  for name, fn in (('sde_samplers', samplers), ('sde_likelihood', likelihood), ('ncsn', ncsn),
                   ('conditional', conditional), ('dmcmc_digits', dmcmc), ('dsb_digits', dsb),
                   ('run_all', run_all)):
    path = os.path.join(args.results, *((name + '.json',) if name == 'run_all' else
                                        (name, name + '.json')))
    print(f'### {name}\n')
    if not os.path.exists(path):
      print(f'(missing: {path})\n')
      continue
    with open(path) as f:
      print(fn(json.load(f)) + '\n')


if __name__ == '__main__':
  main()
