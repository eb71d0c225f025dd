"""DMCMC's claim on exact scores: sliced-Wasserstein error against NFE per sample.

For a fixed 2-D and 16-D Gaussian mixture (tests/exact.default_gmm) under a VE SDE
(sigma 0.01..80), each of the six finishers runs
  plain: from the prior (sigma_max = 80) with its N-step budget, then Tweedie;
  DLG:   from DLG chain states (exact score, exact posterior over a 1000-level ladder as the
         classifier; Gibbs and argmax updates) at their own sigma_n, n_skip DLG steps per output.
NFE per sample = integrator + Tweedie (+ n_skip for DLG; the one-off chain warm-up is
listed separately). Error = sliced Wasserstein-1 (256 directions) to an exact sample of
the same size; `floor` is that distance between two exact samples.

    .venv/bin/python benchmarks/dmcmc_nfe.py --out benchmarks/results/dmcmc_nfe.json
"""
from __future__ import annotations

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
from jax.scipy.special import logsumexp  # noqa: E402

import distances  # noqa: E402

import sde_lib  # noqa: E402
from dmcmc import classifier, dlg, integrators  # noqa: E402
from tests import exact  # noqa: E402

SIGMA_MIN, SIGMA_MAX = 0.01, 80.
SW_SEED = 2     # the error's directions: fixed, so every point of a run is comparable
# Budgets: N steps (N + 1 NFE), EDM N steps (2N + 1 NFE), adaptive rtol = atol.
PLAIN_STEPS = {'n': [10, 100, 999], 'edm': [5, 50, 499], 'adaptive': [1e-2, 1e-4]}
DLG_STEPS = {'n': [1, 3, 10, 30], 'edm': [1, 3, 10, 30], 'adaptive': [1e-1, 1e-2, 1e-3]}


def kind(name):
  return 'edm' if name.startswith('edm') else 'adaptive' if name == 'pf_ode_adaptive' else 'n'


def fast_ladder_logits(data: exact.GaussianMixture, sigmas):
  """log p_{sigma_l}(x) [B, L] from |x - mu_k|^2 once (what exact.ladder_log_probs computes)."""
  s2, w = data.stds ** 2, jnp.log(data.weights)

  def logits(x):
    d2 = jnp.sum((x[:, None, :] - data.means[None]) ** 2, -1)                  # [B, K]
    v = s2[None, :] + sigmas[:, None] ** 2                                       # [L, K]
    logn = (w[None, None] - 0.5 * d2[:, None, :] / v[None]
            - 0.5 * data.dim * jnp.log(2 * jnp.pi * v[None]))                    # [B, L, K]
    return logsumexp(logn, axis=-1)

  return logits


def sliced_w1(x, y) -> float:
  """The error of one point: SW_1 over 256 fixed directions (numpy seed SW_SEED)."""
  return distances.sliced_wasserstein(np.asarray(x), np.asarray(y), order=1, num_projections=256,
                                    seed=SW_SEED)


def run_dim(dim, n, n_chains, skips, updates, warmup, eta, log):
  data = exact.default_gmm(dim)
  sde = sde_lib.VESDE(sigma_min=SIGMA_MIN, sigma_max=SIGMA_MAX)
  score_fn = data.score_fn(sde)
  sigmas = classifier.ladder(1000, SIGMA_MIN, SIGMA_MAX)
  logits = fast_ladder_logits(data, sigmas)
  probe = data.sample(jax.random.PRNGKey(9), 8) * 2.
  np.testing.assert_allclose(logits(probe), exact.ladder_log_probs(data, probe, sigmas),
                             rtol=1e-4, atol=1e-3)
  ref = data.sample(jax.random.PRNGKey(1), n)
  # Two exact samples of size n differ by this much: the error no sampler can go below.
  floor = float(np.mean([sliced_w1(data.sample(jax.random.PRNGKey(30 + i), n), ref)
                         for i in range(3)]))
  finishers = {}

  def finish(name, budget, x, sig):
    if (name, budget) not in finishers:
      opts = {'rtol': budget, 'atol': budget} if kind(name) == 'adaptive' else {}
      steps = 0 if kind(name) == 'adaptive' else budget
      finishers[name, budget] = jax.jit(integrators.get_finisher(
          name, sde, score_fn, SIGMA_MIN, steps, s_churn=40., **opts))
    out, nfe = finishers[name, budget](jax.random.PRNGKey(4), x, sig)
    return out, int(nfe) + integrators.TWEEDIE_NFE

  rows = []
  prior = SIGMA_MAX * jax.random.normal(jax.random.PRNGKey(5), (n, dim))
  for name in integrators.FINISHERS:
    for budget in PLAIN_STEPS[kind(name)]:
      out, nfe = finish(name, budget, prior, jnp.full((n,), SIGMA_MAX))
      rows.append({'dim': dim, 'integrator': name, 'dlg': False, 'budget': budget,
                   'n_skip': 0, 'nfe': nfe, 'sw': sliced_w1(out, ref)})
      log(rows[-1])

  init = {}
  for update in updates:
    rows += _dlg_rows(dim, n, n_chains, skips, update, warmup, eta, sde, score_fn, sigmas,
                      logits, finish, ref, init, log)
  return rows, floor, init


