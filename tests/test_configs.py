"""Every shipped config builds: model, SDE, loss, sampler and parameter shapes."""
import ast
import glob
import importlib
import json
import math
import os
import shlex

import jax
import jax.numpy as jnp
import pytest

import objectives
import optim
import sampling
import sde_lib
import train
from models import create_model
from tests.helpers import REPO, run_python

CONFIGS = sorted(os.path.relpath(p, REPO)[:-3].replace('/', '.')
                 for p in glob.glob(os.path.join(REPO, 'configs', '*', '*.py'))
                 if not p.endswith('__init__.py'))


def tiny_command(module) -> list[str]:
  """The docstring's tiny `python main.py ...` command as argv after `python`; [] if none."""
  doc = module.__doc__ or ''
  if 'Tiny override' not in doc:
    return []
  lines = doc.split('Tiny override')[1].splitlines()
  return shlex.split(next(l for l in lines if l.strip().startswith('python main.py')))[1:]


def tiny_override(module) -> dict:
  """The `--config.group.field=value` overrides of the docstring's tiny command."""
  def value(text):
    try:
      return ast.literal_eval(text)
    except (ValueError, SyntaxError):
      return text   # a bare string such as digits
  pairs = (arg[len('--config.'):].split('=', 1) for arg in tiny_command(module)
           if arg.startswith('--config.'))
  return {tuple(key.split('.')): value(text) for key, text in pairs}


@pytest.mark.parametrize('name', CONFIGS)
def test_config_builds(name):
  module = importlib.import_module(name)
  config = module.get_config()
  # Published full-size models are counted in test_model_zoo.py; here each
  # config builds and traces on its documented tiny override (cheap).
  for (group, field), value in tiny_override(module).items():
    config[group][field] = value
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
@pytest.mark.parametrize('name', [n for n in CONFIGS
                                  if tiny_override(importlib.import_module(n))])
def test_documented_tiny_command_trains(name, tmp_path):
  """Each config's documented tiny command, run as a user runs it (main.py, a few steps on
  digits): exit 0, a finite loss at every logged step, a checkpoint at the last step."""
  module = importlib.import_module(name)
  argv = tiny_command(module)
  n_iters = tiny_override(module)[('training', 'n_iters')]
  argv[argv.index('--workdir') + 1] = str(tmp_path)
  result = run_python(argv, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  with open(tmp_path / 'metrics.jsonl') as f:
    rows = [json.loads(line) for line in f if '"loss"' in line]
  assert rows and all(math.isfinite(r['loss']) for r in rows), rows
  assert rows[-1]['step'] == n_iters
  assert (tmp_path / 'checkpoints' / str(n_iters)).is_dir()
