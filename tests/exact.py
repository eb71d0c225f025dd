"""Exact references shared by tests and benchmarks: no trained network needed.

For data x0 ~ sum_k w_k N(mu_k, s_k^2 I) and a marginal x_t = a(t) x0 + std(t) z,
every p_t is again a Gaussian mixture, sum_k w_k N(a mu_k, (a^2 s_k^2 + std^2) I),
so its score and log-density are closed-form at every t. A single Gaussian is
the one-component case.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

import sde_lib
from sde_lib import bcast


def marginal_coeffs(sde: sde_lib.SDE, t, discrete: bool = False):
  """(a(t), std(t)) of the perturbation kernel: [B] each.

  discrete=True gives the kernels of the discrete chains that the discrete
  losses train on (DDPM's alphabar_i; SMLD's sigma_i equals sigma(t_i) exactly).
  """
  if discrete and isinstance(sde, sde_lib.VPSDE):
    abar = sde.alphas_cumprod[sde.timestep(t)]
    return jnp.sqrt(abar), jnp.sqrt(1. - abar)
  if discrete and isinstance(sde, sde_lib.VESDE):
    return jnp.ones_like(t), sde.discrete_sigmas[sde.timestep(t)]
  return sde.alpha(t), sde.marginal_std(t)


class GaussianMixture:
  """Isotropic Gaussian mixture data with exact scores and log-densities under an SDE.

  Args:
    weights: [K], summing to 1.
    means: [K, D].
    stds: [K] component standard deviations.
  """

  def __init__(self, weights, means, stds):
    self.weights = jnp.asarray(weights, jnp.float32)
    self.means = jnp.asarray(means, jnp.float32)
    self.stds = jnp.asarray(stds, jnp.float32)
    self.dim = self.means.shape[1]

  def sample(self, key, n: int):
    k1, k2 = jax.random.split(key)
    comp = jax.random.choice(k1, len(self.weights), (n,), p=self.weights)
    z = jax.random.normal(k2, (n, self.dim))
    return self.means[comp] + self.stds[comp][:, None] * z

  def _components(self, x, a, std):
    """Per-component log N(x; a mu_k, v_k I) [B, K] and the residuals [B, K, D] / v_k."""
    v = a[:, None] ** 2 * self.stds[None, :] ** 2 + std[:, None] ** 2                # [B, K]
    diff = x[:, None, :] - a[:, None, None] * self.means[None]                     # [B, K, D]
    logn = (-0.5 * jnp.sum(diff ** 2, -1) / v - 0.5 * self.dim * jnp.log(2 * jnp.pi * v))
    return logn + jnp.log(self.weights)[None], diff / v[..., None]

  def log_prob_t(self, x, a, std):
    """log p_t(x) [B] for x [B, D] with kernel coefficients a, std: [B]."""
    logn, _ = self._components(x, a, std)
    return logsumexp(logn, axis=-1)

  def score_t(self, x, a, std):
    """grad_x log p_t(x): [B, D]."""
    logn, scaled = self._components(x, a, std)
    resp = jax.nn.softmax(logn, axis=-1)
    return -jnp.sum(resp[..., None] * scaled, axis=1)

  def score_fn(self, sde: sde_lib.SDE, discrete: bool = False):
    """The exact `score_fn(x [B, D], t [B])` of the diffused mixture."""

    def score_fn(x, t):
      a, std = marginal_coeffs(sde, t, discrete)
      return self.score_t(x, a, std)

    return score_fn

  def log_prob_fn(self, sde: sde_lib.SDE):
    def log_prob(x, t):
      a, std = marginal_coeffs(sde, t)
      return self.log_prob_t(x, a, std)
    return log_prob


def gaussian(dim: int, std: float = 1., mean: float = 0.) -> GaussianMixture:
  """N(mean 1, std^2 I) in `dim` dimensions as a one-component mixture."""
  return GaussianMixture([1.], np.full((1, dim), mean), [std])


def default_gmm(dim: int = 2) -> GaussianMixture:
  """A three-component, well-separated, unequal-weight mixture for tests."""
  rng = np.random.default_rng(0)
  means = rng.normal(size=(3, dim))
  means *= 3. / np.linalg.norm(means, axis=1, keepdims=True)
  return GaussianMixture([0.5, 0.3, 0.2], means, [0.3, 0.5, 0.4])


def assert_same_moments(x, ref, allowance: float) -> None:
  """Mean and covariance of samples x [n, D] against a reference sample of the same size.

  Each entry must agree within 5 standard errors of the difference of two independent
  samples (sqrt(2) times the reference's own, estimated from it) plus `allowance` for
  the bias of the method under test.
  """
  x, ref = np.asarray(x, np.float64), np.asarray(ref, np.float64)
  n, d = ref.shape
  c = ref - ref.mean(0)
  se_mean = ref.std(0) / np.sqrt(n)
  se_cov = (c[:, :, None] * c[:, None, :]).reshape(n, -1).std(0).reshape(d, d) / np.sqrt(n)
  assert np.all(np.abs(x.mean(0) - ref.mean(0)) < 5 * np.sqrt(2) * se_mean + allowance), (
      x.mean(0), ref.mean(0))
  assert np.all(np.abs(np.cov(x.T) - np.cov(ref.T)) < 5 * np.sqrt(2) * se_cov + allowance), (
      np.cov(x.T), np.cov(ref.T))
