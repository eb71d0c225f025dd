"""Kim & Ye 2023 on trained digits models: does DLG reach an integrator's FD at fewer NFE?

    python studies/dmcmc_digits.py [--quick] [--out studies/results/dmcmc_digits]

For a VP (DDPM++) and a VE (NCSN++) digits score model, each with its own noise-level
classifier (studies/dmcmc_models.py, trained once into <out>/models), and for each
finishing integrator of dmcmc/integrators.py at several step budgets N, the digits FD of
  plain: the integrator alone from the prior (x_hat = sigma_max z at sigma_max), and
  DLG:   the same integrator from the states of persistent DLG chains (dmcmc/dlg.py) at
         their own sigma_n, for each DLG setting in SETTINGS.
The DLG chains do not depend on the integrator, so each (model, setting, seed) runs its
chains once and every integrator finishes the same states; the plain runs and the DLG
runs of one (integrator, N) share one compiled finisher.

NFE per output, counted honestly (DLG only saves work if this is small):
  plain = integrator NFE + 1 (Tweedie);
  DLG   = integrator NFE + 1 + n_skip score calls + n_skip classifier calls
          + (chain initialisation: its finisher run, Tweedie, warm-up steps and their
             classifier calls) * n_chains / num_outputs,
with a classifier call counted as one evaluation like a score call (it is a smaller
network: this favours the plain integrator). `nfe_score` in the JSON leaves the
classifier out. Mean +- standard error over --seeds sampling seeds (chains, prior draws and
integrator noise all change with the seed; the models do not).
"""
from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, logging  # noqa: E402

import datasets  # noqa: E402
import restore  # noqa: E402
from dmcmc import classifier, dlg, integrators  # noqa: E402
from models import utils as mutils  # noqa: E402
from studies import common, dmcmc_models  # noqa: E402

FLAGS = common.FLAGS
common.define_flags('studies/results/dmcmc_digits')
flags = common.flags
flags.DEFINE_list('sdes', [], 'Score models to study (vp, ve); default all of the size.')
flags.DEFINE_list('budgets', [], 'Indices into each integrator\'s budget list; default all.')
flags.DEFINE_string('models_dir', '', 'Where the trained models are (default <out>/models).')

# Step budgets N per integrator kind (NFE = N + 1 for the N-step ones, 2N + 1 for EDM;
# the adaptive solver's budget is its tolerance rtol = atol). Full, quick.
# Sized to the 2-core budget: every (integrator, N) is one compiled program per model (~20 s
# of XLA compile on a loaded machine), so three budgets per integrator.
BUDGETS = {
    'n': ([4, 10, 30], [10]),
    'edm': ([2, 5, 15], [5]),
    'adaptive': ([1e-2], [1e-2]),
}
INTEGRATORS = (['edm_heun', 'edm_stochastic', 'pf_ode_adaptive', 'pf_ode_fixed',
                'reverse_diffusion', 'euler_maruyama'], ['edm_heun'])
SDES = (['vp', 've'], ['vp'])
# DLG settings: the defaults (Gibbs level update, h = eta sigma_k^2, n_skip = 1) and the same
# chain read every 10 steps (the reference's n_skip, lowest-sigma state of the block).
SETTINGS = ([{'name': 'gibbs, n_skip=1', 'sigma_update': 'gibbs', 'n_skip': 1},
             {'name': 'gibbs, n_skip=10', 'sigma_update': 'gibbs', 'n_skip': 10}],
            [{'name': 'gibbs, n_skip=1', 'sigma_update': 'gibbs', 'n_skip': 1}])
# Outputs per cell and chains: 8 outputs per chain amortise the initialisation 8-fold.
NUM_OUTPUTS, N_CHAINS = (256, 32), (64, 16)
WARMUP_STEPS = 20
INIT_INTEGRATOR, INIT_STEPS = 'edm_stochastic', 10


def kind(name: str) -> str:
  return 'edm' if name.startswith('edm') else 'adaptive' if name == 'pf_ode_adaptive' else 'n'


def finisher(config, sde, score_fn, name: str, budget):
  d = config.dmcmc
  opts = {'s_churn': d.s_churn, 'rho': d.rho, 'rtol': d.rtol, 'atol': d.atol,
          'method': d.ode_method}
  steps = d.integrator_steps
  if kind(name) == 'adaptive':
    opts['rtol'] = opts['atol'] = float(budget)
  else:
    steps = int(budget)
  return jax.jit(integrators.get_finisher(name, sde, score_fn, d.sigma_min, steps, **opts))


