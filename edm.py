"""EDM samplers (Karras et al. 2022, "Elucidating the Design Space of Diffusion-
Based Generative Models"), Algorithms 1 (deterministic Heun) and 2 (stochastic).

They run in the VE view of any SDE: x_t = alpha(t) x_hat with x_hat = x0 + sigma z,
sigma = sde.ve_sigma(t). In that view the denoiser is Tweedie's
D(x_hat; sigma) = x_hat + sigma^2 grad log p_sigma(x_hat) (`sde.ve_denoise`), with
grad_{x_hat} log p = alpha(t) score_fn(alpha(t) x_hat, t) at t = sde.t_from_ve_sigma(sigma)
(`sde.ve_score`).
So a VE, VP or sub-VP model samples the same marginals with the same algorithm.

The noise levels are an argument and may be per sample ([N + 1, B]), so a chain
state (x_n, sigma_n) of DMCMC can be finished from its own sigma_n.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

import sde_lib
from sde_lib import bcast

Array = jax.Array


def karras_sigmas(sigma_max, sigma_min, num_steps: int, rho: float = 7.) -> Array:
  """sigma_i = (s_max^(1/rho) + i/(N-1) (s_min^(1/rho) - s_max^(1/rho)))^rho, then 0 (Eq. 5).

  Args:
    sigma_max, sigma_min: scalars or per-sample [B].
  Returns:
    [N + 1] or [N + 1, B] levels, the last one 0.
  """
  sigma_max, sigma_min = jnp.asarray(sigma_max, jnp.float32), jnp.asarray(sigma_min, jnp.float32)
  frac = jnp.arange(num_steps, dtype=jnp.float32) / max(num_steps - 1, 1)
  frac = frac.reshape((-1,) + (1,) * sigma_max.ndim)
  a, b = sigma_max ** (1. / rho), sigma_min ** (1. / rho)
  sigmas = (a + frac * (b - a)) ** rho
  return jnp.concatenate([sigmas, jnp.zeros_like(sigmas[:1])])


def ve_denoiser(sde: sde_lib.SDE, score_fn):
  """D(x_hat; sigma) [B, ...] in the VE view of `sde` (`sde.ve_denoise`), per-sample sigma [B]."""
  return lambda x_hat, sigma: sde.ve_denoise(score_fn, x_hat, sigma)


def edm_sample(key: Array, score_fn, sde: sde_lib.SDE, x_init: Array, grid: Array, *,
               s_churn: float = 0., s_noise: float = 1., s_tmin: float = 0.,
               s_tmax: float = float('inf'), heun: bool = True) -> tuple[Array, int]:
  """Karras et al. 2022 Algorithm 2 (Algorithm 1 when s_churn = 0); a `sampling` driver.

  Args:
    x_init: the starting state in the VE view, x_hat ~ p_{grid[0]} ([B, ...]);
      for a fresh sample, grid[0] * N(0, I).
    grid: the levels sigma_0 > ... > sigma_{N-1} > 0, then 0: [N + 1] or per sample
      [N + 1, B], e.g. `karras_sigmas`.
    heun: the 2nd-order correction (off: Euler).
  Returns:
    Samples [B, ...] (sigma = 0, where the VE view equals data space) and the NFE:
    N with Euler, 2N - 1 with Heun (no correction on the last step to sigma = 0).
  """
  b, num_steps = x_init.shape[0], grid.shape[0] - 1
  sigmas = jnp.broadcast_to(grid.reshape(num_steps + 1, -1), (num_steps + 1, b))
  denoise = ve_denoiser(sde, score_fn)
  gamma_max = min(s_churn / num_steps, 2 ** 0.5 - 1)

  def step(x, inputs, correct: bool):
    k, sigma, sigma_next = inputs
    # Churn: raise the noise level to sigma_hat by adding fresh noise (lines 5-6).
    gamma = jnp.where((sigma >= s_tmin) & (sigma <= s_tmax), gamma_max, 0.)
    sigma_hat = sigma * (1. + gamma)
    noise = jax.random.normal(k, x.shape) * s_noise
    # sqrt(sigma_hat^2 - sigma^2) = sigma sqrt(gamma (2 + gamma)): exactly 0 when gamma = 0.
    x_hat = x + bcast(sigma * jnp.sqrt(gamma * (2. + gamma)), x) * noise
    # Euler step of dx/dsigma = (x - D(x; sigma)) / sigma (lines 7-8).
    d = (x_hat - denoise(x_hat, sigma_hat)) / bcast(sigma_hat, x)
    x_next = x_hat + bcast(sigma_next - sigma_hat, x) * d
    if correct:  # Heun's 2nd-order correction (lines 9-11)
      d2 = (x_next - denoise(x_next, sigma_next)) / bcast(sigma_next, x)
      x_next = x_hat + bcast(sigma_next - sigma_hat, x) * (d + d2) / 2.
    return x_next, None

  keys = jax.random.split(key, num_steps)
  inputs = (keys, sigmas[:-1], sigmas[1:])
  head = jax.tree.map(lambda v: v[:-1], inputs)
  last = jax.tree.map(lambda v: v[-1], inputs)
  x, _ = jax.lax.scan(lambda x, i: step(x, i, heun), x_init, head)
  x, _ = step(x, last, False)   # the last step ends at sigma = 0: Euler (line 9's condition)
  return x, (2 * num_steps - 1) if heun else num_steps
