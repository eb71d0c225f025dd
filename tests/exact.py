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


def marginal_coeffs(sde: sde_lib.SDE, t, discrete: bool = False):
  """(a(t), std(t)) of the perturbation kernel: [B] each.

  discrete=True gives the kernels of the discrete chains that the discrete
  losses train on (DDPM's alphabar_i; SMLD's sigma_i equals sigma(t_i) exactly).
  """
  if discrete and sde.discrete_scheme is not None:
    return sde.discrete_marginal(jnp.ones_like(t), sde.timestep(t))
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

  # Labelled mixture: the label of a point is its component y. Then p_t(x | y) is the
  # diffused component N(a mu_y, (a^2 s_y^2 + std^2) I) and p_t(y | x) the responsibility.

  def sample_labelled(self, key, n: int):
    """(x [n, D], components y [n]) of the mixture."""
    k1, k2 = jax.random.split(key)
    comp = jax.random.choice(k1, len(self.weights), (n,), p=self.weights)
    z = jax.random.normal(k2, (n, self.dim))
    return self.means[comp] + self.stds[comp][:, None] * z, comp

  def class_score_fn(self, sde: sde_lib.SDE, labels):
    """The exact class-conditional score grad log p_t(x | y) of samples with labels y [B]."""
    labels = jnp.asarray(labels)

    def score_fn(x, t):
      a, std = marginal_coeffs(sde, t)
      _, scaled = self._components(x, a, std)
      return -jnp.take_along_axis(scaled, labels[:, None, None], axis=1)[:, 0]

    return score_fn

  def posterior_logits_fn(self, sde: sde_lib.SDE):
    """The exact noisy posterior as classifier logits: (x [B, D], t [B]) -> [B, K] with
    softmax = p_t(y | x) = w_y N_y / sum_k w_k N_k (log w_k N_k; the per-row constant cancels)."""

    def logits(x, t):
      a, std = marginal_coeffs(sde, t)
      return self._components(x, a, std)[0]

    return logits

  def tempered_moments(self, y: int, w: float, half_width: float = 6., n: int = 1201):
    """Mean [2] and covariance [2, 2] of q(x) ∝ p(x) p(y | x)^w at t = 0, for D = 2.

    Quadrature on an n x n grid over the box mean +- half_width, float64. The integrands
    are smooth and decay like Gaussians, so the trapezoid sums converge geometrically: at
    spacing 0.01 and stds >= 0.3 the moments are exact to far below any sampling error.
    """
    assert self.dim == 2
    w_, mu, s = (np.asarray(v, np.float64) for v in (self.weights, self.means, self.stds))
    centre = w_ @ mu
    g = np.linspace(-half_width, half_width, n)
    x = np.stack(np.meshgrid(centre[0] + g, centre[1] + g, indexing='ij'), -1).reshape(-1, 2)
    d2 = ((x[:, None, :] - mu[None]) ** 2).sum(-1)
    log_joint = np.log(w_) - 0.5 * d2 / s ** 2 - np.log(2 * np.pi * s ** 2)   # [n^2, K]
    log_p = np.logaddexp.reduce(log_joint, axis=1)
    log_q = log_p + w * (log_joint[:, y] - log_p)
    q = np.exp(log_q - log_q.max())
    q /= q.sum()
    mean = q @ x
    c = x - mean
    return mean, (q[:, None] * c).T @ c


def gaussian(dim: int, std: float = 1., mean: float = 0.) -> GaussianMixture:
  """N(mean 1, std^2 I) in `dim` dimensions as a one-component mixture."""
  return GaussianMixture([1.], np.full((1, dim), mean), [std])


def default_gmm(dim: int = 2) -> GaussianMixture:
  """A three-component, well-separated, unequal-weight mixture for tests."""
  rng = np.random.default_rng(0)
  means = rng.normal(size=(3, dim))
  means *= 3. / np.linalg.norm(means, axis=1, keepdims=True)
  return GaussianMixture([0.5, 0.3, 0.2], means, [0.3, 0.5, 0.4])


