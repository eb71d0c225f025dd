"""Denoising Langevin Gibbs (DLG, Kim & Ye 2023, Algorithm 1) on (x_hat, k).

One DLG step, in the VE view x_hat (x_t = alpha(t) x_hat, sigma_k = ve_sigma(t)):

    x_hat <- x_hat + (h/2) s(x_hat, sigma_k) + sqrt(h) z     (Langevin on p_{sigma_k})
    k     <- argmax_j q(j | x_hat)   or   k ~ q(. | x_hat)    (the reference / a Gibbs step)

with h = eta sigma_k^2 (eta_scaling='sigma2', scale-free like annealed Langevin) or
h = eta ('none'). Kim & Ye's code (github.com/1202kbs/DMCMC, Demo.ipynb, the DLG cell) uses
the constant step and the argmax:

    x.data = x + 0.5 * eta * score_model(x, s) + np.sqrt(eta) * torch.randn_like(x) # x ~ p(x|s)
    s.data = get_sigma(net(x).argmax(dim=1), config.model.sigma_max) # s ~ p(s|x)

(eta = 0.8, skp = 10 for CelebA-HQ). On N(m, v) the step is an AR(1) with stationary variance
v / (1 - h / (4 v)) (tests/test_dmcmc.py), which blows up for h >= 4 v: a constant eta cannot
sample the low levels (v ~ sigma_k^2 near the data), so the chain hovers where
sigma_k^2 ~ eta / 4. h = eta sigma_k^2 keeps the bias at eta / 4 on every level. Chains persist across output blocks; each block runs n_skip steps
and returns, per chain, the lowest-sigma state it saw. Every score and classifier
call is counted: a step is one score and one classifier evaluation.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

import sampling
import sde_lib
from errors import lookup
from sde_lib import bcast

Array = jax.Array
VeScoreFn = Callable[[Array, Array], Array]   # (x_hat [B, ...], sigma [B]) -> [B, ...]


def ve_score_fn(sde: sde_lib.SDE, score_fn) -> VeScoreFn:
  """grad_{x_hat} log p_sigma(x_hat) as (x_hat, sigma) -> [B, ...] (`sde.ve_score`).

  The score itself, not (D - x) / sigma^2 from the denoiser, which would lose float32
  digits at sigma ~ 0.01.
  """
  return lambda x_hat, sigma: sde.ve_score(score_fn, x_hat, sigma)


def _argmax(key, logits):
  del key
  return jnp.argmax(logits, axis=-1).astype(jnp.int32)


def _gibbs(key, logits):
  return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


SIGMA_UPDATES = {'argmax': _argmax, 'gibbs': _gibbs}
ETA_SCALINGS = {'sigma2': lambda eta, sigma: eta * sigma ** 2,
                'none': lambda eta, sigma: eta * jnp.ones_like(sigma)}


class Chains(NamedTuple):
  x: Array   # [C, ...] VE-view states
  k: Array   # [C] int32 ladder indices


def make_step(ve_score: VeScoreFn, logits_fn, sigmas: Array, *, sigma_update: str = 'gibbs',
              eta_scaling: str = 'sigma2'):
  """Builds `step(key, chains, eta) -> chains`, one DLG step.

  Args:
    ve_score: from `ve_score_fn`.
    logits_fn: x_hat [C, ...] -> classifier logits [C, L] (or the exact log p_{sigma_k}).
    sigmas: the ladder [L].
    sigma_update: 'argmax' (the reference implementation) or 'gibbs' (a draw from q).
    eta_scaling: 'sigma2' (h = eta sigma_k^2) or 'none' (h = eta).
  """
  update = lookup(SIGMA_UPDATES, sigma_update, 'dmcmc.sigma_update')
  scale = lookup(ETA_SCALINGS, eta_scaling, 'dmcmc.eta_scaling')

  def step(key, chains: Chains, eta) -> Chains:
    z_key, k_key = jax.random.split(key)
    sigma = sigmas[chains.k]
    h = scale(eta, sigma)
    z = jax.random.normal(z_key, chains.x.shape)
    # langevin_update(eps) is x + eps s + sqrt(2 eps) z: eps = h / 2 gives the DLG step.
    x, _ = sampling.langevin_update(chains.x, ve_score(chains.x, sigma), z, h / 2.)
    return Chains(x, update(k_key, logits_fn(x)))

  return step


def run_steps(step, key: Array, chains: Chains, eta, num_steps: int) -> Chains:
  """`num_steps` DLG steps at step size eta (the warm-up uses eta0)."""
  if num_steps == 0:
    return chains
  return jax.lax.scan(lambda c, k: (step(k, c, eta), None), chains,
                      jax.random.split(key, num_steps))[0]


def run_block(step, key: Array, chains: Chains, eta, n_skip: int, *,
              include_start: bool = False, n_track: int = 0):
  """One output block: n_skip DLG steps, keeping per chain the lowest-sigma state seen.

  Ties keep the latest state. With include_start=False the block's starting state is
  never a candidate, so consecutive outputs of a chain are different states.

  Returns:
    (chains after the block, best Chains, trajectory) where the trajectory holds the
    states of the first n_track chains after each step: x [n_skip, n_track, ...] and
    k [n_skip, n_track].
  """
  if n_skip < 1:
    raise ValueError(f'n_skip={n_skip} must be >= 1')
  best = chains if include_start else Chains(chains.x, jnp.full_like(chains.k, 2 ** 30))

  def body(carry, key):
    chains, best = carry
    chains = step(key, chains, eta)
    better = chains.k <= best.k
    best = Chains(jnp.where(bcast(better, chains.x), chains.x, best.x),
                  jnp.where(better, chains.k, best.k))
    return (chains, best), (chains.x[:n_track], chains.k[:n_track])

  (chains, best), traj = jax.lax.scan(body, (chains, best), jax.random.split(key, n_skip))
  return chains, best, traj


def init_chains(key: Array, step, logits_fn, sigmas: Array, shape: tuple[int, ...], *,
                finisher=None, init_noise: float = 0., eta0: float = 0.,
                warmup_steps: int = 0) -> tuple[Chains, dict]:
  """Initial chains: prior draw, optional finisher run, optional noise, K warm-up steps.

  Args:
    step: from `make_step`.
    shape: [C, ...] chain states.
    finisher: None, or `finish(key, x_hat, sigma_start) -> (x0, integrator_nfe)` from
      integrators.get_finisher, run from sigma_max to data (then Tweedie) for a rough start.
    init_noise: std of Gaussian noise added after that (VE view).
    eta0, warmup_steps: the warm-up step size and K.
  Returns:
    The chains and the initialisation cost per chain: score NFE and classifier calls.
  """
  prior_key, fin_key, noise_key, warm_key = jax.random.split(key, 4)
  x = sigmas[-1] * jax.random.normal(prior_key, shape)   # VE view of p_{sigma_max}
  score_nfe = 0
  if finisher is not None:
    x, nfe = finisher(fin_key, x, jnp.full((shape[0],), sigmas[-1]))
    score_nfe = score_nfe + nfe + 1   # + its Tweedie step
  if init_noise > 0:
    x = x + init_noise * jax.random.normal(noise_key, shape)
  k = _argmax(None, logits_fn(x))     # the start level: the classifier's best guess
  chains = run_steps(step, warm_key, Chains(x, k), eta0, warmup_steps)
  return chains, {'score_nfe': score_nfe + warmup_steps, 'classifier_calls': 1 + warmup_steps}
