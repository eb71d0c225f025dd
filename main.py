"""Entry point: python main.py --config CONFIG --workdir DIR --mode MODE.

Parses flags, sets up devices (and the JAX distributed runtime when asked) and
dispatches the mode. A user error becomes one line on stderr and exit code 2.
"""
import importlib
import os
import sys

import xla_cpu  # noqa: F401  (first: XLA:CPU flags must be set before JAX starts)
from absl import app, flags, logging
from ml_collections import config_flags

from errors import UserError

# mode -> 'module:function'; each function is f(config, workdir). Imported lazily
# so that `--mode train` never imports the DSB or evaluation code.
MODES = {
    'train': 'train:train_and_evaluate',
    'sample': 'generate:sample',
    'inpaint': 'controllable:inpaint_mode',
    'colorize': 'controllable:colorize_mode',
    'likelihood': 'evaluate:likelihood_mode',
    'eval': 'evaluate:eval_mode',
    'fid_stats': 'fid_stats:fid_stats_mode',
    'dmcmc': 'dmcmc.run:dmcmc_mode',
    'dsb': 'dsb.run:dsb_mode',
}

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Config file, e.g. configs/vp/digits_ddpmpp_continuous.py',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, samples and results.')
flags.DEFINE_enum('mode', 'train', list(MODES), 'What to run.')
flags.DEFINE_string('coordinator_address', None, 'host:port of process 0 (multi-host runs).')
flags.DEFINE_integer('num_processes', None, 'Number of processes (multi-host runs).')
flags.DEFINE_integer('process_id', None, 'This process\'s index (multi-host runs).')
flags.DEFINE_bool('distributed', False, 'Call jax.distributed.initialize() with auto-detection '
                  '(Cloud TPU, SLURM) when no coordinator is given.')
flags.mark_flags_as_required(['config', 'workdir'])


class _QuietLibraries:
  """Drops the INFO chatter of orbax (dozens of lines per checkpoint) and friends."""
  NOISY = ('/orbax/', '/etils/', '/matplotlib/', '/jax/_src/')

  def filter(self, record) -> bool:
    return record.levelno >= 30 or not any(n in record.pathname for n in self.NOISY)


def _die(message: str) -> None:
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def _config_path(argv) -> str | None:
  for i, arg in enumerate(argv):
    if arg.startswith('--config='):
      return arg.split('=', 1)[1]
    if arg == '--config' and i + 1 < len(argv):
      return argv[i + 1]
  return None


def parse_flags(argv):
  """absl's parser, but a bad flag or config override is one line, not a usage dump."""
  path = _config_path(argv)
  if path and not os.path.isfile(path.split(':', 1)[0]):  # 'file.py:arg' passes 'arg' on
    _die(f'--config: no such file {path.split(":", 1)[0]!r}; configs live under configs/, '
         'e.g. configs/vp/digits_ddpmpp_continuous.py')
  try:
    return FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, TypeError, ValueError) as e:
    # ml_collections reports an unknown override key as AttributeError('...Did you mean...').
    raw = str(e).replace('\\n', '\n')
    if 'Traceback (most recent call last)' in raw and path:
      # get_config(arg) itself failed: name the file and argument, keep the exception's
      # last line (its type and message), drop the traceback.
      file, _, arg = path.partition(':')
      cause = [l.strip() for l in raw.splitlines() if l.strip()][-1].replace('\\\'', '\'')
      _die(f'--config={path}: get_config({arg!r}) of {file} failed with {cause}; the text '
           f'after ":" is passed to get_config, see {file}\'s docstring for what it takes')
    message = ' '.join(raw.replace('\\\'', '').split())
    if message[:1] in '\'"':   # KeyError/AttributeError messages come quoted
      message = message[1:-1] if message[-1:] == message[:1] else message[1:]
    _die(f'bad flag or --config override: {message}')


def run(config, workdir: str, mode: str):
  """Dispatches one mode; importable so tests can call it directly."""
  if mode not in MODES:
    raise UserError(f'--mode={mode} is unknown; valid: {", ".join(MODES)}')
  import validation
  validation.validate(config, mode)   # every check of the mode, before it touches workdir
  module, function = MODES[mode].split(':')
  return getattr(importlib.import_module(module), function)(config, workdir)


def main(argv):
  if len(argv) > 1:
    _die(f'unexpected arguments {argv[1:]}; overrides look like --config.training.n_iters=100')
  logging.get_absl_handler().addFilter(_QuietLibraries())
  import jax
  env = os.environ
  if FLAGS.coordinator_address or FLAGS.distributed or env.get('JAX_COORDINATOR_ADDRESS'):
    # Flags, else JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID; what is still
    # missing JAX auto-detects (Cloud TPU, SLURM, Open MPI, Kubernetes).
    def from_env(value, name):
      return int(env[name]) if value is None and env.get(name) else value
    jax.distributed.initialize(FLAGS.coordinator_address,
                               from_env(FLAGS.num_processes, 'JAX_NUM_PROCESSES'),
                               from_env(FLAGS.process_id, 'JAX_PROCESS_ID'))
  config = FLAGS.config
  if not config.name:
    config.name = os.path.splitext(os.path.relpath(config_flags.get_config_filename(
        FLAGS['config']), 'configs'))[0]
  if jax.process_index() != 0:
    logging.set_verbosity(logging.WARNING)
  try:
    run(config, FLAGS.workdir, FLAGS.mode)
  except UserError as e:
    _die(str(e))


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
