"""Forward SDEs, their marginals, priors, discretisations and reverse processes.

All SDE mathematics of the project lives here (Song et al. 2021, "Score-Based
Generative Modeling through Stochastic Differential Equations", Sec. 3 and
App. B-C). Losses, samplers, likelihood, EDM and DMCMC only call these methods
and never branch on an SDE's class. Each SDE owns:

- the continuous process: `sde` (f, g), `marginal_prob` (Eq. 29), prior, `reverse` (Eq. 6, 13);
- its VE view x_t = alpha(t) x_hat, x_hat = x0 + sigma z: `alpha`, `ve_sigma`,
  `t_from_ve_sigma`, `ve_score`, `ve_denoise` (Karras et al. 2022, Sec. 2);
- Tweedie's posterior mean `tweedie`; the likelihood-weighting proposal of t (`lw_*`);
- its discrete chain on N levels, if it has one (`discrete_scheme`: SMLD for VE, DDPM for
  VP, none for sub-VP): level <-> time (`level_time`, `timestep`), `discrete_marginal`,
  the forward step `discretize`, `ancestral_step` (Eq. 47) and `langevin_alpha`;
- and, as a module function, the geometric sigma ladder `geometric_sigmas`.

Every SDE is an immutable (frozen, hashable) dataclass, so it can be closed over
or passed as a static argument under `jax.jit`. Arrays are `[B, ...]` with a
time vector `t: [B]`; per-sample scalars are broadcast with `bcast`.
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Callable, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from errors import ConfigError, lookup

Array = jax.Array
ScoreFn = Callable[[Array, Array], Array]


def bcast(v: Array, x: Array) -> Array:
  """Reshapes a per-sample vector `v: [B]` to broadcast against `x: [B, ...]`."""
  return jnp.reshape(v, v.shape + (1,) * (x.ndim - v.ndim))


def _sum_except_batch(x: Array) -> Array:
  return jnp.sum(x.reshape(x.shape[0], -1), axis=-1)


def geometric_sigmas(sigma_first, sigma_last, n: int) -> Array:
  """The geometric ladder sigma_j = sigma_first (sigma_last / sigma_first)^(j / (n - 1)).

  SMLD's noise levels (Song & Ermon 2019, Sec. 4.2; VESDE's discrete chain, Song et al.
  2021, App. C) and DMCMC's ladder: exp of n points evenly spaced in log sigma.

  Args:
    sigma_first, sigma_last: the end points, either order; Python/numpy scalars (their
      log is taken in float64) or per-sample arrays [B].
    n: number of levels (>= 2 for distinct end points).
  Returns:
    [n], or [n, B] for per-sample end points; j = 0 is sigma_first.
  """
  log = lambda v: jnp.log(v) if isinstance(v, jax.Array) else np.log(v)
  return jnp.exp(jnp.linspace(log(sigma_first), log(sigma_last), n))


@dataclasses.dataclass(frozen=True)
class SDE(abc.ABC):
  """dx = f(x, t) dt + g(t) dw on t in [0, T] (Song et al. 2021, Eq. 5).

  `name` is the SDE's key in `SDES` (config `training.sde`). `discrete_scheme` names the
  Markov chain on N levels that the SDE discretises ('smld', 'ddpm'), or is None when
  it has none (sub-VP): then the `discrete_*` and `ancestral_step` methods raise.
  """

  N: int = 1000
  name: ClassVar[str] = ''
  discrete_scheme: ClassVar[str | None] = None

  @property
  def T(self) -> float:
    return 1.

  @abc.abstractmethod
  def sde(self, x: Array, t: Array) -> tuple[Array, Array]:
    """Returns the drift f(x, t) [B, ...] and diffusion g(t) [B]."""

  @abc.abstractmethod
  def marginal_prob(self, x0: Array, t: Array) -> tuple[Array, Array]:
    """Returns mean [B, ...] and std [B] of the perturbation kernel p_0t(x | x0)."""

  @abc.abstractmethod
  def prior_sampling(self, key: Array, shape: tuple[int, ...]) -> Array:
    """Draws from p_T."""

  @abc.abstractmethod
  def prior_logp(self, z: Array) -> Array:
    """log p_T(z) for each sample: [B]."""

  # The 'VE view' of the marginal: x_t = alpha(t) * (x0 + sigma(t) * z), so that
  # x_t / alpha(t) follows a VE process with noise level sigma(t). EDM-style
  # samplers and DMCMC work in this view for every SDE.
  @abc.abstractmethod
  def alpha(self, t: Array) -> Array:
    """Mean scale of the marginal, alpha(t) = E[x_t | x0] / x0: [B]."""

  def marginal_std(self, t: Array) -> Array:
    """Std of the marginal perturbation kernel: [B]."""
    return self.marginal_prob(jnp.zeros_like(t), t)[1]

  def ve_sigma(self, t: Array) -> Array:
    """Noise level of the VE view, sigma(t) = std(t) / alpha(t): [B]."""
    return self.marginal_std(t) / self.alpha(t)

  @abc.abstractmethod
  def t_from_ve_sigma(self, sigma: Array) -> Array:
    """Inverse of `ve_sigma`: the time at which the VE-view noise level is sigma."""

  # Importance sampling of t for lambda = g^2 (Song, Durkan, Murray & Ermon 2021, Sec. 5):
  # t ~ p(t) = (g^2/std^2) / M on [eps, T], by inverting F, an antiderivative of g^2/std^2
  # that each SDE gives in closed form with its inverse (`lw_antiderivative`, `lw_inverse`).
  @abc.abstractmethod
  def lw_antiderivative(self, t: Array) -> Array:
    """F(t), with F' = g^2 / std^2."""

  @abc.abstractmethod
  def lw_inverse(self, f: Array) -> Array:
    """The t with F(t) = f."""

  def lw_mass(self, eps: float) -> Array:
    """M = int_eps^T g^2 / std^2 dt."""
    return self.lw_antiderivative(jnp.asarray(self.T)) - self.lw_antiderivative(jnp.asarray(eps))

  def lw_sample_t(self, key: Array, n: int, eps: float) -> Array:
    u = jax.random.uniform(key, (n,))
    return self.lw_inverse(self.lw_antiderivative(jnp.asarray(eps)) + u * self.lw_mass(eps))

  def ve_score(self, score_fn: ScoreFn, x_hat: Array, sigma: Array) -> Array:
    """The score of the VE view, grad_{x_hat} log p_sigma(x_hat): [B, ...].

    x_t = alpha(t) x_hat, so by the chain rule grad_{x_hat} log p = alpha(t) s(alpha(t) x_hat, t)
    at t = t_from_ve_sigma(sigma) (Karras et al. 2022, Sec. 2 and Table 1: their s(t) is alpha(t)).

    Args:
      score_fn: the score in x_t, (x [B, ...], t [B]) -> [B, ...].
      x_hat: VE-view states [B, ...]; sigma: their noise levels [B].
    """
    t = self.t_from_ve_sigma(sigma)
    alpha = bcast(self.alpha(t), x_hat)
    return alpha * score_fn(alpha * x_hat, t)

  def ve_denoise(self, score_fn: ScoreFn, x_hat: Array, sigma: Array) -> Array:
    """Tweedie's formula in the VE view, D(x_hat; sigma) = x_hat + sigma^2 grad log p_sigma.

    The ideal denoiser E[x0 | x_hat] of Karras et al. 2022 (Eq. 3); the same identity as
    `tweedie`, written in x_hat = x_t / alpha(t). Shapes as `ve_score`.
    """
    return x_hat + bcast(sigma ** 2, x_hat) * self.ve_score(score_fn, x_hat, sigma)

  def tweedie(self, score_fn: ScoreFn, x: Array, t: Array) -> Array:
    """E[x0 | x_t = x] = (x + std(t)^2 score(x, t)) / alpha(t) (Tweedie's formula): [B, ...].

    Exact for the Gaussian kernel of `marginal_prob` (Efron 2011); one score evaluation.
    """
    std = self.marginal_std(t)
    return (x + bcast(std ** 2, x) * score_fn(x, t)) / bcast(self.alpha(t), x)

  # ------------------------------------------------------------- the discrete chain
  # Levels i = 0..N-1, 0 = least noise; level i sits at time t_i = i / (N - 1) T.

  def level_time(self, i: Array) -> Array:
    """t_i = i / (N - 1) T, the time of level i, as the discrete losses draw it: [B].

    `timestep` inverts it exactly (timestep(level_time(i)) == i).
    """
    return i / (self.N - 1) * self.T

  def timestep(self, t: Array) -> Array:
    """Index of the discrete noise level used at time t (0 = least noise): [B] int32.

    floor(t (N - 1) / T), as score_sde: on a sampler grid linspace(T, eps, N) with
    eps (N - 1) < 1 it visits every level once (rounding would skip level 0 and
    repeat another once eps N >= 1/2). The small slack keeps t = i / (N - 1), as the discrete losses
    draw it, on level i despite float32 rounding (ulp(1000) = 6e-5).
    """
    x = t * (self.N - 1) / self.T
    return jnp.floor(x + 1e-4 + 4e-7 * x).astype(jnp.int32)

  def _no_chain(self, what: str):
    raise ConfigError(f'{type(self).__name__} has no discrete chain, hence no {what}; use '
                      'training.continuous=True')

  def discrete_marginal(self, x0: Array, i: Array) -> tuple[Array, Array]:
    """Mean [B, ...] and std [B] of the discrete chain's kernel p(x_i | x0) at level i [B] int.

    Raises:
      ConfigError: the SDE has no discrete chain (`discrete_scheme` is None).
    """
    del x0, i
    self._no_chain('discrete marginal')

  def discrete_std(self, i: Array) -> Array:
    """Std of `discrete_marginal` at level i: [B]."""
    return self.discrete_marginal(jnp.zeros(jnp.shape(i)), i)[1]

  def ancestral_step(self, x: Array, score: Array, t: Array, z: Array) -> tuple[Array, Array]:
    """One step of ancestral sampling of the discrete chain (Song et al. 2021, Eq. 47).

    From level i = timestep(t) to i - 1, given the score at (x, t) and noise z (like x).

    Returns:
      The new x and its mean (both like x).
    Raises:
      ConfigError: the SDE has no discrete chain.
    """
    del x, score, t, z
    self._no_chain('ancestral step')

  def langevin_alpha(self, t: Array) -> Array:
    """alpha_i of the Langevin correctors (Song et al. 2021, Algorithms 4-5): [B].

    1 for VE and sub-VP; VP overrides it with 1 - beta_i of its DDPM chain. For sub-VP
    score_sde indexes `sde.alphas`, which it never defines, and crashes: sub-VP has no
    chain whose beta_i could define alpha_i, so it takes 1 as VE does (VP's 1 - beta_i
    is within beta_max / N of 1 anyway: 2% at N = 1000).
    """
    return jnp.ones_like(t)

  def discrete_chain_problem(self) -> str | None:
    """Why the N-level discrete chain is not a valid Markov chain, or None."""
    return None

  def discretize(self, x: Array, t: Array) -> tuple[Array, Array]:
    """One forward step x_{i+1} = x_i + f_i + G_i z_i: f [B, ...] and G [B]. The default is
    Euler-Maruyama with dt = T / N: f = f(x, t) dt, G = g(t) sqrt(dt)."""
    dt = self.T / self.N
    drift, diffusion = self.sde(x, t)
    return drift * dt, diffusion * jnp.sqrt(dt)

  def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> 'ReverseSDE':
    """The reverse-time SDE (Eq. 6) or probability-flow ODE (Eq. 13) for `score_fn`."""
    return ReverseSDE(self, score_fn, probability_flow)