def prior_mismatch_bpd(data: GaussianMixture, sde: sde_lib.SDE, z) -> np.ndarray:
  """(log pi(z) - log p_T(z)) / (D ln 2) [B], bits/dim: what the SDE's prior pi adds to a
  PF-ODE log-likelihood whose latent is z [B, D] (p_T the exact marginal at T)."""
  t = jnp.full((z.shape[0],), sde.T)
  # pi restated from the papers (Song et al. 2021, App. C): N(0, sigma_max^2 I) for VE,
  # N(0, I) for VP and sub-VP; not sde.prior_logp, so that a wrong prior there shows.
  var = sde.sigma_max ** 2 if sde.name == 'vesde' else 1.
  z64 = np.asarray(z, np.float64)
  log_pi = -0.5 * data.dim * np.log(2 * np.pi * var) - 0.5 * (z64 ** 2).sum(-1) / var
  return (log_pi - np.asarray(data.log_prob_fn(sde)(z, t), np.float64)) / (data.dim * np.log(2))


def p_t_draws(data: GaussianMixture, sde: sde_lib.SDE, key, n: int):
  """n direct draws of p_T, a(T) x0 + std(T) z: [n, D]."""
  k1, k2 = jax.random.split(key)
  a, std = marginal_coeffs(sde, jnp.full((n,), sde.T))
  return a[:, None] * data.sample(k1, n) + std[:, None] * jax.random.normal(k2, (n, data.dim))


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


def ladder_log_probs(data: GaussianMixture, x, sigmas):
  """log p_{sigma_k}(x) [B, L] of the VE view (x0 + sigma_k z) at each ladder level.

  With a uniform prior over the L levels this is, up to a per-row constant, the exact
  log-posterior log q(k | x): the logits of DMCMC's ideal noise-level classifier.
  """
  ones = jnp.ones((x.shape[0],))
  return jax.vmap(lambda s: data.log_prob_t(x, ones, s * ones), out_axes=1)(jnp.asarray(sigmas))


class GaussianBridge:
  """The Schrödinger bridge between N(m0, S0) and N(m1, S1) for the reference sigma W_t on [0, 1].

  Static coupling (entropic OT with cost |x - y|^2 / (2 sigma^2); Mallasto et al. 2021,
  Bunne et al. 2023 Thm. 3): jointly Gaussian with cross-covariance
    C = 1/2 (S0^{1/2} D S0^{-1/2} - sigma^2 I),  D = (4 S0^{1/2} S1 S0^{1/2} + sigma^4 I)^{1/2}.
  The bridge is the mixture of Brownian bridges over this coupling, so
    X_t = (1 - t) X0 + t X1 + sigma sqrt(t (1 - t)) Z,
    Sigma_t = (1-t)^2 S0 + t^2 S1 + t (1-t) (C + C^T + sigma^2 I),
  and its Markov drift f_t(x) = (E[X1 | X_t = x] - x) / (1 - t) simplifies to
    f_t(x) = m1 - m0 + M_t Sigma_t^{-1} (x - mu_t),
    M_t = (1-t) C^T - t C + t S1 - (1-t) S0 - sigma^2 t I,
  which solves dSigma/dt = M + M^T + sigma^2 I. All float64 numpy.
  """

  def __init__(self, m0, s0, m1, s1, sigma: float):
    self.m0, self.m1 = np.asarray(m0, np.float64), np.asarray(m1, np.float64)
    self.s0, self.s1 = np.asarray(s0, np.float64), np.asarray(s1, np.float64)
    self.sigma2 = float(sigma) ** 2
    self.dim = len(self.m0)
    r0 = _sqrtm(self.s0)
    dmat = _sqrtm(4. * r0 @ self.s1 @ r0 + self.sigma2 ** 2 * np.eye(self.dim))
    self.cross = 0.5 * (r0 @ dmat @ np.linalg.inv(r0) - self.sigma2 * np.eye(self.dim))

  def joint_cov(self) -> np.ndarray:
    """Covariance of (X0, X1): [2D, 2D]."""
    return np.block([[self.s0, self.cross], [self.cross.T, self.s1]])

  def marginal(self, t: float) -> tuple[np.ndarray, np.ndarray]:
    """(mu_t [D], Sigma_t [D, D])."""
    c = self.cross
    cov = ((1 - t) ** 2 * self.s0 + t ** 2 * self.s1
           + t * (1 - t) * (c + c.T + self.sigma2 * np.eye(self.dim)))
    return (1 - t) * self.m0 + t * self.m1, cov

  def drift(self, x: np.ndarray, t: float) -> np.ndarray:
    """f_t(x) for x [B, D]."""
    c = self.cross
    mu, cov = self.marginal(t)
    m_t = ((1 - t) * c.T - t * c + t * self.s1 - (1 - t) * self.s0
           - self.sigma2 * t * np.eye(self.dim))
    return self.m1 - self.m0 + (x - mu) @ np.linalg.solve(cov, m_t.T)


