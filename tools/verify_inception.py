"""Checks models/inception.py and the weight converter against pytorch-fid's FID Inception.

pytorch-fid's own weights (pt_inception-2015-12-05-6726825d.pth) are a GitHub
download, and no package on the index ships them (the pytorch-fid wheel holds
only code). So the check uses random weights, drawn with a fixed seed, at a
scale that keeps the activations O(1) (see `random_state_dict`): if the two
networks agree on arbitrary weights they agree on any weights, the real ones
included.

Three steps, in two environments (`make check-inception` runs them all):

1. prepare (this project's venv): writes DIR/state_dict.npz, the random
   weights in torchvision's names and layouts, and DIR/inputs.npz, the test
   images in [0, 1] (8-bit values): crops of sklearn's two sample photos and
   digits upsampled to 32 x 32, and uniform noise, at 32 x 32 and 299 x 299.
2. torch (a side venv with torch and pytorch-fid, no jax): builds pytorch-fid's
   `InceptionV3([3], resize_input=True, normalize_input=True)` around its
   `fid_inception_v3()` network, loads DIR/state_dict.npz into it with
   strict=True (every name and shape must match), saves it again with
   torch.save as DIR/state_dict.pth, and writes pool3 (2048) and the logits
   (1008, the network's fc on pool3) of every input to DIR/torch_out.npz.
3. compare (this project's venv): converts DIR/state_dict.pth with
   tools/convert_inception_weights.py (no torch), runs the Flax
   FIDInceptionV3 on the same inputs and reports, per output and input set,
   max |flax - torch| / max |torch|; exits 1 above --tol (1e-4).

    python tools/verify_inception.py prepare --dir /tmp/fidcheck
    .venv-fidcheck/bin/python tools/verify_inception.py torch --dir /tmp/fidcheck
    python tools/verify_inception.py compare --dir /tmp/fidcheck --out result.json

`fixtures` (torch side, after prepare) rewrites the small reference files of
tests/test_inception_reference.py, which checks the same without torch.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _REPO)

SEED = 0


def random_state_dict(seed: int = SEED) -> dict[str, np.ndarray]:
  """Random FID Inception weights in torchvision's names and layouts (needs jax/flax).

  Scale, so that activations stay O(1) through the 94 conv-BN-ReLU layers:
  conv kernels N(0, 2 / fan_in) (He), BatchNorm weight U(0.8, 1.2), bias
  U(-0.1, 0.1), running mean U(-0.1, 0.1), running var U(0.8, 1.2); fc weight
  N(0, 1 / 2048), bias U(-0.1, 0.1). Every BN parameter is non-trivial, so a
  mapping that swapped mean and var, or weight and bias, would show.
  """
  from flax import traverse_util  # pylint: disable=g-import-not-at-top
  from models import inception  # pylint: disable=g-import-not-at-top
  from tools import convert_inception_weights as conv  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  flat = {}
  for name, s in sorted(traverse_util.flatten_dict(inception.variable_shapes(), sep='/').items()):
    leaf = name.rsplit('/', 1)[1]
    if leaf == 'kernel':
      fan_in = int(np.prod(s.shape[:-1]))
      value = rng.normal(0., np.sqrt((2. if s.ndim == 4 else 1.) / fan_in), s.shape)
    elif leaf in ('scale', 'var'):
      value = rng.uniform(0.8, 1.2, s.shape)
    else:   # bias, mean
      value = rng.uniform(-0.1, 0.1, s.shape)
    flat[name] = value.astype(np.float32)
  return conv.to_state_dict(flat)


def test_inputs(seed: int = SEED) -> dict[str, np.ndarray]:
  """Named input sets [B, H, W, 3] float32 in [0, 1], all multiples of 1/255."""
  from sklearn.datasets import load_digits, load_sample_images  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed + 1)
  photos = load_sample_images().images                  # china, flower: [427, 640, 3] uint8
  crops299 = np.stack([p[r:r + 299, c:c + 299] for p in photos for r, c in ((0, 0), (100, 300))])
  # 32 x 32: every 9th pixel of a 288-pixel crop (a cheap downsampling that keeps 8-bit values).
  crops32 = np.stack([p[r:r + 288:9, c:c + 288:9] for p in photos for r, c in ((50, 50), (120, 340))])
  digits = load_digits().images[:4]                     # [4, 8, 8] in 0..16
  digits32 = np.repeat(np.kron(digits, np.ones((4, 4)))[..., None], 3, -1)
  digits32 = np.round(digits32 / 16. * 255.)
  sets = {
      'photos_299': crops299, 'photos_32': crops32, 'digits_32': digits32,
      'noise_32': rng.integers(0, 256, (4, 32, 32, 3)),
      'noise_299': rng.integers(0, 256, (2, 299, 299, 3)),
  }
  return {k: (np.asarray(v, np.float64) / 255.).astype(np.float32) for k, v in sets.items()}


def prepare(directory: str) -> None:
  os.makedirs(directory, exist_ok=True)
  np.savez(os.path.join(directory, 'state_dict.npz'), **random_state_dict())
  np.savez(os.path.join(directory, 'inputs.npz'), **test_inputs())
  print(f'wrote {directory}/state_dict.npz and inputs.npz')


def _import_torchvision():
  """torchvision, even when its compiled ops cannot load.

  The index's torchvision 0.28.0 (the release for torch 2.13.0) is a CUDA build
  whose _C.so needs libc10_cuda; beside the CPU torch its fake-kernel
  registrations fail at import. Inception uses none of those ops (only
  torch.nn layers), so that one submodule is replaced by an empty one.
  """
  try:
    import torchvision  # pylint: disable=g-import-not-at-top
  except RuntimeError as e:
    import types  # pylint: disable=g-import-not-at-top
    for name in [m for m in sys.modules if m.startswith('torchvision')]:
      del sys.modules[name]
    sys.modules['torchvision._meta_registrations'] = types.ModuleType(
        'torchvision._meta_registrations')
    import torchvision  # pylint: disable=g-import-not-at-top
    print(f'note: torchvision compiled ops unavailable ({e}); Inception does not use them')
  return torchvision


def build_torch_model(state: dict[str, np.ndarray]):
  """pytorch-fid's InceptionV3 (pool3 block) and its inner FID Inception, with `state`.

  pytorch-fid's fid_inception_v3() ends by downloading its weights; the download
  is replaced by a function that hands back nothing, and Inception3's
  load_state_dict is skipped for that one call. The real weights go in after,
  with strict=True.
  """
  import torch  # pylint: disable=g-import-not-at-top
  torchvision = _import_torchvision()
  from pytorch_fid import inception as pfi  # pylint: disable=g-import-not-at-top
  cls = torchvision.models.inception.Inception3
  original_load = cls.load_state_dict
  pfi.load_state_dict_from_url = lambda *a, **k: None
  cls.load_state_dict = lambda self, sd, *a, **k: None if sd is None else original_load(
      self, sd, *a, **k)
  try:
    net = pfi.fid_inception_v3()
  finally:
    cls.load_state_dict = original_load
  net.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()
                       if not k.endswith('num_batches_tracked')}, strict=False)
  missing = set(net.state_dict()) - set(state) - {k for k in net.state_dict()
                                                  if k.endswith('num_batches_tracked')}
  unexpected = set(state) - set(net.state_dict())
  if missing or unexpected:
    raise SystemExit(f'state dict does not fit pytorch-fid: missing {sorted(missing)[:3]}, '
                     f'unexpected {sorted(unexpected)[:3]}')
  original = pfi.fid_inception_v3
  pfi.fid_inception_v3 = lambda: net
  try:
    wrapper = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]], resize_input=True,
                              normalize_input=True)
  finally:
    pfi.fid_inception_v3 = original
  return wrapper.eval(), net.eval()


def run_torch(directory: str) -> None:
  import torch  # pylint: disable=g-import-not-at-top
  torchvision = _import_torchvision()
  import pytorch_fid  # pylint: disable=g-import-not-at-top
  torch.set_grad_enabled(False)
  with np.load(os.path.join(directory, 'state_dict.npz')) as f:
    state = {k: f[k] for k in f.files}
  wrapper, net = build_torch_model(state)
  torch.save(net.state_dict(), os.path.join(directory, 'state_dict.pth'))
  out = {}
  with np.load(os.path.join(directory, 'inputs.npz')) as f:
    for name in f.files:
      x = torch.from_numpy(f[name]).permute(0, 3, 1, 2).contiguous()   # NHWC -> NCHW
      pool3 = wrapper(x)[0].flatten(1)
      out[f'{name}/pool3'] = pool3.numpy()
      out[f'{name}/logits'] = net.fc(pool3).numpy()    # Inception3: avgpool -> dropout(eval) -> fc
  out['versions'] = np.asarray(json.dumps({'torch': torch.__version__,
                                           'torchvision': torchvision.__version__,
                                           'pytorch_fid': pytorch_fid.__version__}))
  np.savez(os.path.join(directory, 'torch_out.npz'), **out)
  print(f'wrote {directory}/state_dict.pth and torch_out.npz')


def state_crc32(state: dict[str, np.ndarray]) -> int:
  """crc32 of a state dict's arrays in sorted name order (identifies the random weights)."""
  import zlib  # pylint: disable=g-import-not-at-top
  crc = 0
  for k in sorted(state):
    crc = zlib.crc32(np.ascontiguousarray(state[k]).tobytes(), crc)
  return crc