class ReverseSDE:
  """dx = [f - c g^2 score] dt + (1 - pf) g dw_bar, with c = 1/2 for the PF ODE.

  Not a dataclass on purpose: it holds a `score_fn` closure, is built once per
  sampler (outside any loop) and is never hashed.
  """

  def __init__(self, forward: SDE, score_fn: ScoreFn, probability_flow: bool):
    self.forward = forward
    self.score_fn = score_fn
    self.probability_flow = probability_flow
    self.N = forward.N
    self.T = forward.T

  def _reverse(self, x, t, f, g):
    c = 0.5 if self.probability_flow else 1.
    score = self.score_fn(x, t)
    rev_f = f - bcast(g ** 2, x) * score * c
    rev_g = jnp.zeros_like(g) if self.probability_flow else g
    return rev_f, rev_g

  def sde(self, x: Array, t: Array) -> tuple[Array, Array]:
    """Reverse drift and diffusion (Eq. 6 / Eq. 13), to be integrated from T to 0."""
    return self._reverse(x, t, *self.forward.sde(x, t))

  def discretize(self, x: Array, t: Array) -> tuple[Array, Array]:
    """Reverse of the forward discretisation (the 'reverse diffusion' predictor, Eq. 46)."""
    return self._reverse(x, t, *self.forward.discretize(x, t))


