"""The Flax FID Inception and the weight converter against pytorch-fid, without torch.

The fixtures were written by torch 2.13.0 + pytorch-fid 0.3.0 (the side environment
of `make check-inception`):

    python tools/verify_inception.py prepare --dir D
    .venv-fidcheck/bin/python tools/verify_inception.py fixtures --dir D

- tests/fixtures/torch_state_{zip,legacy}.pth: torch.save of a small state dict
  (torch.manual_seed(0)) in both file formats, with a non-contiguous tensor (a
  transpose), an offset view into a shared storage, int64, bool and float16 tensors;
  torch_state_expected.npz: the same tensors via .numpy().
- tests/fixtures/pytorch_fid_seed0.npz: pytorch-fid's InceptionV3 (pool3 block,
  resize_input and normalize_input on) with the seed-0 random weights of
  tools/verify_inception.random_state_dict, on two 8 x 8 noise images
  (default_rng(123) integers / 255): pool3 [2, 2048], logits = its fc on pool3
  [2, 1008], and the crc32 of the state dict it was given.
"""
import os

import jax
import numpy as np
import pytest

from checkpoint_import import readers
from errors import CheckpointError
from models import inception
from tools import convert_inception_weights as conv
from tools import verify_inception

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'fixtures')


# Legacy first: its storages are filled after the pickle, and a reader that copied the
# tensors before that would pass anyway if malloc handed back the zip case's freed arrays.
@pytest.mark.parametrize('name', ['torch_state_legacy.pth', 'torch_state_zip.pth'])
def test_torch_free_reader_matches_torch(name):
  got = conv.read_torch_state_dict(os.path.join(FIXTURES, name))
  with np.load(os.path.join(FIXTURES, 'torch_state_expected.npz')) as f:
    want = {k: f[k] for k in f.files}
  assert list(got) == list(want)   # torch keeps the dict's order
  for key in want:
    assert got[key].dtype == want[key].dtype and got[key].shape == want[key].shape, key
    np.testing.assert_array_equal(got[key], want[key], err_msg=key)
  assert got['Conv2d_1a_3x3.bn.num_batches_tracked'] == 7


def test_reader_refuses_code_and_foreign_files(tmp_path):
  import pickle
  path = tmp_path / 'evil.pth'
  with open(path, 'wb') as f:   # a legacy-format header, then a pickle calling os.system
    for obj in (readers.LEGACY_MAGIC, 1001, {}):
      pickle.dump(obj, f)
    f.write(b'cos\nsystem\n(S"echo hi"\ntR.')
  with pytest.raises(CheckpointError, match='os.system'):
    conv.read_torch_state_dict(str(path))
  np.save(tmp_path / 'x.npy', np.zeros(3))
  with pytest.raises(Exception):
    conv.read_torch_state_dict(str(tmp_path / 'x.npy'))


def test_truncated_legacy_file_is_refused(tmp_path):
  """Every cut of the legacy file (headers, pickle, storage counts, storage bytes) is a
  one-line CheckpointError naming the file, never a silently short or garbage tensor."""
  with open(os.path.join(FIXTURES, 'torch_state_legacy.pth'), 'rb') as f:
    data = f.read()
  cut = tmp_path / 'cut.pth'
  for n in sorted(set(range(0, len(data), 5)) | {len(data) - 1}):
    cut.write_bytes(data[:n])
    with pytest.raises(CheckpointError) as info:
      conv.read_torch_state_dict(str(cut))
    assert '\n' not in str(info.value) and str(cut) in str(info.value), (n, info.value)


def test_converter_cli_bad_file_is_one_line_and_keeps_the_old_output(tmp_path, capsys):
  # A corrupt --src must not reach the user as a traceback, nor replace a good --out.
  (tmp_path / 'bad.pth').write_bytes(b'garbage')
  out = tmp_path / 'weights.npz'
  out.write_bytes(b'the previous conversion')
  with pytest.raises(SystemExit) as info:
    conv.main(['--src', str(tmp_path / 'bad.pth'), '--out', str(out)])
  err = capsys.readouterr().err.strip()
  assert info.value.code == 2
  assert err.startswith('error: ') and '\n' not in err and 'bad.pth' in err, err
  assert out.read_bytes() == b'the previous conversion'
  assert sorted(p.name for p in tmp_path.iterdir()) == ['bad.pth', 'weights.npz']


@pytest.mark.slow
def test_flax_inception_equals_stored_pytorch_fid_outputs(tmp_path):
  """Same weights (converted by the tool), same 8 x 8 images resized to 299: pool3 and
  logits within 1e-4 of pytorch-fid's (measured 6e-7 by make check-inception)."""
  ref = dict(np.load(os.path.join(FIXTURES, 'pytorch_fid_seed0.npz')))
  state = verify_inception.random_state_dict(0)
  # The weights are the ones pytorch-fid saw (else numpy's generator changed, not the net).
  assert verify_inception.state_crc32(state) == int(ref['state_crc32'])
  np.savez(tmp_path / 'sd.npz', **state)
  conv.main(['--src', str(tmp_path / 'sd.npz'), '--out', str(tmp_path / 'fid.npz')])
  pool3, logits = jax.jit(inception.FIDInceptionV3().apply)(
      inception.load_variables(str(tmp_path / 'fid.npz')), ref['inputs'])
  for got, want in ((pool3, ref['pool3']), (logits, ref['logits'])):
    err = np.max(np.abs(np.asarray(got) - want)) / np.max(np.abs(want))
    assert err < 1e-4, err
