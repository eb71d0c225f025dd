"""PF-ODE bits/dim with the SDE's prior (raw) and with the exact log p_T, per SDE.

The PF ODE maps x to z = x(T) and returns log pi(z) + int div, with pi the SDE's prior
N(0, sigma_max^2 I) (VE) or N(0, I) (VP, sub-VP). The true log p_eps(x) has log p_T(z) in its
place, so the raw per-sample error is exactly log pi(z) - log p_T(z) (plus the solver's error),
whose mean over x ~ p_0 is -KL(p_T || pi): z ~ p_T because the flow pushes p_0 to p_T.
For the exact-score Gaussian and Gaussian-mixture data of tests/test_likelihood.py (exact
divergence, rtol = atol = 1e-6) this prints, per SDE and data set, in bits/dim: the raw
per-sample error (max |.| and mean), the exact-prior error (max |.|), and -KL(p_T || pi)
(from 200,000 direct draws of p_T, not through the flow).

    .venv/bin/python benchmarks/likelihood_prior.py --out benchmarks/results/likelihood_prior.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import xla_cpu  # noqa: E402,F401  (first: XLA:CPU flags must be set before JAX starts)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import likelihood  # noqa: E402
import sde_lib  # noqa: E402
from tests import exact  # noqa: E402

EPS = 1e-5
SDES = {'VESDE(sigma_max=50)': sde_lib.VESDE(sigma_max=50.), 'VPSDE': sde_lib.VPSDE(),
        'subVPSDE': sde_lib.subVPSDE()}
DATA = {'gauss2': exact.gaussian(2, std=0.5), 'gauss8': exact.gaussian(8, std=0.8, mean=0.3),
        'gmm2': exact.default_gmm(2), 'gmm8': exact.default_gmm(8)}


def measure(data, sde, n=256, seed=1):
  x = data.sample(jax.random.PRNGKey(seed), n)
  result = jax.jit(lambda k, x: likelihood.log_likelihood(
      k, data.score_fn(sde), sde, x, eps=EPS, rtol=1e-6, atol=1e-6, probe='exact'))(
          jax.random.PRNGKey(0), x)
  exact_logp = data.log_prob_fn(sde)(x, jnp.full((n,), EPS))
  to_bpd = lambda v: np.asarray(v, np.float64) / (data.dim * np.log(2))
  raw = to_bpd(result.logp - exact_logp)
  fixed = raw - exact.prior_mismatch_bpd(data, sde, result.z)
  q = exact.prior_mismatch_bpd(data, sde, exact.p_t_draws(data, sde, jax.random.PRNGKey(seed + 100), 200_000))
  return {'raw_max_abs': float(np.abs(raw).max()), 'raw_mean': float(raw.mean()),
          'raw_mean_se': float(raw.std() / np.sqrt(n)), 'exact_prior_max_abs': float(
              np.abs(fixed).max()), 'minus_kl': float(q.mean()),
          'minus_kl_se': float(q.std() / np.sqrt(len(q))), 'mismatch_sd': float(q.std()),
          'n': n}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--out', default=None)
  args = parser.parse_args()
  rows = []
  for sde_name, sde in SDES.items():
    for data_name, data in DATA.items():
      row = {'sde': sde_name, 'data': data_name, 'dim': data.dim, **measure(data, sde)}
      rows.append(row)
      print(f"{sde_name:20s} {data_name:7s} raw max {row['raw_max_abs']:.4f} mean "
            f"{row['raw_mean']:+.5f}  exact-prior max {row['exact_prior_max_abs']:.5f}  "
            f"-KL {row['minus_kl']:+.5f}", file=sys.stderr)
  result = {'benchmark': 'likelihood_prior', 'eps': EPS, 'rtol': 1e-6, 'atol': 1e-6,
            'probe': 'exact', 'units': 'bits/dim', 'results': rows}
  print(json.dumps(result, indent=2))
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(result, f, indent=2)


if __name__ == '__main__':
  main()