@dataclasses.dataclass(frozen=True)
class VESDE(SDE):
  """Variance exploding SDE: dx = sigma(t) sqrt(2 log(sigma_max/sigma_min)) dw (Eq. 30).

  sigma(t) = sigma_min (sigma_max / sigma_min)^t, marginal N(x0, sigma(t)^2 I). Its
  discretisation is SMLD's chain on the geometric ladder sigma_0 < ... < sigma_{N-1}
  (Song & Ermon 2019; Song et al. 2021, Sec. 3.4), sigma_i = sigma(t_i):
    forward    x_i = x_{i-1} + sqrt(sigma_i^2 - sigma_{i-1}^2) z,  sigma_{-1} = 0
    marginal   x_i | x0 ~ N(x0, sigma_i^2 I)
    ancestral  x_{i-1} = x_i + (sigma_i^2 - sigma_{i-1}^2) s
                         + sqrt(sigma_{i-1}^2 (sigma_i^2 - sigma_{i-1}^2) / sigma_i^2) z  (Eq. 47)
  As in score_sde, the marginal std is sigma(t), not sqrt(sigma(t)^2 - sigma_min^2):
  x(0) is taken to carry noise of std sigma_min already, which keeps p_0 smooth.
  """

  sigma_min: float = 0.01
  sigma_max: float = 50.
  name: ClassVar[str] = 'vesde'
  discrete_scheme: ClassVar[str | None] = 'smld'

  def sigma(self, t: Array) -> Array:
    return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

  @property
  def discrete_sigmas(self) -> Array:
    """SMLD's ladder sigma_0 < ... < sigma_{N-1}, geometric from sigma_min to sigma_max: [N]."""
    return geometric_sigmas(self.sigma_min, self.sigma_max, self.N)

  def _sigma_pair(self, t: Array) -> tuple[Array, Array]:
    """(sigma_i, sigma_{i-1}) at level i = timestep(t), with sigma_{-1} = 0: [B] each."""
    i = self.timestep(t)
    sigmas = self.discrete_sigmas
    return sigmas[i], jnp.where(i == 0, 0., sigmas[jnp.maximum(i - 1, 0)])

  def sde(self, x, t):
    diffusion = self.sigma(t) * np.sqrt(2 * (np.log(self.sigma_max) - np.log(self.sigma_min)))
    return jnp.zeros_like(x), diffusion

  def marginal_prob(self, x0, t):
    return x0, self.sigma(t)

  def alpha(self, t):
    return jnp.ones_like(t)

  def lw_antiderivative(self, t):   # g^2 / std^2 = 2 log(sigma_max / sigma_min): uniform
    return 2. * np.log(self.sigma_max / self.sigma_min) * t

  def lw_inverse(self, f):
    return f / (2. * np.log(self.sigma_max / self.sigma_min))

  def t_from_ve_sigma(self, sigma):
    return jnp.log(sigma / self.sigma_min) / np.log(self.sigma_max / self.sigma_min)

  def prior_sampling(self, key, shape):
    return jax.random.normal(key, shape) * self.sigma_max

  def prior_logp(self, z):
    n = np.prod(z.shape[1:])
    return (-n / 2. * np.log(2 * np.pi * self.sigma_max ** 2)
            - _sum_except_batch(z ** 2) / (2 * self.sigma_max ** 2))

  def discretize(self, x, t):
    """SMLD: x_i = x_{i-1} + sqrt(sigma_i^2 - sigma_{i-1}^2) z, sigma_{-1} = 0."""
    sigma, adjacent = self._sigma_pair(t)
    return jnp.zeros_like(x), jnp.sqrt(sigma ** 2 - adjacent ** 2)

  def discrete_marginal(self, x0, i):
    """SMLD's kernel N(x0, sigma_i^2 I), sigma_i = sigma(t_i) exactly."""
    return x0, self.discrete_sigmas[i]

  def ancestral_step(self, x, score, t, z):
    """Eq. 47: x_{i-1} = x_i + d s + sqrt(sigma_{i-1}^2 d / sigma_i^2) z.

    d = sigma_i^2 - sigma_{i-1}^2, with sigma_{-1} = 0 (no noise on the last step).
    """
    sigma, prev = self._sigma_pair(t)
    x_mean = x + bcast(sigma ** 2 - prev ** 2, x) * score
    std = jnp.sqrt(prev ** 2 * (sigma ** 2 - prev ** 2) / sigma ** 2)
    return x_mean + bcast(std, x) * z, x_mean


