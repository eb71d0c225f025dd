"""Converts pytorch-fid's FID Inception weights to the .npz that metrics.py loads.

The source is pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (a PyTorch
state dict of TensorFlow's inception-2015-12-05 graph, the network of FID), from
https://github.com/mseitzer/pytorch-fid/releases/tag/fid_weights.

No torch needed (it is not a dependency of this project):

    python tools/convert_inception_weights.py \
        --src pt_inception-2015-12-05-6726825d.pth --out inception_fid.npz

`read_torch_state_dict` reads a state dict written by torch.save, in the zip
format (torch >= 1.6) and in the legacy format (earlier torch, as the 2019 .pth
may be), with checkpoint_import.readers.read_pth (the reader of
tools/import_checkpoint.py): a restricted unpickler that only rebuilds tensors
and dicts (it runs none of the file's code). A state dict dumped to .npz
(name -> array) works too: `--src pt_inception.npz`. Then evaluate with
`--config.eval.inception_path=inception_fid.npz`.

The conversion is verified against pytorch-fid's FIDInceptionV3 itself by
`make check-inception` (tools/verify_inception.py; docs/evaluation.md).
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Mapping

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from checkpoint_import import readers  # noqa: E402
from errors import CheckpointError  # noqa: E402

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


def read_torch_state_dict(path: str) -> dict[str, np.ndarray]:
  """A state dict written by torch.save (zip or legacy format), as name -> array.

  Reads with checkpoint_import.readers.read_pth (no torch; its restricted
  unpickler rebuilds only tensors and dicts).

  Raises:
    CheckpointError: not a torch.save file of tensors, or not a state dict.
  """
  state = readers.read_pth(path)
  if not isinstance(state, dict):
    raise CheckpointError(f'{path} holds a {type(state).__name__}, not a state dict; save the '
                          'Inception with torch.save(model.state_dict(), path)')
  return {k: np.asarray(v) for k, v in state.items()}


def _read_state_dict(path: str) -> dict[str, np.ndarray]:
  if path.endswith('.npz'):
    with np.load(path) as f:
      return {k: f[k] for k in f.files}
  return read_torch_state_dict(path)


def to_state_dict(flat: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
  """The inverse of `convert_state_dict`: flattened Flax variables -> torchvision names."""
  names = {'kernel': 'weight', 'scale': 'weight', 'bias': 'bias', 'mean': 'running_mean',
           'var': 'running_var'}
  state = {}
  for key, value in flat.items():
    _, *path, leaf = key.split('/')
    if leaf == 'kernel':   # torch: conv [O, I, kh, kw], linear [out, in]
      value = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T
    state['.'.join(path + [names[leaf]])] = np.ascontiguousarray(value)
  return state


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--src', required=True,
                      help='pt_inception-2015-12-05-*.pth, or its state dict as .npz')
  parser.add_argument('--out', required=True, help='the .npz to write')
  args = parser.parse_args(argv)
  from errors import UserError  # pylint: disable=g-import-not-at-top
  from models import inception  # pylint: disable=g-import-not-at-top
  tmp = args.out + '.partial.npz'
  try:
    flat = convert_state_dict(_read_state_dict(args.src))
    with open(tmp, 'wb') as f:
      np.savez(f, **flat)
    variables = inception.load_variables(tmp)   # checks every name and shape
  except UserError as e:   # one line, exit 2, as main.py; an existing --out is left as it was
    if os.path.exists(tmp):
      os.remove(tmp)
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  os.replace(tmp, args.out)
  print(f'wrote {args.out}: {inception.count_params(variables):,} parameters '
        f'(want {inception.NUM_PARAMS:,})')


if __name__ == '__main__':
  main()