def _sqrtm(s: np.ndarray) -> np.ndarray:
  """Symmetric PSD square root."""
  w, v = np.linalg.eigh(s)
  return (v * np.sqrt(np.maximum(w, 0.))) @ v.T


def population_dsb(gammas, m0, s0, m1, s1, n_ipf: int, reference=None) -> dict:
  """DSB's IPF with exact (infinite-data) mean matching between N(m0, s0) and N(m1, s1).

  Brownian reference (reference=None), or ('ou', m, v): the Euler-Langevin chain towards
  N(m, v), F_k(x) = x - gamma_k (x - m) / v (dsb/schedule.py's formula, restated). Gaussian
  steps of variance 2 gamma_k, gamma_k the step from X_k to X_{k+1} in either direction. For an affine
  simulating chain x -> L x + c the mean-matching regression of the opposite direction has
  the affine optimum x + L (E[X_other | x] - x), with E[. | .] from the chain's exact
  Gaussian marginals. Its distance to `GaussianBridge` is DSB's discretisation bias.

  Returns:
    {'forward' | 'backward': {'A': [N + 1, D, D], 'c': [N + 1, D]}}, the `dsb.networks.AffineNet`
    parameters (mean x + A_k x + c_k) after n_ipf iterations.
  """
  gammas = np.asarray(gammas, np.float64)
  n, d = len(gammas), len(m0)
  fwd = (np.tile(np.eye(d), (n + 1, 1, 1)), np.zeros((n + 1, d)))
  if reference is not None:
    _, m, v = reference
    g = np.concatenate([gammas, [0.]])[:, None, None]     # F_N is never used
    fwd = ((1. - g / v) * np.eye(d), g[:, :, 0] * m / v * np.ones(d))
  for _ in range(n_ipf):
    bwd = _population_half(*fwd, gammas, m0, s0, sim_forward=True)
    fwd = _population_half(*bwd, gammas, m1, s1, sim_forward=False)
  as_params = lambda maps: {'A': maps[0] - np.eye(d), 'c': maps[1]}
  return {'forward': as_params(fwd), 'backward': as_params(bwd)}


def _population_half(lin, c, gammas, m, s, *, sim_forward: bool):
  """The optimal maps (lin [N + 1, D, D], c [N + 1, D]) of the direction opposite to the chain
  x -> lin_k x + c_k started from N(m, s) at its own end."""
  n, d = len(gammas), len(m)
  ms, ss = [np.asarray(m, np.float64)], [np.asarray(s, np.float64)]
  for i in range(n):
    k = i if sim_forward else n - i
    g = gammas[i] if sim_forward else gammas[n - 1 - i]
    ms.append(lin[k] @ ms[-1] + c[k])
    ss.append(lin[k] @ ss[-1] @ lin[k].T + 2 * g * np.eye(d))
  if not sim_forward:
    ms, ss = ms[::-1], ss[::-1]   # grid order X_0..X_N
  new_lin, new_c = np.tile(np.eye(d), (n + 1, 1, 1)), np.zeros((n + 1, d))
  for k in range(n):
    # sim_forward: B_{k+1} at X_{k+1} (sim map F_k); else F_k at X_k (sim map B_{k+1}).
    i_in, i_out, k_sim, k_new = (k + 1, k, k, k + 1) if sim_forward else (k, k + 1, k + 1, k)
    gain = ss[i_out] @ lin[k_sim].T @ np.linalg.inv(ss[i_in])   # E[X_out | x] - mu_out
    new_lin[k_new] = np.eye(d) + lin[k_sim] @ (gain - np.eye(d))
    new_c[k_new] = lin[k_sim] @ (ms[i_out] - gain @ ms[i_in])
  return new_lin, new_c


