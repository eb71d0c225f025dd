"""DSB on the Gaussian benchmark of Shi et al. 2023: KL(p1 || p1*) at d = 5, 20, 50.

pi_0 = N(-0.1 1, I), pi_1 = N(0.1 1, I), Brownian reference with sigma = 1, N = 20
(configs/dsb/gaussian.py). Each direction is a per-step affine map (dsb.network=affine), so
the learned chains are exactly Gaussian and their laws are computed in closed form
(`dsb.networks.affine_chain_moments`): the KLs below carry no sampling error.

  p1  = law of X_N under the learned forward chain started from pi_0;
  p1* = pi_1, the bridge's true marginal at t = 1.

Written samples (`--num_samples`, default 5000, per d): `<out>_samples_d<d>.npz` holds
`p1` = X_N of the learned forward chain from held-out pi_0 draws and `p0` = X_0 of the
backward chain from pi_1 draws: true draws of the chains' laws, the last step's noise
(variance 2 gamma_N) included, exactly num_samples of each; `p1_mean` / `p0_mean` are the
last step's means (no last noise), kept for pictures. The KLs use neither: they are exact.
The JSON compares the draws' total variance with the exact one (`written_samples`).

Also reported: KL(p0 || pi_0) of the backward chain started from pi_1, and the same two KLs
for IPF with exact population mean matching on the same grid (`tests.exact.population_dsb`),
i.e. the floor that DSB's discretisation (Gaussian steps of variance 2 gamma) leaves at N = 20.
DSB's published figures on this benchmark (Shi et al. 2023, Table 1): 8.76 / 49.96 / 221.2.

  .venv/bin/python benchmarks/dsb_gaussian.py --out benchmarks/results/dsb_gaussian.json
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

from configs.dsb import gaussian as gaussian_config  # noqa: E402
from dsb import data as dsb_data  # noqa: E402
from dsb import ipf as ipf_lib  # noqa: E402
from dsb import metrics, networks  # noqa: E402
from tests import exact  # noqa: E402

PUBLISHED_DSB = {5: 8.76, 20: 49.96, 50: 221.2}


def draws(ipf, nets, data, prior, num: int, key) -> dict:
  """num true draws of the learned p1 (forward from pi_0) and p0 (backward from pi_1).

  Returns {'p1', 'p1_mean', 'p0', 'p0_mean'}: [num, D] each; *_mean is the last step's mean.
  """
  k1, k2 = jax.random.split(key)
  fwd = ipf.push_forward(nets, jnp.asarray(data.heldout(num)), k1)
  back = ipf.sample(nets, jnp.asarray(prior.heldout(num)), k2)
  return {'p1': np.asarray(fwd.end), 'p1_mean': np.asarray(fwd.end_mean),
          'p0': np.asarray(back.end), 'p0_mean': np.asarray(back.end_mean)}


def variance_check(samples: np.ndarray, cov: np.ndarray) -> dict:
  """Total variance of samples [n, D] against the exact trace(cov), with its standard error
  sqrt(2 trace(cov^2) / n) (the sampling sd of the trace of a Gaussian sample covariance)."""
  n = len(samples)
  return {'n': n, 'total_variance': float(samples.var(0).sum()),
          'exact': float(np.trace(cov)), 'se': float(np.sqrt(2. * np.trace(cov @ cov) / n))}


def run_dim(dim: int, n_ipf: int, num_iter: int, num_samples: int = 5000,
            samples_path: str = '') -> dict:
  config = gaussian_config.get_config(str(dim))
  config.dsb.n_ipf, config.dsb.num_iter = n_ipf, num_iter
  d = config.dsb
  data, prior = dsb_data.get_endpoints(config)
  ipf = ipf_lib.IPF(config, (dim,), d.prior_mean, d.prior_var)
  nets = ipf.init_nets(jax.random.PRNGKey(config.seed))
  m0, m1, eye = np.full(dim, d.data_mean), np.full(dim, d.prior_mean), np.eye(dim)
  refreshes = -(-d.num_iter // d.cache_refresh)
  per_iter, tic = [], time.time()
  for h in range(1, 2 * n_ipf + 1):
    source = data if h % 2 else prior
    start = lambda r, s=source, h=h: jnp.asarray(s.batch((h - 1) * refreshes + r, d.cache_size))
    nets, logged = ipf.run_half(h, nets, jax.random.fold_in(jax.random.PRNGKey(0), h), start)
    if h % 2 == 0:
      jax.block_until_ready(nets)
      mf, sf, _ = networks.affine_chain_moments(nets['forward']['ema'], ipf.gammas, m0, eye,
                                                forward=True)
      mb, sb, _ = networks.affine_chain_moments(nets['backward']['ema'], ipf.gammas, m1, eye,
                                                forward=False)
      per_iter.append({'iteration': h // 2, 'kl_p1': metrics.gaussian_kl(mf, sf, m1, eye),
                       'kl_p0': metrics.gaussian_kl(mb, sb, m0, eye), 'loss': logged[-1],
                       'seconds': time.time() - tic})
      print(f'd={dim} iteration {h // 2}: KL(p1||p1*) {per_iter[-1]["kl_p1"]:.4f}  '
            f'KL(p0||pi0) {per_iter[-1]["kl_p0"]:.4f}  {per_iter[-1]["seconds"]:.1f}s',
            flush=True)
      tic = time.time()
  samples = draws(ipf, nets, data, prior, num_samples, jax.random.PRNGKey(7))
  if samples_path:
    np.savez_compressed(samples_path, **samples)
  written = {'p1': variance_check(samples['p1'], sf), 'p0': variance_check(samples['p0'], sb),
             'last_noise_variance_per_dim': 2. * float(ipf.gammas[-1])}
  pop = exact.population_dsb(ipf.gammas, m0, eye, m1, eye, n_ipf)
  pf = networks.affine_chain_moments(pop['forward'], ipf.gammas, m0, eye, forward=True)
  pb = networks.affine_chain_moments(pop['backward'], ipf.gammas, m1, eye, forward=False)
  seconds = [r['seconds'] for r in per_iter]
  return {'dim': dim, 'kl_p1': per_iter[-1]['kl_p1'], 'kl_p0': per_iter[-1]['kl_p0'],
          'population_kl_p1': metrics.gaussian_kl(pf[0], pf[1], m1, eye),
          'population_kl_p0': metrics.gaussian_kl(pb[0], pb[1], m0, eye),
          'published_dsb_kl_p1': PUBLISHED_DSB.get(dim),
          'seconds_per_ipf_iteration': float(np.median(seconds[1:] or seconds)),
          'seconds_first_iteration_with_compile': seconds[0],
          'parameters_per_direction': int(sum(x.size for x in
                                              jax.tree.leaves(nets['forward']['params']))),
          'written_samples': written, 'iterations': per_iter}


def plot(path: str, results: list[dict]) -> None:
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(6, 4))
  for r, color in zip(results, ('C0', 'C1', 'C2')):
    its = [i['iteration'] for i in r['iterations']]
    ax.semilogy(its, [i['kl_p1'] for i in r['iterations']], 'o-', color=color,
                label=f'd = {r["dim"]}')
    ax.axhline(r['population_kl_p1'], color=color, ls=':', lw=1)
    if r['published_dsb_kl_p1']:
      ax.axhline(r['published_dsb_kl_p1'], color=color, ls='--', lw=1)
  ax.set_xlabel('IPF iteration')
  ax.set_ylabel('KL(p1 || p1*)')
  ax.set_title('DSB, Gaussian benchmark (dashed: published DSB; dotted: exact-MM floor)',
               fontsize=8)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--dims', default='5,20,50')
  parser.add_argument('--n_ipf', type=int, default=5)
  parser.add_argument('--num_iter', type=int, default=1000, help='steps per half-iteration')
  parser.add_argument('--num_samples', type=int, default=5000,
                      help='true draws of p1 and p0 written per d (<out>_samples_d<d>.npz)')
  parser.add_argument('--out', default='')
  args = parser.parse_args()
  tic = time.time()
  stem = os.path.splitext(args.out)[0] if args.out else ''
  if stem:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  results = [run_dim(int(d), args.n_ipf, args.num_iter, args.num_samples,
                     f'{stem}_samples_d{d}.npz' if stem else '') for d in args.dims.split(',')]
  payload = {'benchmark': 'dsb_gaussian', 'n_ipf': args.n_ipf, 'num_iter': args.num_iter,
             'network': 'affine (per step and direction: x + A_k x + c_k)',
             'kl': 'KL(p1 || p1*), exact for the learned Gaussian chain, nats',
             'num_samples': args.num_samples, 'device': jax.devices()[0].device_kind, 'total_seconds': time.time() - tic,
             'results': results}
  text = json.dumps(payload, indent=2, default=float)
  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
      f.write(text + '\n')
    plot(os.path.splitext(args.out)[0] + '.png', results)
  print(text)


if __name__ == '__main__':
  main()
