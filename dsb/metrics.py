"""The Gaussian KL of the benchmark (sliced Wasserstein: the project's metrics.py)."""
from __future__ import annotations

import numpy as np


def gaussian_kl(m1: np.ndarray, s1: np.ndarray, m2: np.ndarray, s2: np.ndarray) -> float:
  """KL(N(m1, s1) || N(m2, s2)) in nats (float64)."""
  m1, s1, m2, s2 = (np.asarray(a, np.float64) for a in (m1, s1, m2, s2))
  d = len(m1)
  s2_inv = np.linalg.inv(s2)
  diff = m2 - m1
  _, logdet1 = np.linalg.slogdet(s1)
  _, logdet2 = np.linalg.slogdet(s2)
  return float(0.5 * (np.trace(s2_inv @ s1) + diff @ s2_inv @ diff - d + logdet2 - logdet1))
