"""Converts pytorch-fid's FID Inception weights to the .npz that metrics.py loads.

The source is pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (a PyTorch
state dict of TensorFlow's inception-2015-12-05 graph, the network of FID), from
https://github.com/mseitzer/pytorch-fid/releases/tag/fid_weights.

With torch installed (it is not a dependency of this project):

    python tools/convert_inception_weights.py \
        --src pt_inception-2015-12-05-6726825d.pth --out inception_fid.npz

Without torch here, dump the state dict to numpy on any machine that has it:

    python -c "import torch, numpy as np; sd = torch.load('pt_inception-2015-12-05-6726825d.pth', \
        map_location='cpu'); np.savez('pt_inception.npz', **{k: v.numpy() for k, v in sd.items()})"

and convert that here: `--src pt_inception.npz`. Then evaluate with
`--config.eval.inception_path=inception_fid.npz`.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Mapping

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# PyTorch name suffix -> (Flax collection, Flax leaf name).
_LEAVES = {
    'conv.weight': ('params', 'conv/kernel'),
    'bn.weight': ('params', 'bn/scale'),
    'bn.bias': ('params', 'bn/bias'),
    'bn.running_mean': ('batch_stats', 'bn/mean'),
    'bn.running_var': ('batch_stats', 'bn/var'),
}


def convert_state_dict(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """torchvision-named FID Inception state dict -> flattened Flax variables.

  Conv weights [O, I, kh, kw] become kernels [kh, kw, I, O]; the fc weight
  [1008, 2048] becomes a kernel [2048, 1008]; BatchNorm's weight/bias are the
  Flax scale/bias and its running statistics go to 'batch_stats'.

  Args:
    state: PyTorch parameter name -> array.

  Returns:
    'params/...' and 'batch_stats/...' paths -> float32 arrays, as
    models.inception.load_variables reads them.

  Raises:
    ValueError: a name that is not part of the FID Inception.
  """
  out = {}
  for name, value in state.items():
    value = np.asarray(value)
    if name.endswith('num_batches_tracked'):
      continue                                # a training counter, not a weight
    if name in ('fc.weight', 'fc.bias'):
      leaf = 'kernel' if name == 'fc.weight' else 'bias'
      out[f'params/fc/{leaf}'] = value.T if leaf == 'kernel' else value
      continue
    parts = name.split('.')
    path, key = parts[:-2], '.'.join(parts[-2:])   # 'Mixed_5b.branch1x1', 'conv.weight'
    if key not in _LEAVES or not path or not path[0].startswith(('Conv2d_', 'Mixed_')):
      raise ValueError(f'{name!r} is not a parameter of the FID Inception-v3')
    collection, flax_leaf = _LEAVES[key]
    if key == 'conv.weight':
      value = value.transpose(2, 3, 1, 0)
    out[f'{collection}/{"/".join(path)}/{flax_leaf}'] = value
  return {k: v.astype(np.float32) for k, v in out.items()}


def _read_state_dict(path: str) -> dict[str, np.ndarray]:
  if path.endswith('.npz'):
    with np.load(path) as f:
      return {k: f[k] for k in f.files}
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    sys.exit(f'error: reading {path} needs torch, which is not installed here; dump it '
             'to .npz on a machine with torch (see this file\'s docstring) and pass that')
  state = torch.load(path, map_location='cpu')
  return {k: v.numpy() for k, v in state.items()}


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--src', required=True,
                      help='pt_inception-2015-12-05-*.pth, or its state dict as .npz')
  parser.add_argument('--out', required=True, help='the .npz to write')
  args = parser.parse_args(argv)
  from models import inception  # pylint: disable=g-import-not-at-top
  flat = convert_state_dict(_read_state_dict(args.src))
  with open(args.out, 'wb') as f:
    np.savez(f, **flat)
  variables = inception.load_variables(args.out)   # checks every name and shape
  print(f'wrote {args.out}: {inception.count_params(variables):,} parameters '
        f'(want {inception.NUM_PARAMS:,})')


if __name__ == '__main__':
  main()