@dataclasses.dataclass(frozen=True)
class _LinearBetaSDE(SDE):
  """Shared beta(t) = beta_0 + t (beta_1 - beta_0) of the VP and sub-VP SDEs."""

  beta_min: float = 0.1
  beta_max: float = 20.

  def beta(self, t: Array) -> Array:
    return self.beta_min + t * (self.beta_max - self.beta_min)

  def log_mean_coeff(self, t: Array) -> Array:
    """log alpha(t) = -1/2 int_0^t beta(s) ds."""
    return -0.25 * t ** 2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

  def alpha(self, t):
    return jnp.exp(self.log_mean_coeff(t))

  def t_from_ve_sigma(self, sigma):
    # Solve log(1 + sigma^2) = int_0^t beta = beta_0 t + (beta_1 - beta_0) t^2 / 2.
    # For VP, sigma^2 = (1 - alpha^2)/alpha^2 gives this directly; sub-VP overrides.
    return self._t_from_integral(jnp.log1p(sigma ** 2))

  def _integral(self, t: Array) -> Array:   # B(t) = int_0^t beta = -2 log alpha(t)
    return -2. * self.log_mean_coeff(t)

  def _t_from_integral(self, b: Array) -> Array:
    """Positive root t of beta_0 t + (beta_1 - beta_0) t^2 / 2 = b."""
    d = self.beta_max - self.beta_min
    return 2 * b / (self.beta_min + jnp.sqrt(self.beta_min ** 2 + 2 * d * b))

  def prior_sampling(self, key, shape):
    return jax.random.normal(key, shape)

  def prior_logp(self, z):
    n = np.prod(z.shape[1:])
    return -n / 2. * np.log(2 * np.pi) - _sum_except_batch(z ** 2) / 2.


