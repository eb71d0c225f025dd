"""DSB pictures: trajectories and densities in 2-D, trajectory grids for images."""
from __future__ import annotations

import os

import numpy as np

import io_utils


def _pyplot():
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  return plt


def _save(fig, path):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  _pyplot().close(fig)


def trajectories_2d(path: str, traj: np.ndarray, title: str, num_panels: int = 6,
                    num_paths: int = 24) -> None:
  """The backward chain from the prior (k = N, left) to the samples (k = 0, right).

  Each panel scatters the states X_k and draws num_paths paths from X_N to X_k.

  Args:
    traj: [N + 1, B, 2] in grid order (X_0 data end .. X_N prior end).
  """
  if not io_utils.is_writer():
    return
  plt = _pyplot()
  n = traj.shape[0] - 1
  ks = np.unique(np.linspace(0, n, num_panels).round().astype(int))[::-1]
  lim = np.quantile(np.abs(traj), 0.995) * 1.1
  fig, axes = plt.subplots(1, len(ks), figsize=(3 * len(ks), 3.2), squeeze=False)
  for ax, k in zip(axes[0], ks):
    ax.scatter(traj[k, :, 0], traj[k, :, 1], s=1, alpha=0.4)
    if k < n:
      ax.plot(traj[k:, :num_paths, 0], traj[k:, :num_paths, 1], lw=0.5, alpha=0.6)
    ax.set_title(f'k = {k}' + (' (prior)' if k == n else ' (samples)' if k == 0 else ''))
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect('equal')
  fig.suptitle(title)
  _save(fig, path)


def density_2d(path: str, samples: np.ndarray, reference: np.ndarray, title: str,
               bins: int = 80) -> None:
  """2-D histograms of samples [n, 2] and reference data [m, 2] on a shared grid."""
  if not io_utils.is_writer():
    return
  plt = _pyplot()
  lim = np.quantile(np.abs(reference), 0.998) * 1.2
  edges = np.linspace(-lim, lim, bins + 1)
  fig, axes = plt.subplots(1, 2, figsize=(8, 4))
  for ax, (name, pts) in zip(axes, [('samples', samples), ('data', reference)]):
    ax.hist2d(pts[:, 0], pts[:, 1], bins=[edges, edges], density=True, cmap='viridis')
    ax.set_title(f'{name} {title}')
    ax.set_aspect('equal')
  _save(fig, path)


def trajectories_images(path: str, traj: np.ndarray, inverse_scaler, num_rows: int = 8,
                        num_cols: int = 8) -> None:
  """A grid: each row is one chain, columns are num_cols grid points from X_N to X_0."""
  n = traj.shape[0] - 1
  ks = np.unique(np.linspace(n, 0, num_cols).round().astype(int))[::-1]
  rows = traj[ks][:, :num_rows]                            # [cols, rows, H, W, C]
  images = np.swapaxes(rows, 0, 1).reshape((-1,) + traj.shape[2:])
  io_utils.save_image_grid(path, np.clip(inverse_scaler(images), 0., 1.),
                           upscale=max(1, 64 // traj.shape[2]))
