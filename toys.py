"""2-D toy distributions: samplers of [n, 2] points from a numpy Generator.

`TOYS` maps each name to `sampler(rng, n)`. The `gmm` toy is a Gaussian mixture
with known parameters (`toy_gmm_params`), so exact scores exist for it.
"""
import numpy as np

# --------------------------------------------------------------------------
# 2-D toys. The FFJORD ones (rtqichen/ffjord lib/toy_data.py) are rewritten on
# np.random.Generator and multiplied by _FFJORD_SCALE, so that they lie roughly
# in [-2, 2]^2 instead of [-4, 4]^2.
_FFJORD_SCALE = 0.5
EIGHT_GAUSSIANS_RADIUS = _FFJORD_SCALE * 4. / 1.414   # ~1.414
EIGHT_GAUSSIANS_STD = _FFJORD_SCALE * 0.5 / 1.414     # ~0.177
_EIGHT_DIRECTIONS = np.stack(
    [np.cos(np.arange(8) * np.pi / 4), np.sin(np.arange(8) * np.pi / 4)], 1)


def sample_checkerboard(rng: np.random.Generator, n: int) -> np.ndarray:
  """Uniform on the 8 squares of side 0.5 in [-1, 1]^2 where floor(2x) + floor(2y)
  is even."""
  x1 = rng.uniform(-2., 2., n)
  x2 = rng.uniform(0., 1., n) - 2. * rng.integers(0, 2, n) + np.floor(x1) % 2
  return _FFJORD_SCALE * np.stack([x1, x2], 1)


def sample_8gaussians(rng: np.random.Generator, n: int) -> np.ndarray:
  """8 equal Gaussians: means at radius EIGHT_GAUSSIANS_RADIUS, angles k pi / 4,
  std EIGHT_GAUSSIANS_STD."""
  centres = 4. * _EIGHT_DIRECTIONS[rng.integers(0, 8, n)]
  return _FFJORD_SCALE * (centres + 0.5 * rng.standard_normal((n, 2))) / 1.414


def sample_swissroll(rng: np.random.Generator, n: int) -> np.ndarray:
  """sklearn's swiss roll (x, z) with noise 1, / 5 as FFJORD, x 0.5: in ~[-1.5, 1.5]^2.

  t ~ U[1.5 pi, 4.5 pi], x = (t cos t, t sin t) + N(0, I), returned as x / 10.
  """
  t = 1.5 * np.pi * (1. + 2. * rng.uniform(size=n))
  x = np.stack([t * np.cos(t), t * np.sin(t)], 1) + rng.standard_normal((n, 2))
  return _FFJORD_SCALE * x / 5.


def sample_moons(rng: np.random.Generator, n: int) -> np.ndarray:
  """sklearn's two moons (noise 0.1), * 2 + (-1, -0.2) as FFJORD, x 0.5:
  in ~[-1.5, 1.5]^2."""
  t = rng.uniform(0., np.pi, n)
  upper = (rng.random(n) < 0.5)[:, None]
  x = np.where(upper, np.stack([np.cos(t), np.sin(t)], 1),
               np.stack([1. - np.cos(t), 0.5 - np.sin(t)], 1))
  x = x + 0.1 * rng.standard_normal((n, 2))
  return _FFJORD_SCALE * (2. * x + np.array([-1., -0.2]))


def sample_circles(rng: np.random.Generator, n: int) -> np.ndarray:
  """Two equally likely circles of radius 1.5 and 0.75, isotropic noise std 0.12.

  sklearn's make_circles(factor=0.5, noise=0.08) * 3 as FFJORD, x 0.5; angles
  are drawn uniformly rather than on sklearn's grid.
  """
  radius = np.where(rng.random(n) < 0.5, 1., 0.5)
  angle = rng.uniform(0., 2. * np.pi, n)
  x = radius[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)
  return _FFJORD_SCALE * 3. * (x + 0.08 * rng.standard_normal((n, 2)))


def sample_pinwheel(rng: np.random.Generator, n: int) -> np.ndarray:
  """FFJORD's 5-arm pinwheel (its x2 cancels our x 0.5): in ~[-2, 2]^2.

  A point (r, s) ~ N((1, 0), diag(0.3^2, 0.1^2)) is rotated by -(2 pi k / 5 +
  0.25 exp(r)) for an arm k drawn uniformly (FFJORD uses n // 5 points per arm).
  """
  arm = rng.integers(0, 5, n)
  f = rng.standard_normal((n, 2)) * np.array([0.3, 0.1]) + np.array([1., 0.])
  a = 2. * np.pi * arm / 5 + 0.25 * np.exp(f[:, 0])
  c, s = np.cos(a), np.sin(a)
  return 2. * _FFJORD_SCALE * np.stack(
      [f[:, 0] * c + f[:, 1] * s, -f[:, 0] * s + f[:, 1] * c], 1)


def sample_scurve(rng: np.random.Generator, n: int) -> np.ndarray:
  """sklearn's S curve, columns (x, z), noise 0.1 (as DSB, unscaled): in [-1, 1] x [-2, 2].

  t ~ U[-1.5 pi, 1.5 pi], x = (sin t, sign(t) (cos t - 1)) + 0.1 N(0, I).
  """
  t = 3. * np.pi * (rng.uniform(size=n) - 0.5)
  x = np.stack([np.sin(t), np.sign(t) * (np.cos(t) - 1.)], 1)
  return x + 0.1 * rng.standard_normal((n, 2))


def toy_gmm_params(dim: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """The known Gaussian mixture of the `gmm` toy: 4 isotropic components.

  Component k has mean 1.5 * (+-e_{k mod dim}) (sign - when (k // dim) is odd,
  so in 2-D the means are (1.5, 0), (0, 1.5), (-1.5, 0), (0, -1.5)).

  Args:
    dim: data dimension D.

  Returns:
    weights [4] = (0.1, 0.2, 0.3, 0.4), means [4, D], stds [4] = (0.2, 0.3, 0.4, 0.5).
  """
  weights = np.array([0.1, 0.2, 0.3, 0.4])
  means = np.zeros((4, dim))
  for k in range(4):
    means[k, k % dim] = 1.5 * (-1. if (k // dim) % 2 else 1.)
  return weights, means, np.array([0.2, 0.3, 0.4, 0.5])


def sample_gmm_labelled(rng: np.random.Generator, n: int,
                        dim: int = 2) -> tuple[np.ndarray, np.ndarray]:
  """Draws [n, dim] points from the mixture `toy_gmm_params(dim)` and their components [n]."""
  weights, means, stds = toy_gmm_params(dim)
  k = rng.choice(len(weights), size=n, p=weights)
  return means[k] + stds[k, None] * rng.standard_normal((n, dim)), k.astype(np.int32)


def sample_gmm(rng: np.random.Generator, n: int, dim: int = 2) -> np.ndarray:
  """Draws [n, dim] points from the mixture `toy_gmm_params(dim)` (the same draws as
  `sample_gmm_labelled`, without the labels)."""
  return sample_gmm_labelled(rng, n, dim)[0]


TOYS = {
    'checkerboard': sample_checkerboard,
    '8gaussians': sample_8gaussians,
    'swissroll': sample_swissroll,
    'moons': sample_moons,
    'circles': sample_circles,
    'pinwheel': sample_pinwheel,
    'scurve': sample_scurve,
    'gmm': sample_gmm,   # 2-D here; get_dataset passes data.dim
}