def write_fixtures(directory: str, fixtures: str) -> None:
  """torch side: the small files of tests/test_inception_reference.py (see its docstring)."""
  import torch  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  big = torch.arange(24, dtype=torch.float64).reshape(4, 6)
  sd = {'Conv2d_1a_3x3.conv.weight': torch.randn(4, 3, 3, 3),
        'Conv2d_1a_3x3.bn.weight': torch.rand(4),
        'Conv2d_1a_3x3.bn.num_batches_tracked': torch.tensor(7),
        'fc.weight': torch.randn(5, 3).t(),               # non-contiguous (strides 1, 3)
        'view.of.storage': big[1:3, 2:5],                 # an offset view of a shared storage
        'whole.storage': big, 'flags': torch.tensor([True, False, True]),
        'half': torch.randn(3).half()}
  os.makedirs(fixtures, exist_ok=True)
  torch.save(sd, os.path.join(fixtures, 'torch_state_zip.pth'))
  torch.save(sd, os.path.join(fixtures, 'torch_state_legacy.pth'),
             _use_new_zipfile_serialization=False)
  np.savez(os.path.join(fixtures, 'torch_state_expected.npz'), **{k: v.numpy() for k, v in sd.items()})
  with np.load(os.path.join(directory, 'state_dict.npz')) as f:
    state = {k: f[k] for k in f.files}
  wrapper, net = build_torch_model(state)
  torch.set_grad_enabled(False)
  x = (np.random.default_rng(123).integers(0, 256, (2, 8, 8, 3)) / 255.).astype(np.float32)
  pool3 = wrapper(torch.from_numpy(x).permute(0, 3, 1, 2).contiguous())[0].flatten(1)
  np.savez(os.path.join(fixtures, 'pytorch_fid_seed0.npz'), inputs=x, pool3=pool3.numpy(),
           logits=net.fc(pool3).numpy(), state_crc32=np.uint32(state_crc32(state)))
  print(f'wrote the fixtures to {fixtures}')