@dataclasses.dataclass(frozen=True)
class VPSDE(_LinearBetaSDE):
  """Variance preserving SDE: dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw (Eq. 32).

  Marginal N(alpha(t) x0, (1 - alpha(t)^2) I). Its discretisation is DDPM's Markov chain
  (Ho et al. 2020, Eq. 2 and 4; Song et al. 2021, Sec. 3.4 and App. B) with
  beta_i = linspace(beta_min / N, beta_max / N, N)_i and alphabar_i = prod_{j<=i} (1 - beta_j):
    forward    x_i = sqrt(1 - beta_i) x_{i-1} + sqrt(beta_i) z
    marginal   x_i | x0 ~ N(sqrt(alphabar_i) x0, (1 - alphabar_i) I)
    ancestral  x_{i-1} = (x_i + beta_i s) / sqrt(1 - beta_i) + sqrt(beta_i) z
               (Ho et al. 2020, Algorithm 2 in score form; Song et al. 2021, Eq. 47)
  It needs beta_i < 1, i.e. N > beta_max.
  """

  name: ClassVar[str] = 'vpsde'
  discrete_scheme: ClassVar[str | None] = 'ddpm'

  @property
  def discrete_betas(self) -> Array:
    """beta_i of the DDPM chain: [N]."""
    return jnp.linspace(self.beta_min / self.N, self.beta_max / self.N, self.N)

  @property
  def alphas_cumprod(self) -> Array:
    """alphabar_i = prod_{j<=i} (1 - beta_j): [N]."""
    return jnp.cumprod(1. - self.discrete_betas)

  def sde(self, x, t):
    beta_t = self.beta(t)
    return -0.5 * bcast(beta_t, x) * x, jnp.sqrt(beta_t)

  def marginal_prob(self, x0, t):
    lmc = self.log_mean_coeff(t)
    return bcast(jnp.exp(lmc), x0) * x0, jnp.sqrt(-jnp.expm1(2. * lmc))

  def discretize(self, x, t):
    """DDPM: x_i = sqrt(1 - beta_i) x_{i-1} + sqrt(beta_i) z."""
    beta = self.discrete_betas[self.timestep(t)]
    return (bcast(jnp.sqrt(1. - beta), x) - 1.) * x, jnp.sqrt(beta)

  def discrete_marginal(self, x0, i):
    """DDPM's kernel N(sqrt(alphabar_i) x0, (1 - alphabar_i) I) (Ho et al. 2020, Eq. 4)."""
    abar = self.alphas_cumprod[i]
    return bcast(jnp.sqrt(abar), x0) * x0, jnp.sqrt(1. - abar)

  def ancestral_step(self, x, score, t, z):
    """x_{i-1} = (x_i + beta_i s) / sqrt(1 - beta_i) + sqrt(beta_i) z (Ho et al. 2020, Alg. 2)."""
    beta = self.discrete_betas[self.timestep(t)]
    x_mean = (x + bcast(beta, x) * score) / bcast(jnp.sqrt(1. - beta), x)
    return x_mean + bcast(jnp.sqrt(beta), x) * z, x_mean

  def lw_antiderivative(self, t):
    # g^2 / std^2 = beta / (1 - e^{-B}) = d/dt log(e^B - 1), with B = int_0^t beta.
    return jnp.log(jnp.expm1(self._integral(t)))

  def lw_inverse(self, f):
    return self._t_from_integral(jax.nn.softplus(f))     # B = log(1 + e^f)

  def langevin_alpha(self, t):
    """1 - beta_i of the DDPM chain at level timestep(t) (score_sde's Algorithms 4-5)."""
    return 1. - self.discrete_betas[self.timestep(t)]

  def discrete_chain_problem(self):
    if self.N <= self.beta_max:   # sqrt(1 - beta_i) undefined at beta_i >= 1
      return (f"VP's beta_i = beta_max/N reach {self.beta_max / self.N:.3g} >= 1; "
              f'use more than {self.beta_max:g} steps')
    return None