# ----------------------------------------------------------------------------- linear-Gaussian chains
# For Gaussian data N(mu, Sigma) the score at t is affine, s(x) = K x + k with
# K = -(a^2 Sigma + std^2 I)^{-1}, k = -K a mu, so every sampler step is x' = A x + b + Q^{1/2} z
# and the law of the sampler's output is Gaussian with moments propagated exactly:
# m' = A m + b, S' = A S A^T + Q. The coefficients below are written from the papers' formulas
# (Song et al. 2021, Eqs. 6, 13, 30-33, 46-47; App. G), not from sde_lib, and use the physical
# noise level of each grid step, so a sampler that reads another level, step or scale differs.

class FullGaussian:
  """N(mean, cov) data [B, D] with the exact score under any SDE (float32 JAX) and its
  affine coefficients (float64 numpy)."""

  def __init__(self, mean, cov):
    self.mean, self.cov = np.asarray(mean, np.float64), np.asarray(cov, np.float64)
    self.dim = len(self.mean)
    lam, u = np.linalg.eigh(self.cov)
    self._lam, self._u = jnp.asarray(lam, jnp.float32), jnp.asarray(u, jnp.float32)

  def score_fn(self, sde):
    mean = jnp.asarray(self.mean, jnp.float32)

    def score(x, t):
      a, std = sde.alpha(t)[:, None], sde.marginal_std(t)[:, None]
      r = (x.reshape(x.shape[0], -1) - a * mean) @ self._u
      return -((r / (a ** 2 * self._lam + std ** 2)) @ self._u.T).reshape(x.shape)

    return score

  def score_coeffs(self, a: float, std: float):
    """(K [D, D], k [D]) with score(x) = K x + k at marginal coefficients a, std."""
    big_k = -np.linalg.inv(a ** 2 * self.cov + std ** 2 * np.eye(self.dim))
    return big_k, -big_k @ (a * self.mean)

  def sample(self, key, n):
    z = np.asarray(jax.random.normal(key, (n, self.dim)), np.float64)
    return self.mean + z @ np.linalg.cholesky(self.cov).T


class ChainCoeffs:
  """An SDE's continuous coefficients and discrete chain, from the formulas (float64).

  kind 've': sigma(t) = smin (smax/smin)^t, f = 0, g^2 = sigma^2 2 log(smax/smin); its chain is
  SMLD's geometric ladder sigma_0 < ... < sigma_{N-1}. 'vp' / 'subvp': beta(t) linear,
  B(t) = int_0^t beta, a = e^{-B/2}, f = -beta/2 x, g^2 = beta (VP) or beta (1 - e^{-2B})
  (sub-VP); std^2 = 1 - e^{-B} (VP), std = 1 - e^{-B} (sub-VP); VP's chain is DDPM's with
  betas linspace(b0/N, b1/N, N), sub-VP's the Euler step of size 1/N.
  """

  def __init__(self, kind: str, n: int, lo: float, hi: float):
    self.kind, self.n, self.lo, self.hi = kind, n, lo, hi

  def a_std(self, t):
    if self.kind == 've':
      return 1., self.lo * (self.hi / self.lo) ** t
    big_b = self.lo * t + (self.hi - self.lo) * t ** 2 / 2
    if self.kind == 'vp':
      return np.exp(-big_b / 2), np.sqrt(1 - np.exp(-big_b))
    return np.exp(-big_b / 2), 1 - np.exp(-big_b)

  def f_g2(self, t):
    """(linear drift coefficient f, squared diffusion g^2) at t."""
    if self.kind == 've':
      return 0., self.a_std(t)[1] ** 2 * 2 * np.log(self.hi / self.lo)
    beta = self.lo + t * (self.hi - self.lo)
    big_b = self.lo * t + (self.hi - self.lo) * t ** 2 / 2
    return -beta / 2, beta * (1 - np.exp(-2 * big_b)) if self.kind == 'subvp' else beta

  def level(self, i: int):
    """The forward chain's step at level i (0 = least noise): (F, G^2), x_{i+1} = x_i + F x_i + G z."""
    if self.kind == 've':
      sig = lambda j: self.lo * (self.hi / self.lo) ** (j / (self.n - 1))
      return 0., sig(i) ** 2 - (sig(i - 1) ** 2 if i > 0 else 0.)
    if self.kind == 'vp':
      beta = (self.lo + (self.hi - self.lo) * i / (self.n - 1)) / self.n
      return np.sqrt(1 - beta) - 1, beta
    raise ValueError('sub-VP has no chain of its own: use `euler_level`')

  def langevin_alpha(self, i: int) -> float:
    return 1 - self.level(i)[1] if self.kind == 'vp' else 1.

  def prior(self):
    return self.hi if self.kind == 've' else 1.


