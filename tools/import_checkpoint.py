"""Imports a published score_sde / score_sde_pytorch checkpoint as a run of this project.

    python tools/import_checkpoint.py --config configs/ve/cifar10_ncsnpp_continuous.py \
        --src checkpoint_24.pth --workdir runs/cifar10_ncsnpp_continuous_published

`--src` is score_sde_pytorch's `checkpoint_<N>.pth` (read without torch) or
score_sde's msgpack `checkpoint_<N>` (read without flax.optim); `--config` is the
config it was trained with, with any `--config.x=...` overrides. The result is
an ordinary checkpoint, `DIR/checkpoints/<step>`, that every mode runs on:

    python main.py --config configs/ve/cifar10_ncsnpp_continuous.py \
        --workdir runs/cifar10_ncsnpp_continuous_published --mode sample

A wrong config or architecture, a truncated file or a missing EMA is one line on
stderr naming the first mismatching parameter (exit 2), and nothing is written.
For a `.pth` NCSN / NCSNv2 the tool prints the model overrides (score_sde_pytorch's
InstanceNorm++ variance and align_corners resize) that every later mode needs;
DIR/imported_checkpoint.json records them, and a mode run without them is refused.
"""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from errors import UserError  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'The checkpoint\'s training config.',
                                lock_config=True)
flags.DEFINE_string('src', None, 'score_sde_pytorch checkpoint_<N>.pth or score_sde checkpoint_<N>.')
flags.DEFINE_string('workdir', None, 'Run directory to create (no checkpoints in it yet).')
flags.mark_flags_as_required(['config', 'src', 'workdir'])


def main(argv):
  if len(argv) > 1:
    _die(f'unexpected arguments {argv[1:]}')
  import checkpoint_import
  config = FLAGS.config
  if not config.get('name'):
    config.name = os.path.splitext(os.path.relpath(
        config_flags.get_config_filename(FLAGS['config']), 'configs'))[0]
  try:
    record = checkpoint_import.import_checkpoint(config, FLAGS.src, FLAGS.workdir)
  except UserError as e:
    _die(str(e))
  extra = ' '.join(f'--config.{k}={v}' for k, v in record['required_overrides'].items())
  print(f'wrote {record["checkpoint"]}' + (f'; run every mode with {extra}' if extra else ''))


def _die(message: str) -> None:
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


if __name__ == '__main__':
  logging.set_verbosity(logging.WARNING)   # orbax writes dozens of INFO lines per checkpoint
  app.run(main)