def _dlg_rows(dim, n, n_chains, skips, update, warmup, eta, sde, score_fn, sigmas, logits,
              finish, ref, init, log):
  rows = []
  step = dlg.make_step(dlg.ve_score_fn(sde, score_fn), logits, sigmas, sigma_update=update)
  tic = time.time()
  chains, cost = jax.jit(lambda k: dlg.init_chains(k, step, logits, sigmas, (n_chains, dim),
                                                   eta0=eta, warmup_steps=warmup))(
                                                       jax.random.PRNGKey(6))
  init[update] = {'score_nfe_per_chain': int(cost['score_nfe']),
                  'outputs_per_chain': n // n_chains, 'seconds': time.time() - tic}
  blocks = n // n_chains
  for n_skip in skips:
    block = jax.jit(lambda k, c: dlg.run_block(step, k, c, eta, n_skip))
    c, xs, ks = chains, [], []
    for b in range(blocks):
      c, best, _ = block(jax.random.fold_in(jax.random.PRNGKey(7), b), c)
      xs.append(best.x)
      ks.append(best.k)
    x, sig = jnp.concatenate(xs), sigmas[jnp.concatenate(ks)]
    med = float(jnp.median(sig))
    for name in integrators.FINISHERS:
      for budget in DLG_STEPS[kind(name)]:
        out, nfe = finish(name, budget, x, sig)
        rows.append({'dim': dim, 'integrator': name, 'dlg': True, 'budget': budget,
                     'update': update, 'n_skip': n_skip, 'nfe': nfe + n_skip,
                     'sw': sliced_w1(out, ref),
                     'median_sigma_n': med})
        log(rows[-1])
  return rows


def summarise(rows, floor_by_dim):
  """Per (dim, integrator): plain error at its largest budget (~1000 NFE) and the smallest
  DLG NFE whose error is within 10% of it (or of the sampling floor, if larger)."""
  out = []
  for dim, floor in floor_by_dim.items():
    for name in integrators.FINISHERS:
      plain = [r for r in rows if r['dim'] == dim and r['integrator'] == name and not r['dlg']]
      ref = max(plain, key=lambda r: r['nfe'])
      target = 1.1 * max(ref['sw'], floor)
      ok = [r for r in rows if r['dim'] == dim and r['integrator'] == name and r['dlg']
            and r['sw'] <= target]
      best = min(ok, key=lambda r: r['nfe']) if ok else None
      dlg_rows = [r for r in rows if r['dim'] == dim and r['integrator'] == name and r['dlg']]
      lowest = min(dlg_rows, key=lambda r: r['sw'])
      plain_ok = [r for r in plain if r['sw'] <= target]
      out.append({'dim': dim, 'integrator': name, 'plain_nfe': ref['nfe'], 'plain_sw': ref['sw'],
                  'floor': floor, 'plain_nfe_to_match': min(r['nfe'] for r in plain_ok),
                  'dlg_nfe_to_match': best and best['nfe'],
                  'dlg_setting': best and {k: best[k]
                                           for k in ('update', 'n_skip', 'budget', 'sw')},
                  'dlg_lowest_error': {k: lowest[k] for k in ('update', 'n_skip', 'budget', 'nfe',
                                                              'sw')}})
  return out


def plot(rows, floors, path):
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  dims = sorted(floors)
  fig, axes = plt.subplots(1, len(dims), figsize=(7 * len(dims), 5), squeeze=False)
  colors = dict(zip(integrators.FINISHERS, plt.rcParams['axes.prop_cycle'].by_key()['color']))
  for ax, dim in zip(axes[0], dims):
    for name in integrators.FINISHERS:
      p = sorted([r for r in rows if r['dim'] == dim and r['integrator'] == name
                  and not r['dlg']], key=lambda r: r['nfe'])
      ax.plot([r['nfe'] for r in p], [r['sw'] for r in p], '-o', ms=3, color=colors[name],
              label=f'{name}')
      settings = sorted({(r['update'], r['n_skip']) for r in rows if r['dlg']})
      for (u, s), marker in zip(settings, ['s', '^', 'D', 'v', 'x', '+']):
        q = sorted([r for r in rows if r['dim'] == dim and r['integrator'] == name and r['dlg']
                    and r['n_skip'] == s and r['update'] == u], key=lambda r: r['nfe'])
        ax.plot([r['nfe'] for r in q], [r['sw'] for r in q], ':' if u == 'argmax' else '--',
                marker=marker, ms=4, color=colors[name], label=f'DLG ({u}, n_skip={s}) + {name}')
    ax.axhline(floors[dim], color='k', lw=0.8, ls=':', label='two exact samples')
    ax.set_xscale('log')
    ax.set_yscale('log')
    ax.set_xlabel('NFE per sample')
    ax.set_ylabel('sliced Wasserstein-1 to the mixture')
    ax.set_title(f'{dim}-D Gaussian mixture, exact score')
  axes[0][-1].legend(fontsize=6, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--out', default='benchmarks/results/dmcmc_nfe.json')
  parser.add_argument('--dims', default='2,16')
  parser.add_argument('--n', type=int, default=1000, help='samples per point')
  parser.add_argument('--n_chains', type=int, default=1000,
                      help='n / n_chains output blocks per persistent chain')
  parser.add_argument('--skips', default='1,4')
  parser.add_argument('--updates', default='gibbs,argmax')
  parser.add_argument('--warmup', type=int, default=500)
  parser.add_argument('--eta', type=float, default=0.05)
  args = parser.parse_args()
  tic = time.time()
  log = lambda r: print(json.dumps(r), file=sys.stderr, flush=True)
  rows, floors, inits = [], {}, {}
  for dim in [int(d) for d in args.dims.split(',')]:
    r, floors[dim], inits[dim] = run_dim(dim, args.n, args.n_chains,
                                         [int(s) for s in args.skips.split(',')],
                                         args.updates.split(','),
                                         args.warmup, args.eta, log)
    rows += r
    with open(args.out + '.partial', 'w') as f:   # a slow run keeps what it has
      json.dump({'floor': floors, 'rows': rows}, f)
  result = {'summary': summarise(rows, floors), 'floor': floors, 'dlg_init': inits,
            'settings': vars(args), 'sigma_range': [SIGMA_MIN, SIGMA_MAX], 'n_levels': 1000,
            'seconds': time.time() - tic, 'backend': jax.default_backend(), 'rows': rows}
  os.makedirs(os.path.dirname(args.out) or '.', exist_ok=True)
  with open(args.out, 'w') as f:
    json.dump(result, f, indent=1)
  plot(rows, floors, os.path.splitext(args.out)[0] + '.png')
  print('dim integrator  plain@NFE (SW)  floor  DLG NFE to match (setting)  DLG lowest error')
  for s in result['summary']:
    print(s['dim'], s['integrator'], s['plain_nfe'], f"{s['plain_sw']:.4f}", f"{s['floor']:.4f}",
          s['dlg_nfe_to_match'], s['dlg_setting'], s['dlg_lowest_error'])


if __name__ == '__main__':
  main()