def pc_output_law(data: FullGaussian, c: ChainCoeffs, eps: float, predictor: str,
                  corrector: str = 'none', *, probability_flow: bool = False, snr: float = 0.16,
                  n_steps_each: int = 1, denoise: bool = True, x0_law=None, known=None):
  """Exact (mean [D], cov [D, D]) of PC sampling on N(mu, Sigma) with the exact score.

  Grid t_j = linspace(1, eps, N), t_N = 0; step j visits level i = N - 1 - j. Corrector then
  predictor at each point (Song et al. 2021, Alg. 1-2). Predictors, with c = 1/2 and no noise
  for the probability flow:
    euler_maruyama:    x + [c g^2 s - f x] dt + g sqrt(dt) z,  dt = t_j - t_{j+1}  (Eq. 6 / 13)
    reverse_diffusion: x - F x + c G^2 s + G z, (F, G) the forward chain's level i (Eq. 46);
                       sub-VP: F = f / N, G^2 = g^2 / N.
  Correctors: ald with eps_j = 2 alpha_i (snr std_j)^2; langevin (D = 1 only) with
  eps_j = 2 alpha_i (snr E|z| / E|s|)^2, the batch-mean norms at their large-batch limits
  (|s| is a folded normal). Then x + eps s + sqrt(2 eps) z. x0_law: the initial (mean, cov),
  default the prior N(0, sigma_max^2 I) (VE) or N(0, I).

  known = (mask [D] bool, y0 [D]): the replacement method of constrained sampling (Song et
  al. 2021, App. I.2). After the prior draw at T, after each corrector (at t_j) and after each
  predictor (at t_{j+1}) the masked coordinates of x are a fresh draw of N(a y0, std^2 I),
  independent of the rest, and those of the predictor's mean are a y0.
  """
  d, n = data.dim, c.n
  eye = np.eye(d)
  m, s = x0_law if x0_law is not None else (np.zeros(d), c.prior() ** 2 * eye)
  grid = list(np.linspace(1., eps, n)) + [0.]
  half = 0.5 if probability_flow else 1.
  impose = lambda m, s, t, noise=True: _impose(m, s, known, *c.a_std(t), noise)
  m, s = impose(m, s, 1.)
  m_mean, s_mean = m, s
  for j in range(n):
    t, tn, i = grid[j], grid[j + 1], n - 1 - j
    big_k, k = data.score_coeffs(*c.a_std(t))
    for _ in range(n_steps_each if corrector != 'none' else 0):
      if corrector == 'ald':
        step = 2 * c.langevin_alpha(i) * (snr * c.a_std(t)[1]) ** 2
      elif corrector == 'langevin':
        assert d == 1, 'the langevin norm limit is closed-form in one dimension'
        mu_s, sd_s = float(big_k[0, 0] * m[0] + k[0]), float(abs(big_k[0, 0]) * np.sqrt(s[0, 0]))
        from scipy.special import erf
        e_abs_s = (sd_s * np.sqrt(2 / np.pi) * np.exp(-mu_s ** 2 / (2 * sd_s ** 2))
                   + mu_s * erf(mu_s / (sd_s * np.sqrt(2))))
        step = 2 * c.langevin_alpha(i) * (snr * np.sqrt(2 / np.pi) / e_abs_s) ** 2
      else:
        raise ValueError(corrector)
      a_mat = eye + step * big_k
      m, s = a_mat @ m + step * k, a_mat @ s @ a_mat.T + 2 * step * eye
    if corrector != 'none':
      m, s = impose(m, s, t)
    if predictor == 'euler_maruyama':
      f, g2 = c.f_g2(t)
      dt = t - tn
      a_mat, b, q = eye + (half * g2 * big_k - f * eye) * dt, half * g2 * k * dt, g2 * dt
    elif predictor == 'reverse_diffusion':
      big_f, g2 = ((c.f_g2(t)[0] / n, c.f_g2(t)[1] / n) if c.kind == 'subvp' else c.level(i))
      a_mat, b, q = eye - big_f * eye + half * g2 * big_k, half * g2 * k, g2
    elif predictor == 'none':
      a_mat, b, q = eye, np.zeros(d), 0.
    else:
      raise ValueError(predictor)
    m_mean, s_mean = a_mat @ m + b, a_mat @ s @ a_mat.T
    m, s = impose(m_mean, s_mean + (0. if probability_flow else q) * eye, tn)
    m_mean, s_mean = impose(m_mean, s_mean, tn, noise=False)
  return (m_mean, s_mean) if denoise else (m, s)


