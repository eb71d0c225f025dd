"""Writing results: PNG grids, .npz arrays and JSON with run metadata.

Only process 0 writes (DESIGN.md); every helper here is a no-op elsewhere.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from typing import Any

import jax
import numpy as np

_REPO = os.path.dirname(os.path.abspath(__file__))


def is_writer() -> bool:
  return jax.process_index() == 0


def git_commit() -> str | None:
  try:
    out = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=_REPO, capture_output=True,
                         text=True, timeout=5)
    return out.stdout.strip() or None
  except (OSError, subprocess.SubprocessError):
    return None


def run_metadata(config) -> dict[str, Any]:
  """Config name, git commit and the command-line overrides of this run."""
  return {
      'config_name': config.get('name') or None,
      'git_commit': git_commit(),
      'overrides': [a for a in sys.argv[1:] if a.startswith('--config.')],
  }


def write_json(path: str, payload: dict[str, Any], config=None) -> None:
  if not is_writer():
    return
  os.makedirs(os.path.dirname(path), exist_ok=True)
  if config is not None:
    payload = {**payload, **run_metadata(config)}
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(payload, f, indent=2, default=float)
  os.replace(tmp, path)  # atomic: a reader never sees half a file


def append_jsonl(path: str, record: dict[str, Any]) -> None:
  """Appends one JSON line (the run's readable metric log, beside TensorBoard's)."""
  if not is_writer():
    return
  with open(path, 'a') as f:
    f.write(json.dumps(record, default=float) + '\n')


def to_uint8(images: np.ndarray) -> np.ndarray:
  """Images in [0, 1] -> uint8 as every PNG here is written: floor(clip(x, 0, 1) * 255 + 0.5).

  Round half up, as torchvision's save_image (mul(255).add_(0.5)). The sample
  metrics quantise with this same function, so they score exactly the saved PNGs.
  """
  return (np.clip(np.asarray(images, np.float32), 0., 1.) * 255 + 0.5).astype(np.uint8)


def image_grid(images: np.ndarray, pad: int = 1) -> np.ndarray:
  """Tiles [B, H, W, C] images in [0, 1] into one uint8 [rows*H, cols*W, C] array."""
  b, h, w, c = images.shape
  cols = int(math.ceil(math.sqrt(b)))
  rows = int(math.ceil(b / cols))
  grid = np.ones((rows * (h + pad) + pad, cols * (w + pad) + pad, c), np.float32)
  for i, img in enumerate(images):
    r, q = divmod(i, cols)
    grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = img
  return to_uint8(grid)


def save_image_grid(path: str, images: np.ndarray, upscale: int = 1) -> None:
  """Writes [B, H, W, C] images in [0, 1] as one PNG grid."""
  if not is_writer():
    return
  from PIL import Image
  grid = image_grid(np.asarray(images, np.float32))
  img = Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)
  if upscale > 1:  # tiny digits are unreadable at 1 px per pixel
    img = img.resize((img.width * upscale, img.height * upscale), Image.NEAREST)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  img.save(path)


def save_scatter(path: str, samples: np.ndarray, reference: np.ndarray | None = None,
                 title: str = '') -> None:
  """Writes a 2-D scatter plot of samples, beside reference data if given."""
  if not is_writer():
    return
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  panels = [('samples', samples)] + ([('data', reference)] if reference is not None else [])
  fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4), squeeze=False)
  lim = np.quantile(np.abs(np.concatenate([p for _, p in panels])[:, :2]), 0.995) * 1.1
  for ax, (name, pts) in zip(axes[0], panels):
    ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.5)
    ax.set_title(f'{name} {title}'.strip())
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect('equal')
  fig.tight_layout()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)


def write_result(prefix: str, arrays: dict[str, np.ndarray], *, images: np.ndarray | None = None,
                 upscale: int = 1, points: np.ndarray | None = None,
                 reference: np.ndarray | None = None, title: str = '',
                 meta: dict | None = None, config=None) -> dict[str, str]:
  """Writes a mode's result: <prefix>.npz, <prefix>.png and, if `meta` is given, <prefix>.json.

  Args:
    prefix: the path without extension, e.g. workdir/samples/<name>.
    arrays: what goes into the .npz (compressed).
    images: [B, H, W, C] in [0, 1], tiled into the PNG (one prepared picture: B = 1).
    upscale: nearest-neighbour magnification of the PNG.
    points: [B, 2+] instead of images: a scatter plot, beside `reference` if given.
    meta: the JSON payload; `config` adds the run metadata (run_metadata).
  Returns:
    The paths (the same on every process; only process 0 writes).
  """
  paths = {'png': prefix + '.png', 'npz': prefix + '.npz'}
  if meta is not None:
    paths['json'] = prefix + '.json'
  if not is_writer():
    return paths
  os.makedirs(os.path.dirname(prefix), exist_ok=True)
  np.savez_compressed(paths['npz'], **arrays)
  if images is not None:
    save_image_grid(paths['png'], images, upscale=upscale)
  elif points is not None:
    save_scatter(paths['png'], points, reference, title=title)
  if meta is not None:
    write_json(paths['json'], meta, config)
  return paths


def save_samples(prefix: str, samples: np.ndarray, *, is_image: bool, inverse_scaler=None,
                 reference: np.ndarray | None = None, meta: dict | None = None,
                 config=None) -> dict[str, str]:
  """Writes samples as <prefix>.png (a grid, or a scatter for 2-D data), <prefix>.npz and,
  if `meta` is given, <prefix>.json (`write_result`).

  Args:
    samples: [B, ...] in model space.
  Returns:
    The paths written.
  """
  samples = np.asarray(samples)
  if not is_image:
    return write_result(prefix, {'samples': samples}, points=samples, reference=reference,
                        meta=meta, config=config)
  images = np.asarray(inverse_scaler(samples)) if inverse_scaler else samples
  return write_result(prefix, {'samples': samples}, images=images,
                      upscale=max(1, 64 // samples.shape[1]), meta=meta, config=config)


def fmt_eta(seconds: float) -> str:
  """Seconds as 1h02m or 3m05s, for progress lines."""
  m, s = divmod(int(seconds), 60)
  h, m = divmod(m, 60)
  return f'{h}h{m:02d}m' if h else f'{m}m{s:02d}s'
