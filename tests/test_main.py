"""The command line as a user meets it: bad input is one line, exit code 2, no traceback."""
import os

import pytest

from tests.helpers import run_python

CONFIG = 'configs/toy/vp_checkerboard_mlp_continuous.py'


def run_main(*args):
  return run_python(['main.py', *args], timeout=120)


def assert_one_line_error(proc, *needles):
  assert proc.returncode != 0
  assert 'Traceback' not in proc.stderr
  lines = [l for l in proc.stderr.strip().splitlines() if l.startswith('error:')]
  assert len(lines) == 1, proc.stderr[-2000:]
  for needle in needles:
    assert needle in lines[0], lines[0]
  return lines[0]


def test_unknown_config_key(tmp_path):
  proc = run_main('--config', CONFIG, '--workdir', str(tmp_path), '--config.training.n_iter=5')
  assert_one_line_error(proc, 'n_iter')


def test_wrong_type_for_key(tmp_path):
  proc = run_main('--config', CONFIG, '--workdir', str(tmp_path), '--config.training.n_iters=abc')
  assert_one_line_error(proc, 'n_iters')


def test_unknown_mode(tmp_path):
  proc = run_main('--config', CONFIG, '--workdir', str(tmp_path), '--mode', 'trian')
  assert_one_line_error(proc, 'trian')


def test_missing_config_file(tmp_path):
  proc = run_main('--config', 'configs/nope.py', '--workdir', str(tmp_path))
  assert_one_line_error(proc, 'nope.py')


def test_sample_on_empty_workdir_leaves_it_empty(tmp_path):
  proc = run_main('--config', CONFIG, '--workdir', str(tmp_path), '--mode', 'sample')
  assert_one_line_error(proc, 'no checkpoint', str(tmp_path))
  assert proc.returncode == 2
  assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('override,field', [
    ('--config.model.name=unet9', 'model.name'),
    ('--config.training.sde=vesdee', 'training.sde'),
    ('--config.data.dataset=cifar11', 'data.dataset'),
    ('--config.sampling.predictor=heun', 'sampling.predictor'),
])
def test_unknown_names_list_the_valid_ones(tmp_path, override, field):
  proc = run_main('--config', CONFIG, '--workdir', str(tmp_path), override)
  line = assert_one_line_error(proc, field, 'valid')
  assert proc.returncode == 2, line