def _impose(m, s, known, a, std, noise=True):
  """The law after the masked coordinates are replaced by N(a y0, std^2 I) (or by a y0)."""
  if known is None:
    return m, s
  mask, y0 = known
  m, s = np.where(mask, a * np.asarray(y0, np.float64), m), s.copy()
  s[mask, :], s[:, mask] = 0., 0.
  s[mask, mask] = std ** 2 if noise else 0.
  return m, s


def ncsn_inpaint_law(data: FullGaussian, sigmas, n_steps_each: int, step_lr: float, known,
                     x0_law, denoise: bool = False):
  """Exact (mean, cov) of NCSN v1 inpainting (Song & Ermon 2019, App. B) on N(mu, Sigma).

  sigmas: sigma_1 > ... > sigma_L. At level i the masked part is y0 + sigma_i z', drawn once
  and held through the level's T steps x <- x + alpha_i/2 s + sqrt(alpha_i) z (re-imposed after
  each), alpha_i = step_lr sigma_i^2 / sigma_L^2. The held part is a state coordinate whose
  update is the identity, so the joint law of (unknown, held known) propagates affinely.
  Then optionally x + sigma_L^2 s. Returns the law before the masked part is set to y0.
  """
  mask, y0 = known
  d = data.dim
  eye, m, s = np.eye(d), *x0_law
  sigmas = np.asarray(sigmas, np.float64)
  free = np.diag(~mask).astype(np.float64)          # noise and updates on the unknown part only
  for sigma in sigmas:
    alpha = step_lr * sigma ** 2 / sigmas[-1] ** 2
    big_k, k = data.score_coeffs(1., sigma)
    m, s = _impose(m, s, known, 1., sigma)
    a_mat = eye + free @ (alpha / 2 * big_k)
    for _ in range(n_steps_each):
      m, s = a_mat @ m + free @ (alpha / 2 * k), a_mat @ s @ a_mat.T + alpha * free
  if denoise:
    big_k, k = data.score_coeffs(1., sigmas[-1])
    a_mat = eye + sigmas[-1] ** 2 * big_k
    m, s = a_mat @ m + sigmas[-1] ** 2 * k, a_mat @ s @ a_mat.T
  return m, s


def pf_affine_map(data: FullGaussian, c: ChainCoeffs, eps: float, predictor: str):
  """The deterministic PF predictor chain as x_out = A x_T + b: (A [D, D], b [D])."""
  d = data.dim
  # Propagating the law N(0, I) gives mean b and cov A A^T; A itself is the product of the
  # steps, recovered by propagating each basis vector as a zero-covariance mean.
  b = pc_output_law(data, c, eps, predictor, probability_flow=True,
                    x0_law=(np.zeros(d), np.zeros((d, d))))[0]
  cols = [pc_output_law(data, c, eps, predictor, probability_flow=True,
                        x0_law=(e, np.zeros((d, d))))[0] - b for e in np.eye(d)]
  return np.stack(cols, 1), b


def assert_gaussian_moments(x, mean, cov, n_se: float = 5.) -> None:
  """Sample mean / covariance of x [n, D] against a Gaussian law's exact ones, n_se standard
  errors: sqrt(S_ii / n) for means, sqrt((S_ii S_jj + S_ij^2) / n) for covariances (the
  Gaussian fourth moments). No allowance: the reference is the sampler's own exact law."""
  x = np.asarray(x, np.float64)
  n = x.shape[0]
  se_mean = np.sqrt(np.diag(cov) / n)
  se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov ** 2) / n)
  dm, dc = np.abs(x.mean(0) - mean), np.abs(np.cov(x.T).reshape(cov.shape) - cov)
  assert np.all(dm < n_se * se_mean), ('mean', x.mean(0), mean, dm / se_mean)
  assert np.all(dc < n_se * se_cov), ('cov', np.cov(x.T), cov, dc / se_cov)
