"""Every shipped config builds: model, SDE, loss, sampler and parameter shapes."""
import glob
import importlib
import os

import jax
import jax.numpy as jnp
import pytest

import losses
import sampling
import sde_lib
import train
from errors import ConfigError
from models import create_model
from tests.helpers import REPO

CONFIGS = sorted(os.path.relpath(p, REPO)[:-3].replace('/', '.')
                 for p in glob.glob(os.path.join(REPO, 'configs', '*', '*.py'))
                 if not p.endswith('__init__.py'))
NEEDS_MODEL_ZOO = {'configs.ve.cifar10_ncsnpp_continuous'}   # FIR / progressive growing


@pytest.mark.parametrize('name', CONFIGS)
def test_config_builds(name):
  config = importlib.import_module(name).get_config()
  if name in NEEDS_MODEL_ZOO:
    with pytest.raises(ConfigError, match='model.fir'):
      create_model(config)
    return
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