def dlg_states(config, sde, score_fn, logits_fn, sigmas, shape, setting, seed, quick):
  """The DLG chains' outputs before finishing: (x_hat [M, ...], sigma_n [M], cost per output)."""
  d = config.dmcmc
  n_chains, num_outputs = N_CHAINS[int(quick)], NUM_OUTPUTS[int(quick)]
  step = dlg.make_step(dlg.ve_score_fn(sde, score_fn), logits_fn, sigmas,
                       sigma_update=setting['sigma_update'], eta_scaling=d.eta_scaling)
  # The reference's start (Kim & Ye's Demo.ipynb): a short stochastic EDM run from the prior,
  # noise of half the data range added, the classifier's argmax level, then warm-up steps.
  init_fin = integrators.get_finisher(INIT_INTEGRATOR, sde, score_fn, d.sigma_min, INIT_STEPS,
                                      s_churn=d.s_churn, rho=d.rho)
  data_range = 2. if config.data.centered else 1.
  key = jax.random.fold_in(jax.random.PRNGKey(1000 + seed), setting['n_skip'])
  init = jax.jit(lambda k: dlg.init_chains(k, step, logits_fn, sigmas, (n_chains,) + shape,
                                           finisher=init_fin, init_noise=0.5 * data_range,
                                           eta0=d.eta, warmup_steps=WARMUP_STEPS))
  chains, init_cost = init(jax.random.fold_in(key, 0))
  n_skip = setting['n_skip']
  block = jax.jit(lambda k, c: dlg.run_block(step, k, c, d.eta, n_skip)[:2])
  xs, ks = [], []
  for b in range(num_outputs // n_chains):
    chains, best = block(jax.random.fold_in(key, b + 1), chains)
    xs.append(best.x)
    ks.append(best.k)
  per_chain = n_chains / num_outputs
  cost = {'score': n_skip + int(init_cost['score_nfe']) * per_chain,
          'classifier': n_skip + int(init_cost['classifier_calls']) * per_chain,
          'init_score_per_chain': int(init_cost['score_nfe']),
          'init_classifier_per_chain': int(init_cost['classifier_calls'])}
  k = jnp.concatenate(ks)
  return jnp.concatenate(xs), sigmas[k], cost


def to_images(config, x0) -> np.ndarray:
  return np.clip(np.asarray(datasets.get_data_inverse_scaler(config)(np.asarray(x0))), 0., 1.)


def study_model(sde_name: str, quick: bool) -> dict:
  """Every cell of one score model: {'cells': [...], 'sigma_n': ..., 'seconds': ...}."""
  score_dir, clf_dir = dmcmc_models.workdirs(
      os.path.dirname(FLAGS.models_dir.rstrip('/')) if FLAGS.models_dir else FLAGS.out, sde_name)
  config = dmcmc_models.score_config(sde_name, quick)
  clf_config = dmcmc_models.classifier_config(sde_name, quick)
  train_seconds = {'score': common.train_once(config, score_dir),
                   'classifier': common.train_once(clf_config, clf_dir)}
  run = restore.restore_run(config, score_dir)
  clf = restore.restore_run(clf_config, clf_dir)
  sde, shape = run.sde, tuple(run.data_shape)
  sigmas = classifier.ladder_from_config(config)
  classifier.check_ladder(sde, sigmas)
  score_fn = mutils.score_fn_from_config(config, sde, run.model, run.ema_params)
  logits_fn = classifier.logits_fn_from_model(clf.model, clf.ema_params)
  num_outputs = NUM_OUTPUTS[int(quick)]
  tic = time.time()

  # Start states per source and seed: the prior, and each DLG setting's chain outputs.
  sources = {}
  for s in range(FLAGS.seeds):
    z = jax.random.normal(jax.random.PRNGKey(2000 + s), (num_outputs,) + shape)
    sources.setdefault('plain', []).append(
        (sigmas[-1] * z, jnp.full((num_outputs,), sigmas[-1]), {'score': 0., 'classifier': 0.}))
  sigma_n = {}
  for setting in SETTINGS[int(quick)]:
    states = [dlg_states(config, sde, score_fn, logits_fn, sigmas, shape, setting, s, quick)
              for s in range(FLAGS.seeds)]
    sources[setting['name']] = states
    sig = np.concatenate([np.asarray(st[1]) for st in states])
    sigma_n[setting['name']] = {'median': float(np.median(sig)), 'mean': float(sig.mean()),
                                'q10': float(np.quantile(sig, .1)),
                                'q90': float(np.quantile(sig, .9)),
                                'at_sigma_min': float(np.mean(sig <= sigmas[0] * 1.0001))}
    logging.info('%s %s: sigma_n %s, cost %s', sde_name, setting['name'],
                 sigma_n[setting['name']], states[0][2])
  chain_seconds = time.time() - tic

  cells = []
  for name in INTEGRATORS[int(quick)]:
    budgets = BUDGETS[kind(name)][int(quick)]
    if FLAGS.budgets:
      budgets = [budgets[int(i)] for i in FLAGS.budgets if int(i) < len(budgets)] or budgets[:1]
    for budget in budgets:
      try:
        cells.extend(_cells(config, sde, score_fn, sde_name, name, budget, sources))
      except Exception as e:  # pylint: disable=broad-except  (one failed cell must not lose the rest)
        logging.exception('%s %s %s failed', sde_name, name, budget)
        cells.append({'sde': sde_name, 'integrator': name, 'budget': budget,
                      'error': f'{type(e).__name__}: {e}'})
  return {'cells': cells, 'sigma_n': sigma_n, 'train_seconds': train_seconds,
          'train_steps': {'score': config.training.n_iters,
                          'classifier': clf_config.training.n_iters},
          'chain_seconds': chain_seconds, 'seconds': time.time() - tic,
          'dmcmc': {k: config.dmcmc[k] for k in ('eta', 'eta_scaling', 'n_levels', 'sigma_min',
                                                 'sigma_max')}}


def _cells(config, sde, score_fn, sde_name, name, budget, sources) -> list[dict]:
  """The cells of one (integrator, budget): every source and seed through one finisher."""
  cells = []
  finish = finisher(config, sde, score_fn, name, budget)
  for source, states in sources.items():
    fds, nfes, nfe_scores = [], [], []
    for s, (x, sig, cost) in enumerate(states):
      x0, nfe = finish(jax.random.PRNGKey(3000 + s), x, sig)
      fds.append(common.digits_fd(config, to_images(config, x0)))
      fin = float(nfe) + integrators.TWEEDIE_NFE
      nfe_scores.append(fin + cost['score'])
      nfes.append(fin + cost['score'] + cost['classifier'])
    cells.append({'sde': sde_name, 'integrator': name, 'budget': budget, 'source': source,
                  'dlg': source != 'plain', 'fd': common.mean_se(fds),
                  'nfe': float(np.mean(nfes)), 'nfe_score': float(np.mean(nfe_scores)),
                  'cost': {k: v for k, v in states[0][2].items()}})
    logging.info('%s %s %s %s: FD %s at %.1f NFE', sde_name, name, budget, source,
                 common.fmt(cells[-1]['fd']), cells[-1]['nfe'])
  return cells


def matches(cells: list[dict]) -> list[dict]:
  """Per (sde, integrator, DLG setting): the fewest DLG NFE whose FD matches the plain best.

  A DLG cell matches if its mean FD is at most the best plain mean FD plus their combined
  standard error sqrt(se_plain^2 + se_dlg^2) (i.e. not worse beyond the seeds' noise).
  """
  rows = []
  for sde in sorted({c['sde'] for c in cells}):
    for name in dict.fromkeys(c['integrator'] for c in cells if c['sde'] == sde):
      group = [c for c in cells if c['sde'] == sde and c['integrator'] == name]
      plain = [c for c in group if not c['dlg']]
      if not plain:
        continue
      best = min(plain, key=lambda c: c['fd']['mean'])
      for source in dict.fromkeys(c['source'] for c in group if c['dlg']):
        dl = sorted([c for c in group if c['source'] == source], key=lambda c: c['nfe'])
        ok = [c for c in dl if c['fd']['mean'] <= best['fd']['mean'] + np.hypot(
            best['fd']['se'], c['fd']['se'])]
        top = min(dl, key=lambda c: c['fd']['mean'])
        rows.append({'sde': sde, 'integrator': name, 'setting': source,
                     'plain_best_fd': best['fd'], 'plain_best_nfe': best['nfe'],
                     'dlg_match_nfe': ok[0]['nfe'] if ok else None,
                     'dlg_match_fd': ok[0]['fd'] if ok else None,
                     'dlg_best_fd': top['fd'], 'dlg_best_nfe': top['nfe']})
  return rows


def plot(path: str, cells: list[dict], yardstick: float) -> None:
  plt = common.pyplot()
  sdes = list(dict.fromkeys(c['sde'] for c in cells))
  names = list(dict.fromkeys(c['integrator'] for c in cells))
  fig, axes = plt.subplots(len(sdes), len(names), figsize=(3.2 * len(names), 3. * len(sdes)),
                           squeeze=False, sharey='row')
  for i, sde in enumerate(sdes):
    for j, name in enumerate(names):
      ax = axes[i, j]
      group = [c for c in cells if c['sde'] == sde and c['integrator'] == name]
      for source in dict.fromkeys(c['source'] for c in group):
        cs = sorted([c for c in group if c['source'] == source], key=lambda c: c['nfe'])
        ax.errorbar([c['nfe'] for c in cs], [c['fd']['mean'] for c in cs],
                    yerr=[c['fd']['se'] for c in cs], marker='o' if source == 'plain' else 's',
                    ms=3, capsize=2, label=source if source == 'plain' else 'DLG ' + source)
      ax.axhline(yardstick, color='k', ls=':', lw=1)
      ax.set_xscale('log')
      ax.set_yscale('log')
      ax.set_title(f'{sde.upper()}: {name}', fontsize=9)
      if i == len(sdes) - 1:
        ax.set_xlabel('NFE per output (score + classifier)')
      if j == 0:
        ax.set_ylabel('digits FD')
  axes[0, 0].legend(fontsize=7)
  fig.suptitle('DMCMC on digits: plain integrator vs DLG + integrator (dotted: real test '
               'digits)', fontsize=9)
  common.save_figure(fig, path, dpi=100)


def main(argv):
  del argv
  quick = FLAGS.quick
  tic, load0 = time.time(), os.getloadavg()
  per_model = {sde: study_model(sde, quick) for sde in (FLAGS.sdes or SDES[int(quick)])}
  failed = [c for r in per_model.values() for c in r['cells'] if 'error' in c]
  cells = [c for r in per_model.values() for c in r['cells'] if 'error' not in c]
  config = dmcmc_models.score_config(list(per_model)[0], quick)
  yardstick = common.digits_fd(config, datasets.digits('test', 8)[0])
  os.makedirs(FLAGS.out, exist_ok=True)
  plot(os.path.join(FLAGS.out, 'dmcmc_digits.png'), cells, yardstick)
  payload = {'study': 'dmcmc_digits', 'cells': cells, 'failed_cells': failed,
             'matches': matches(cells),
             'sigma_n': {k: r['sigma_n'] for k, r in per_model.items()},
             'train_seconds': {k: r['train_seconds'] for k, r in per_model.items()},
             'train_steps': {k: r['train_steps'] for k, r in per_model.items()},
             'sampling_seconds': {k: r['seconds'] for k, r in per_model.items()},
             'dmcmc': {k: r['dmcmc'] for k, r in per_model.items()},
             'settings': SETTINGS[int(quick)], 'num_outputs': NUM_OUTPUTS[int(quick)],
             'n_chains': N_CHAINS[int(quick)], 'budget_indices': FLAGS.budgets or 'all', 'warmup_steps': WARMUP_STEPS,
             'init': {'integrator': INIT_INTEGRATOR, 'steps': INIT_STEPS,
                      'noise': 'half the data range'},
             'real_test_digits_fd': yardstick, 'wall_seconds': time.time() - tic,
             'load_average_start': load0, 'load_average_end': os.getloadavg()}
  common.write(FLAGS.out, 'dmcmc_digits', payload, config)
  for row in payload['matches']:
    print(row['sde'], row['integrator'], row['setting'], 'plain best',
          common.fmt(row['plain_best_fd']), f"@{row['plain_best_nfe']:.0f}", 'DLG match',
          row['dlg_match_nfe'], 'DLG best', common.fmt(row['dlg_best_fd']),
          f"@{row['dlg_best_nfe']:.0f}", flush=True)


if __name__ == '__main__':
  app.run(main)
