"""A config's tiny variant, the one definition: `--config <file>.py:tiny`.

Every training config ends its `get_config(arg=None)` with `tiny.variant(config, arg)`;
ml_collections' config_flags passes the text after ':' in `--config <file>.py:<arg>` to
get_config, so

    python main.py --config configs/ve/cifar10_ncsnpp_continuous.py:tiny --workdir runs/tiny --mode train

trains that config's own network, shrunk to the size its model registry entry names
(`MODELS[config.model.name].tiny_config_overrides()`), for a few steps on CPU:

- data that must be prepared or downloaded (CIFAR-10, CelebA, LSUN, FFHQ, ...) is replaced
  by the bundled digits, and the network takes the registry's whole tiny size: width,
  levels, blocks, attention and the 8x8x1 image shape;
- bundled data (digits, photo_crops, the 2-D toys) is kept, and so is the network's depth
  (its levels and blocks are already small): only the widths and the image size shrink;
- TRAIN: 20 single (unfused) training steps.

Only size fields are taken from the registry, never the fields that change what is
learned (the SDE, the sigma ladder, dropout): a tiny run trains the same model, smaller.
Tests, docstrings and benchmarks share this function; tests/test_configs.py checks that
every training config documents its tiny command and that it trains.
"""
from __future__ import annotations

import ml_collections

from errors import ConfigError

# The registry's size fields, taken for configs on data that is not bundled.
SIZE = ('model.nf', 'model.ch_mult', 'model.num_res_blocks', 'model.attn_resolutions',
        'model.ddpm_num_groups', 'model.hidden_dims', 'classifier.channels',
        'classifier.hidden_dims', 'data.image_size', 'data.num_channels', 'data.dim')
# Of those, what shrinks on bundled data: widths (GroupNorm's group count follows the
# width) and the image size; the number of channels and the data dimension are the data's.
WIDTH = ('model.nf', 'model.ddpm_num_groups', 'model.hidden_dims', 'classifier.channels',
         'classifier.hidden_dims', 'data.image_size')
BUNDLED_IMAGES = ('digits', 'photo_crops')
TRAIN = {'training.n_iters': 20, 'training.n_jitted_steps': 1}


def apply_tiny(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks `config` in place to its tiny variant (see the module docstring); returns it.

  Raises:
    ConfigError: config.model.name has no tiny size in the model registry.
  """
  from models import MODELS  # pylint: disable=g-import-not-at-top  (configs load without flax)
  from toys import TOYS  # pylint: disable=g-import-not-at-top
  entry = MODELS.get(config.model.name)
  if entry is None or not hasattr(entry, 'tiny_config_overrides'):
    raise ConfigError(f'model.name={config.model.name!r} has no tiny variant (no '
                      'tiny_config_overrides in models/); drop ":tiny" from --config')
  bundled = config.data.dataset in BUNDLED_IMAGES or config.data.dataset in TOYS
  keep = WIDTH if bundled else SIZE
  overrides = {k: v for k, v in entry.tiny_config_overrides().items() if k in keep}
  if not bundled:
    overrides['data.dataset'] = 'digits'
  for key, value in {**overrides, **TRAIN}.items():
    group, field = key.split('.')
    config[group][field] = value
  return config


def variant(config: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
  """get_config's argument: None gives `config` itself, 'tiny' its `apply_tiny` variant.

  Raises:
    ConfigError: any other argument.
  """
  if arg is None:
    return config
  if arg == 'tiny':
    return apply_tiny(config)
  raise ConfigError(f'config argument {arg!r} is unknown: this config takes ":tiny" '
                    '(configs/tiny.py) or nothing')
