"""Sample error against NFE for every sampler, with the exact score of a fixed mixture.

    python benchmarks/nfe_quality.py --steps 30,100,300 --num_samples 5000 \
        --out benchmarks/results/nfe_quality.json

Data: `tests/exact.default_gmm(--dim)` (3 isotropic components at radius 3), whose
score under every SDE is exact, so the error is the sampler's alone. Error: the
sliced 1-Wasserstein distance (128 directions) between --num_samples samples and as
many fresh mixture draws; `floor` is the same distance between two fresh draws
(the Monte Carlo noise level). Samplers: every PC predictor x corrector pair on VE
(sigma_max = 10), VP and sub-VP; NCSN v1 annealed Langevin (VE, T = 5 steps per
level, L = steps levels); the adaptive PF ODE (rtol = atol in --ode_tols); EDM Heun
and stochastic (S_churn = 40). Writes the table as JSON (--out) and a log-log plot
beside it (.png).
"""
import itertools
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import xla_cpu  # noqa: E402,F401  (first: XLA:CPU flags must be set before JAX starts)

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

import io_utils  # noqa: E402
import distances  # noqa: E402
import sampling  # noqa: E402
import sde_lib  # noqa: E402
from errors import ConfigError  # noqa: E402
from configs.defaults import get_default_configs  # noqa: E402
from tests import exact  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer('dim', 2, 'Mixture dimension.')
flags.DEFINE_integer('num_samples', 5000, 'Samples per sampler and NFE level.')
flags.DEFINE_string('steps', '30,100,300', 'Comma-separated num_steps levels.')
flags.DEFINE_string('ode_tols', '1e-1,1e-2,1e-3,1e-4', 'rtol = atol levels of the PF ODE.')
flags.DEFINE_string('only', '', 'Comma-separated SDE names to run (default: ve,vp,subvp).')
flags.DEFINE_string('out', None, 'Write the JSON here (and the PNG beside it) as well as stdout.')
flags.DEFINE_bool('plot_only', False, 'Only redraw the PNG from the JSON at --out.')

SDES = {'ve': ('vesde', sde_lib.VESDE(sigma_max=10.), 1e-5),
        'vp': ('vpsde', sde_lib.VPSDE(), 1e-3),
        'subvp': ('subvpsde', sde_lib.subVPSDE(), 1e-3)}
PAIRS = [(p, c) for p, c in itertools.product(sampling.PREDICTORS, sampling.CORRECTORS)
         if (p, c) != ('none', 'none')]


def sliced_w1(x, y) -> float:
  """The error of one point: SW_1 over 128 fixed directions."""
  return distances.sliced_wasserstein(x, y, order=1, num_projections=128)


def sampler_settings(sde_name: str, steps: list[int], tols: list[float]):
  """(label, sampling.* fields) for every sampler valid on this SDE and NFE level."""
  for p, c in PAIRS:
    if p == 'ancestral_sampling' and sde_name == 'subvp':
      continue   # rejected when built: sub-VP has no discrete chain
    only_c = p == 'none'
    for n in steps:
      yield f'pc:{p}/{c}', dict(method='pc', predictor=p, corrector=c, num_steps=n,
                                snr=0.3 if only_c else 0.16, n_steps_each=5 if only_c else 1)
  if sde_name == 've':
    for n in steps:
      yield 'ald_ncsn', dict(method='ald_ncsn', num_steps=n, n_steps_each=5, step_lr=2e-5,
                             noise_removal=True)
  for tol in tols:
    yield 'ode', dict(method='ode', rtol=tol, atol=tol)
  for n in steps:
    yield 'edm:heun', dict(method='edm', num_steps=n, s_churn=0.)
    yield 'edm:stochastic', dict(method='edm', num_steps=n, s_churn=40.)


def run_one(gmm, sde_name, fields, reference, key):
  config = get_default_configs()
  config.training.sde, sde, eps = SDES[sde_name]
  config.sampling.eps = eps
  for k, v in fields.items():
    setattr(config.sampling, k, v)
  sampler, _ = sampling.get_sampler(config, sde, (len(reference), gmm.dim))
  tic = time.time()
  x, nfe = jax.jit(lambda k: sampler(k, gmm.score_fn(sde)))(key)
  x = np.asarray(x)
  seconds = time.time() - tic
  return sliced_w1(x, reference), int(nfe), seconds


def plot(rows, floor, path):
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  names = sorted({r['sde'] for r in rows}, key=list(SDES).index)
  fig, axes = plt.subplots(1, len(names), figsize=(6 * len(names), 5), squeeze=False)
  for ax, sde_name in zip(axes[0], names):
    sub = [r for r in rows if r['sde'] == sde_name]
    labels = list(dict.fromkeys(r['sampler'] for r in sub))
    colors = plt.get_cmap('tab20')(np.linspace(0, 1, max(len(labels), 2)))
    for label, color in zip(labels, colors):
      pts = sorted((r['nfe'], r['sliced_w1']) for r in sub if r['sampler'] == label)
      style = '--' if label.startswith(('ode', 'edm', 'ald')) else '-'
      ax.loglog(*zip(*pts), style, color=color, marker='o', ms=3, label=label)
    ax.axhline(floor, color='k', lw=0.8, ls=':', label='MC floor')
    ax.set_xlabel('NFE')
    ax.set_ylabel('sliced W1 to the mixture')
    ax.set_title(sde_name)
    ax.legend(fontsize=6, ncol=2)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main(argv):
  del argv
  png = os.path.splitext(FLAGS.out or '')[0] + '.png'
  if FLAGS.plot_only:
    with open(FLAGS.out) as f:
      result = json.load(f)
    return plot(result['rows'], result['mc_floor'], png)
  gmm = exact.default_gmm(FLAGS.dim)
  n = FLAGS.num_samples
  reference = np.asarray(gmm.sample(jax.random.PRNGKey(1), n))
  floor = sliced_w1(np.asarray(gmm.sample(jax.random.PRNGKey(2), n)), reference)
  steps = [int(s) for s in FLAGS.steps.split(',')]
  tols = [float(s) for s in FLAGS.ode_tols.split(',')]
  rows = []
  for sde_name in (FLAGS.only.split(',') if FLAGS.only else SDES):
    for label, fields in sampler_settings(sde_name, steps, tols):
      try:
        err, nfe, seconds = run_one(gmm, sde_name, fields, reference, jax.random.PRNGKey(0))
      except ConfigError as e:   # e.g. VP's discrete chain with num_steps <= beta_max
        logging.info('%-6s %-40s skipped: %s', sde_name, label, e)
        continue
      rows.append({'sde': sde_name, 'sampler': label, 'nfe': nfe, 'sliced_w1': err,
                   'seconds': seconds, **{k: v for k, v in fields.items() if k != 'method'}})
      logging.info('%-6s %-40s NFE %5d  SW1 %.4f', sde_name, label, nfe, err)
  result = {'data': f'default_gmm({FLAGS.dim})', 'num_samples': n, 'mc_floor': floor,
            'device': jax.devices()[0].device_kind, 'rows': rows}
  print(json.dumps(result, indent=1))
  if FLAGS.out:
    io_utils.write_json(FLAGS.out, result)
    plot(rows, floor, png)


if __name__ == '__main__':
  app.run(main)