@dataclasses.dataclass(frozen=True)
class subVPSDE(_LinearBetaSDE):
  """Sub-VP SDE: dx = -1/2 beta x dt + sqrt(beta(t) (1 - e^{-2 int_0^t beta})) dw (Eq. 17).

  Its marginal std is 1 - alpha(t)^2, never above the VP one (Eq. 29). It has no
  discrete chain of its own (`discrete_scheme` None): only continuous training, and
  `discretize` is the default Euler-Maruyama step.
  """

  name: ClassVar[str] = 'subvpsde'

  def sde(self, x, t):
    beta_t = self.beta(t)
    discount = -jnp.expm1(-2. * self.beta_min * t - (self.beta_max - self.beta_min) * t ** 2)
    return -0.5 * bcast(beta_t, x) * x, jnp.sqrt(beta_t * discount)

  def marginal_prob(self, x0, t):
    lmc = self.log_mean_coeff(t)
    return bcast(jnp.exp(lmc), x0) * x0, -jnp.expm1(2. * lmc)

  def lw_antiderivative(self, t):
    # g^2 / std^2 = beta (1 - e^{-2B}) / (1 - e^{-B})^2 = beta (e^B + 1) / (e^B - 1)
    # = d/dt [2 log(e^B - 1) - B].
    b = self._integral(t)
    return 2. * jnp.log(jnp.expm1(b)) - b

  def lw_inverse(self, f):
    # (y - 1)^2 / y = c with y = e^B > 1, c = e^f: y - 1 = (c + sqrt(c^2 + 4c)) / 2,
    # written without the cancellation of 1 + tiny at small t.
    c = jnp.exp(f)
    return self._t_from_integral(jnp.log1p((c + jnp.sqrt(c * (c + 4.))) / 2.))

  def t_from_ve_sigma(self, sigma):
    # sigma = (1 - a^2)/a with a = alpha(t) in (0, 1]: a = (sqrt(sigma^2 + 4) - sigma)/2.
    a = (jnp.sqrt(sigma ** 2 + 4.) - sigma) / 2.
    return self._t_from_integral(-2. * jnp.log(a))


SDES = {cls.name: cls for cls in (VESDE, VPSDE, subVPSDE)}


def get_sde(config) -> tuple[SDE, float]:
  """Builds the SDE named by `config.training.sde` from `config.model`.

  Returns:
    The SDE and the sampling end time eps (`config.sampling.eps`).
  """
  cls = lookup(SDES, config.training.sde.lower(), 'training.sde')
  m = config.model
  if m.num_scales < 1:
    raise ConfigError(f'model.num_scales={m.num_scales} must be a positive integer')
  if cls is VESDE:
    if not 0 < m.sigma_min < m.sigma_max:
      raise ConfigError('model.sigma_min and model.sigma_max must satisfy 0 < sigma_min < sigma_max')
    sde = VESDE(N=m.num_scales, sigma_min=m.sigma_min, sigma_max=m.sigma_max)
  else:
    if not 0 < m.beta_min <= m.beta_max:
      raise ConfigError('model.beta_min and model.beta_max must satisfy 0 < beta_min <= beta_max')
    sde = cls(N=m.num_scales, beta_min=m.beta_min, beta_max=m.beta_max)
  return sde, config.sampling.eps
