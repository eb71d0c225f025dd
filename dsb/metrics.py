"""Distances between sample sets, and the Gaussian KL of the benchmark."""
from __future__ import annotations

import numpy as np


def sliced_wasserstein(x: np.ndarray, y: np.ndarray, num_projections: int = 256,
                       seed: int = 0) -> float:
  """SW_2 between two equally sized samples [n, ...]: sqrt(E_theta W_2^2(theta.x, theta.y)).

  In one dimension W_2 between empirical laws of equal size pairs the sorted samples;
  theta is uniform on the unit sphere (fixed seed, so iterations are comparable).
  """
  x = np.asarray(x, np.float64).reshape(len(x), -1)
  y = np.asarray(y, np.float64).reshape(len(y), -1)
  if x.shape != y.shape:
    raise ValueError(f'sliced_wasserstein needs equal shapes, got {x.shape} and {y.shape}')
  theta = np.random.default_rng(seed).standard_normal((x.shape[1], num_projections))
  theta /= np.linalg.norm(theta, axis=0, keepdims=True)
  px, py = np.sort(x @ theta, axis=0), np.sort(y @ theta, axis=0)
  return float(np.sqrt(np.mean((px - py) ** 2)))


def gaussian_kl(m1: np.ndarray, s1: np.ndarray, m2: np.ndarray, s2: np.ndarray) -> float:
  """KL(N(m1, s1) || N(m2, s2)) in nats (float64)."""
  m1, s1, m2, s2 = (np.asarray(a, np.float64) for a in (m1, s1, m2, s2))
  d = len(m1)
  s2_inv = np.linalg.inv(s2)
  diff = m2 - m1
  _, logdet1 = np.linalg.slogdet(s1)
  _, logdet2 = np.linalg.slogdet(s2)
  return float(0.5 * (np.trace(s2_inv @ s1) + diff @ s2_inv @ diff - d + logdet2 - logdet1))
