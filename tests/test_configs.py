"""Every shipped config builds: model, SDE, loss, sampler and parameter shapes."""
import glob
import importlib
import json
import math
import os
import shlex

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import objectives
import optim
import sampling
import sde_lib
import train
from configs import tiny
from errors import ConfigError
from models import create_model, ncsnpp
from tests.helpers import REPO, run_python

CONFIGS = sorted(os.path.relpath(p, REPO)[:-3].replace('/', '.')
                 for p in glob.glob(os.path.join(REPO, 'configs', '*', '*.py'))
                 if not p.endswith('__init__.py'))


# Every training config has a tiny variant, `--config <file>.py:tiny` (configs/tiny.py); the
# DMCMC and DSB configs are run by their own modes, with their own tiny tests.
TINY = [n for n in CONFIGS if n.split('.')[1] not in ('dmcmc', 'dsb')]


def tiny_command(module) -> list[str]:
  """The docstring's tiny `python main.py ...` command as argv after `python`; [] if none."""
  doc = module.__doc__ or ''
  if 'Tiny variant' not in doc:
    return []
  lines = doc.split('Tiny variant')[1].splitlines()
  return shlex.split(next(l for l in lines if l.strip().startswith('python main.py')))[1:]


@pytest.mark.parametrize('name', TINY)
def test_tiny_variant_is_documented_and_is_apply_tiny(name):
  """The docstring shows `--config <this file>:tiny`, and get_config('tiny') is exactly
  tiny.apply_tiny of the full config: no config keeps a tiny override list of its own."""
  module = importlib.import_module(name)
  path = name.replace('.', '/') + '.py'
  argv = tiny_command(module)
  assert argv[:3] == ['main.py', '--config', f'{path}:tiny'], argv
  assert argv[argv.index('--mode') + 1] == 'train' and len(argv) == 7, argv
  assert module.get_config('tiny').to_dict() == tiny.apply_tiny(module.get_config()).to_dict()
  with pytest.raises(ConfigError, match="'tinny' is unknown"):
    module.get_config('tinny')


def test_apply_tiny_takes_the_registry_size():
  """Downloaded data: digits and the registry's whole tiny network, nothing else of the
  registry's test fields (dropout, SDE, sigma ladder); bundled data: widths only."""
  full = importlib.import_module('configs.ve.celebahq_256_ncsnpp_continuous').get_config()
  small = tiny.apply_tiny(full.copy_and_resolve_references())
  registry = ncsnpp.tiny_config_overrides()
  for key in ('model.nf', 'model.ch_mult', 'model.num_res_blocks', 'model.attn_resolutions',
              'data.image_size', 'data.num_channels'):
    group, field = key.split('.')
    assert tuple(np.ravel(small[group][field])) == tuple(np.ravel(registry[key])), key
  assert small.data.dataset == 'digits' and registry['model.dropout'] != full.model.dropout
  assert (small.model.dropout, small.training.sde, small.model.sigma_max) == (
      full.model.dropout, full.training.sde, full.model.sigma_max)
  assert (small.training.n_iters, small.training.n_jitted_steps) == (20, 1)
  # Registry sizes for the NCSN family include its ladder; only the size is taken.
  ncsn_full = importlib.import_module('configs.ncsnv2.cifar10_ncsnv2_64_discrete').get_config()
  ncsn_small = tiny.apply_tiny(ncsn_full.copy_and_resolve_references())
  assert ncsn_small.model.nf == 8 and ncsn_small.model.num_scales == ncsn_full.model.num_scales
  # photo_crops is bundled and RGB: its 3 channels and its levels stay, the width shrinks.
  photo = importlib.import_module('configs.vp.photo_crops_ddpmpp_continuous').get_config('tiny')
  assert (photo.data.dataset, photo.data.num_channels, photo.data.image_size) == (
      'photo_crops', 3, 8)
  assert tuple(photo.model.ch_mult) == (1, 2, 2) and photo.model.nf == 8
  config = importlib.import_module('configs.dsb.toy').get_config()
  config.model.name = 'noise_mlp'
  with pytest.raises(ConfigError, match="model.name='noise_mlp' has no tiny variant"):
    tiny.apply_tiny(config)


@pytest.mark.slow   # a main.py process; get_config('tiny') == apply_tiny(...) is checked by default
def test_tiny_variant_trains_through_main(tmp_path):
  """`--config <file>.py:tiny` as a user types it: absl's config_flags hands 'tiny' to
  get_config, so the run stops at the tiny 20 steps (the full config trains 5000)."""
  name = 'configs/toy/vp_checkerboard_mlp_continuous.py'
  result = run_python(['main.py', '--config', f'{name}:tiny', '--workdir', str(tmp_path),
                       '--mode', 'train'], timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(tmp_path / 'metrics.jsonl') as f:
    rows = [json.loads(line) for line in f if '"loss"' in line]
  assert rows and all(math.isfinite(r['loss']) for r in rows), rows
  assert rows[-1]['step'] == 20 and os.listdir(tmp_path / 'checkpoints') == ['20']


@pytest.mark.parametrize('name', CONFIGS)
def test_config_builds(name):
  module = importlib.import_module(name)
  # Published full-size models are counted in test_model_zoo.py; here each
  # config builds and traces on its tiny variant (cheap).
  config = module.get_config('tiny') if name in TINY else module.get_config()
  model = create_model(config)
  sde, _ = sde_lib.get_sde(config)
  objectives.train_loss_fn(config, sde, model)   # training.objective's loss
  optim.get_optimizer(config)
  shape = ((config.data.dim,) if config.model.name == 'mlp' else
           (config.data.image_size, config.data.image_size, config.data.num_channels))
  sampling.get_sampler(config, sde, (config.sampling.batch_size,) + shape)
  variables = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), jnp.zeros((1,) + shape),
                                                jnp.zeros((1,))))
  assert sum(x.size for x in jax.tree.leaves(variables)) > 0
  train._check_frequencies(config)   # ConfigError if a frequency is not a multiple of n_jitted_steps


def test_published_ddpmpp_has_the_reference_parameter_count():
  """score_sde's DDPM++ cont. (VP) on CIFAR-10: 61,804,419 parameters."""
  config = importlib.import_module('configs.vp.cifar10_ddpmpp_continuous').get_config()
  variables = jax.eval_shape(lambda: create_model(config).init(
      jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)), jnp.zeros((1,))))
  assert sum(x.size for x in jax.tree.leaves(variables['params'])) == 61_804_419



@pytest.mark.slow
@pytest.mark.parametrize('name', TINY)
def test_documented_tiny_command_trains(name, tmp_path):
  """Each config's documented tiny command, run as a user runs it (main.py, a few steps on
  digits): exit 0, a finite loss at every logged step, a checkpoint at the last step."""
  module = importlib.import_module(name)
  argv = tiny_command(module)
  n_iters = module.get_config('tiny').training.n_iters
  argv[argv.index('--workdir') + 1] = str(tmp_path)
  result = run_python(argv, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(tmp_path / 'metrics.jsonl') as f:
    rows = [json.loads(line) for line in f if '"loss"' in line]
  assert rows and all(math.isfinite(r['loss']) for r in rows), rows
  assert rows[-1]['step'] == n_iters
  assert (tmp_path / 'checkpoints' / str(n_iters)).is_dir()