def compare(directory: str, tol: float, out_path: str = '') -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import flax  # pylint: disable=g-import-not-at-top
  from models import inception  # pylint: disable=g-import-not-at-top
  from tools import convert_inception_weights as conv  # pylint: disable=g-import-not-at-top
  weights = os.path.join(directory, 'inception_fid.npz')
  conv.main(['--src', os.path.join(directory, 'state_dict.pth'), '--out', weights])
  variables = inception.load_variables(weights)
  apply = jax.jit(inception.FIDInceptionV3().apply)
  with np.load(os.path.join(directory, 'torch_out.npz')) as f:
    ref = {k: f[k] for k in f.files}
  rows, worst = {}, 0.
  with np.load(os.path.join(directory, 'inputs.npz')) as f:
    for name in f.files:
      pool3, logits = (np.asarray(a) for a in apply(variables, f[name]))
      for what, got in (('pool3', pool3), ('logits', logits)):
        want = ref[f'{name}/{what}']
        err = float(np.max(np.abs(got - want)) / np.max(np.abs(want)))
        rows[f'{name}/{what}'] = {'max_rel_err': err, 'ref_std': float(np.std(want)),
                                  'ref_max_abs': float(np.max(np.abs(want)))}
        worst = max(worst, err)
        print(f'{name:>12s} {what:>6s}  max|flax - torch| / max|torch| = {err:.2e}   '
              f'(torch std {np.std(want):.3f})')
  result = {'max_rel_err': worst, 'tol': tol, 'passed': worst <= tol, 'outputs': rows,
            'seed': SEED, **json.loads(str(ref['versions'])), 'jax': jax.__version__,
            'flax': flax.__version__}
  if out_path:
    with open(out_path, 'w') as f:
      json.dump(result, f, indent=2)
  print(f'worst {worst:.2e} (tolerance {tol:g}): {"PASS" if worst <= tol else "FAIL"}')
  return result


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('step', choices=('prepare', 'torch', 'compare', 'fixtures'))
  parser.add_argument('--dir', required=True, help='working folder shared by the steps')
  parser.add_argument('--tol', type=float, default=1e-4)
  parser.add_argument('--out', default='', help='compare: write the result as JSON here')
  args = parser.parse_args(argv)
  if args.step == 'prepare':
    prepare(args.dir)
  elif args.step == 'torch':
    run_torch(args.dir)
  elif args.step == 'fixtures':
    write_fixtures(args.dir, os.path.join(_REPO, 'tests', 'fixtures'))
  elif not compare(args.dir, args.tol, args.out)['passed']:
    sys.exit(1)


if __name__ == '__main__':
  main()
