"""Prints a model's name, total parameter count and a per-module table.

    python -m models --config configs/ve/cifar10_ncsnpp_continuous.py
    python -m models --config configs/ve/ffhq_1024_ncsnpp_continuous.py --depth 2

Only shapes are traced (`jax.eval_shape` of `init`): nothing is computed or
allocated, so it takes seconds even for the 1024 px models. Config overrides
(`--config.model.nf=8`) work as in main.py.
"""
import collections
import math
import sys

import jax
import jax.numpy as jnp
from absl import app, flags
from ml_collections import config_flags

from errors import UserError
from models import create_model

FLAGS = flags.FLAGS


def _define_flags():
  """Only when run as a program, so that importing this module defines no flags."""
  config_flags.DEFINE_config_file('config', None, 'Config file.', lock_config=True)
  flags.DEFINE_integer('depth', 1, 'Group parameters by the first DEPTH levels of their path.')
  flags.mark_flag_as_required('config')


def param_shapes(config):
  """The model and its parameter ShapeDtypeStructs (no computation)."""
  model = create_model(config)
  if config.model.name == 'mlp':
    shape = (1, config.data.dim)
  else:
    shape = (1, config.data.image_size, config.data.image_size, config.data.num_channels)
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros(shape, jnp.float32),
                             jnp.zeros((1,), jnp.float32))
  return model, variables['params']


def count_by_module(params, depth: int = 1) -> dict:
  """{'Module_0/Sub_1': count} over the first `depth` levels of each path, in order."""
  counts = collections.OrderedDict()
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    keys = [getattr(k, 'key', str(k)) for k in path]
    name = '/'.join(keys[:depth]) if len(keys) > depth else '/'.join(keys[:-1]) or keys[0]
    counts[name] = counts.get(name, 0) + math.prod(leaf.shape)
  return counts


def main(_):
  config = FLAGS.config
  try:
    model, params = param_shapes(config)
  except UserError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  counts = count_by_module(params, FLAGS.depth)
  total = sum(counts.values())
  width = max(len(k) for k in counts)
  print(f'model: {config.model.name} ({type(model).__name__})')
  print(f'total parameters: {total:,}')
  print(f'{"module":<{width}}  {"params":>12}  {"share":>6}')
  for name, n in counts.items():
    print(f'{name:<{width}}  {n:>12,}  {100 * n / total:>5.1f}%')
  by_type = collections.Counter()
  instances = collections.Counter()
  for name, n in count_by_module(params, 1).items():
    kind = name.rsplit('_', 1)[0]
    by_type[kind] += n
    instances[kind] += 1
  print('\nby module type:')
  for kind, n in by_type.most_common():
    print(f'{kind:<{width}}  {n:>12,}  {100 * n / total:>5.1f}%  x{instances[kind]}')


if __name__ == '__main__':
  _define_flags()
  app.run(main)
