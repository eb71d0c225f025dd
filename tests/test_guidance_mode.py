"""The time classifier through --mode train, guided --mode sample, labelled data, photo_crops.

- Labelled batches: the gmm toy's label is the component each point was drawn from (its
  points have that component's mean), digits' labels are sklearn's targets.
- A time classifier trains with train_and_evaluate (checkpoints like any model) and its
  checkpoint drives a guided `--mode sample` (labels, both NFE counts, one row per class).
- Bad values are one-line user errors raised before the workdir is touched.
- photo_crops: deterministic, in [0, 1], test crops from columns no training crop covers.
"""
import json
import os

import numpy as np
import pytest

import checkpointing
import datasets
import generate
import guidance
import optim
import parallel
import photos
import train
from errors import CheckpointError, ConfigError
from models import create_model
from tests.helpers import run_python, tiny_config


def test_gmm_labels_are_the_components():
  config = tiny_config()
  weights, means, stds = datasets.toy_gmm_params(2)
  for split in ('train', 'test'):
    x, y = datasets.get_dataset(config, split).batch(3, 20000, with_labels=True)
    # The same points as the unlabelled batch.
    np.testing.assert_array_equal(x, datasets.get_dataset(config, split).batch(3, 20000))
    for k in range(4):
      xs = x[y == k]
      # Each class's points are N(mu_k, s_k^2 I): mean within 5 standard errors.
      assert (np.abs(xs.mean(0) - means[k]) < 5 * stds[k] / np.sqrt(len(xs))).all()
      assert abs(len(xs) / len(x) - weights[k]) < 5 * np.sqrt(weights[k] / len(x))


def test_digits_labels_are_the_targets():
  config = tiny_config(image=True)
  config.data.centered = False
  ds = datasets.get_dataset(config, 'train')
  x, y = ds.batch(2, 16, with_labels=True)
  images, targets = datasets.digits('train', 8)
  for xi, yi in zip(x, y):
    (idx,) = np.nonzero((images == xi).all(axis=(1, 2, 3)))
    assert yi in targets[idx]
  assert datasets.num_classes(config) == 10


def test_unlabelled_data_is_a_config_error():
  config = tiny_config()
  config.data.dataset = 'moons'
  with pytest.raises(ConfigError, match="'moons' has no class labels"):
    datasets.num_classes(config)
  with pytest.raises(ConfigError, match='no class labels'):
    datasets.get_dataset(config, 'train').batch(0, 8, with_labels=True)


def _toy(objective):
  config = tiny_config(n_iters=2)
  config.training.snapshot_sampling = False
  if objective == 'time_classifier':
    config.training.objective = 'time_classifier'
    config.model.name = config.classifier.model
  return config


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """A toy time classifier trained 2 steps by train_and_evaluate, and a score checkpoint."""
  tmp = tmp_path_factory.mktemp('guided')
  ccfg = _toy('time_classifier')
  ccfg.classifier.hidden_dims = (16,)
  state = train.train_and_evaluate(ccfg, str(tmp / 'classifier'))
  assert int(state.step) == 2 and 'Dense_0' in state.params
  config = _toy('score')
  config.classifier.hidden_dims = (16,)
  config.sampling.classifier_workdir = str(tmp / 'classifier')
  config.sampling.batch_size = 8
  state = train.init_state(config, create_model(config), optim.get_optimizer(config), (2,),
                           parallel.make_mesh())
  ckpt = checkpointing.Checkpointer(str(tmp / 'score'))
  ckpt.save(0, state, force=True)
  ckpt.wait()
  ckpt.close()
  return config, str(tmp / 'score')


def test_guided_mode_sample_writes_labels_and_both_nfe(runs):
  config, workdir = runs
  config = config.copy_and_resolve_references()
  config.sampling.guidance_scale = 2.
  out = generate.sample(config, workdir)
  with open(out['paths']['json']) as f:
    meta = json.load(f)
  assert meta['nfe'] == meta['classifier_nfe'] == 5 and meta['guidance_scale'] == 2.
  assert meta['labels'] == [0, 0, 1, 1, 2, 2, 3, 3] and meta['classifier_checkpoint_step'] == 2
  arrays = np.load(out['paths']['npz'])
  assert arrays['samples'].shape == (8, 2) and np.isfinite(arrays['samples']).all()
  np.testing.assert_array_equal(arrays['labels'], meta['labels'])


def _tree(path):
  return sorted((os.path.relpath(os.path.join(r, f), path), os.path.getmtime(os.path.join(r, f)))
                for r, _, fs in os.walk(path) for f in fs)


@pytest.mark.parametrize('field,value,error,match', [
    ('guidance_scale', -1., ConfigError, 'sampling.guidance_scale=-1'),
    ('labels', '1,4', ConfigError, 'label 4 outside'),
    ('labels', 'rows', None, None),   # batch 6 is not a multiple of 4 classes: set below
    ('classifier_workdir', '/nonexistent/c', CheckpointError, "classifier_workdir='/nonexistent"),
])
def test_bad_guided_sample_values_are_one_line_errors_before_the_workdir(runs, field, value,
                                                                          error, match):
  config, workdir = runs
  config = config.copy_and_resolve_references()
  config.sampling[field] = value
  if match is None:
    config.sampling.batch_size, error, match = 6, ConfigError, 'multiple of the 4 classes'
  before = _tree(workdir)
  with pytest.raises(error, match=match) as err:
    generate.sample(config, workdir)
  assert '\n' not in str(err.value)
  assert _tree(workdir) == before


def test_missing_classifier_checkpoint_through_main(runs, tmp_path):
  """As a user types it: exit code 2 and one `error:` line naming the field."""
  _, workdir = runs
  proc = run_python(['main.py', '--config', 'configs/classifier/toy_gmm_score.py', '--workdir',
                     str(tmp_path / 'none'), '--mode', 'sample',
                     f'--config.sampling.classifier_workdir={tmp_path}/missing'])
  lines = [l for l in proc.stderr.splitlines() if l.startswith('error:')]
  assert proc.returncode == 2 and len(lines) == 1 and 'classifier_workdir' in lines[0], proc.stderr
  assert 'Traceback' not in proc.stderr and not os.path.exists(tmp_path / 'none')


# ----------------------------------------------------------------------------- photo_crops

def test_photo_crops_are_deterministic_colour_crops_with_disjoint_splits():
  train_x, test_x = photos.photo_crops('train', 16), photos.photo_crops('test', 16)
  assert train_x.shape == (4232, 16, 16, 3) and test_x.shape == (120, 16, 16, 3)
  assert train_x.min() >= 0. and train_x.max() <= 1.
  # Colour: the channels differ (a gray photo would have equal channels).
  assert np.abs(train_x - train_x.mean(-1, keepdims=True)).mean() > 0.02
  # No test crop equals any window of the training region (they come from other columns).
  for im in photos._photos():
    cut = int(round(im.shape[1] * photos.TRAIN_FRACTION))
    region = im[:, :cut]
    first = test_x[0]
    assert not any(np.array_equal(region[r:r + 16, c:c + 16], first)
                   for r in range(region.shape[0] - 15) for c in range(region.shape[1] - 15))
  config = tiny_config(image=True)
  config.data.dataset, config.data.num_channels, config.data.image_size = 'photo_crops', 3, 8
  ds = datasets.get_dataset(config, 'test')
  np.testing.assert_array_equal(ds.batch(1, 8), datasets.get_dataset(config, 'test').batch(1, 8))
  config.data.image_size = 64
  with pytest.raises(ConfigError, match='data.image_size=64 is too large for photo_crops'):
    datasets.get_dataset(config, 'train')
