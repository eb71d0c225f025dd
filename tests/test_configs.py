"""Every shipped config builds: model, SDE, loss, sampler and parameter shapes."""
import ast
import glob
import importlib
import os
import re

import jax
import jax.numpy as jnp
import pytest

import losses
import sampling
import sde_lib
import train
from models import create_model
from tests.helpers import REPO

CONFIGS = sorted(os.path.relpath(p, REPO)[:-3].replace('/', '.')
                 for p in glob.glob(os.path.join(REPO, 'configs', '*', '*.py'))
                 if not p.endswith('__init__.py'))


def tiny_override(module) -> dict:
  """The `--config.group.field=value` overrides of the docstring's tiny command."""
  doc = module.__doc__ or ''
  if 'Tiny override' not in doc:
    return {}
  flags = re.findall(r"--config\.(\w+)\.(\w+)=('[^']*'|\S+)", doc.split('Tiny override')[1])
  def value(text):
    text = text.strip("'")
    try:
      return ast.literal_eval(text)
    except (ValueError, SyntaxError):
      return text   # a bare string such as digits
  return {(group, field): value(v) for group, field, v in flags}


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
  losses.get_loss(config, sde)
  losses.get_optimizer(config)
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
