"""The bad-input catalogue: every case as a user types it, one line, no traceback, no damage.

Each case is a main.py command line. It must exit with a non-zero code, print
exactly one `error: ...` line on stderr naming the config field or file at
fault, print no traceback, and leave every file in its workdir untouched (the
tree, sizes, mtimes and SHA-256 of every file are compared before and after).
Workdirs that matter hold a real checkpoint: a tiny MLP trained one step by the
first command, and an initialised tiny NCSN++ for the image-only cases.

Starting a Python that imports JAX costs seconds, so the cases run one after
another in one process with two simulated CPU devices (as in
`--xla_force_host_platform_device_count=2`), each through main.py's own flag
parser and `main()` exactly as `app.run` calls them. `test_cli_end_to_end`
then runs a few of them as separate real processes, to check the exit code and
the formatting that `app.run` adds nothing to.
"""
import json
import os
import time

import pytest

from tests.helpers import REPO, run_python


CONFIG = """
import sys
sys.path.insert(0, {repo!r})
from tests.helpers import tiny_config

def get_config():
  c = tiny_config('vpsde', image={image}, n_iters=1)
  c.training.snapshot_sampling = False
  c.sampling.num_images = 2
  return c
"""

# The driver: runs each case through main.parse_flags + main.main in this process and
# records exit code, stderr, wall time and the workdir's state before and after.
DRIVER = r"""
import contextlib, gc, hashlib, importlib, io, json, os, shutil, sys, time, traceback
from absl import flags
import main as cli

MAIN_FLAGS = ('config', 'workdir', 'mode', 'coordinator_address', 'num_processes', 'process_id',
              'distributed')

def fresh_main(argv):
  # A new command line: drop main.py's flags (and the --config.* overrides, which
  # ml_collections registers from sys.argv) and define them again.
  for name in list(flags.FLAGS):
    if name.split('.')[0] in MAIN_FLAGS:
      delattr(flags.FLAGS, name)
  sys.argv = argv
  return importlib.reload(cli)

def snapshot(root):
  tree = {}
  for d, dirs, files in os.walk(root):
    for name in dirs + files:
      p = os.path.join(d, name)
      st = os.lstat(p)
      digest = hashlib.sha256(open(p, 'rb').read()).hexdigest() if name in files else 'dir'
      tree[os.path.relpath(p, root)] = [st.st_size, st.st_mtime_ns, digest]
  return tree

spec, out_path = json.load(open(sys.argv[1])), sys.argv[2]
results = {}
# An untrained image checkpoint (step 0) for the image cases, drawn on the host: the cases
# check messages, not values, and a jitted init or a CLI training run would compile first.
import checkpointing
from tests.helpers import host_state, tiny_config
config = tiny_config('vpsde', image=True)
state = host_state(config, (8, 8, 1))
ckpt = checkpointing.Checkpointer(spec['image_workdir'])
ckpt.save(0, state, force=True)
ckpt.close()
for case in spec['cases']:
  if case.get('copy_from'):
    shutil.copytree(case['copy_from'], case['workdir'], symlinks=True)
  # Orbax may leave failed read coroutines to the garbage collector, which reports them
  # whenever it runs; collect now so that nothing of the last case lands in this one's stderr.
  # (A real process exits first; test_cli_end_to_end checks such a case for real.)
  gc.collect()
  before = snapshot(case['workdir']) if os.path.isdir(case['workdir']) else None
  err, code, tic = io.StringIO(), 0, time.time()
  with contextlib.redirect_stderr(err):
    try:
      argv = ['main.py'] + case['args']
      main = fresh_main(argv)
      main.main(main.parse_flags(argv))
    except SystemExit as e:
      code = e.code
    except BaseException:
      traceback.print_exc()
      code = 1
  after = snapshot(case['workdir']) if os.path.isdir(case['workdir']) else None
  print(case['id'], code, f'{time.time() - tic:.1f}s', file=sys.__stdout__, flush=True)
  results[case['id']] = {'code': code, 'stderr': err.getvalue(), 'seconds': time.time() - tic,
                         'before': before, 'after': after}
json.dump(results, open(out_path, 'w'))
"""


def error_line(result) -> str:
  """The single `error:` line of a failed case (asserting the catalogue's rules)."""
  stderr = result['stderr']
  assert result['code'] not in (0, None), stderr[-2000:]
  assert 'Traceback' not in stderr, stderr[-4000:]
  lines = [l for l in stderr.strip().splitlines() if l.startswith('error:')]
  assert len(lines) == 1, stderr[-2000:]
  return lines[0]


def cases(tmp):
  """(id, workdir, args, needles) for every case; the first trains the shared checkpoint.

  `toy` is a tiny MLP on a 2-D toy trained one step through the CLI; `image` holds an
  untrained tiny NCSN++ checkpoint (written by the driver) for the image-only cases.
  """
  toy_cfg, image_cfg = ['--config', str(tmp / 'toy.py')], ['--config', str(tmp / 'image.py')]
  toy, image, empty = str(tmp / 'toy'), str(tmp / 'image'), str(tmp / 'empty')
  mask, blocker = str(tmp / 'mask.npy'), str(tmp / 'a_file')

  def on_toy(*args):
    return toy_cfg + ['--workdir', toy, *args]

  out = [
      ('train', toy, on_toy(), None),
      # config typos and types
      ('unknown_key', toy, on_toy('--config.training.n_iter=5'), ['n_iter']),
      ('wrong_type', toy, on_toy('--config.training.n_iters=abc'), ['training.n_iters', 'abc']),
      # unknown names list the valid ones
      ('unknown_model', toy, on_toy('--config.model.name=unet9'),
       ['model.name', 'unet9', 'valid', 'ncsnpp', 'mlp']),
      ('unknown_sde', toy, on_toy('--config.training.sde=vesdee'),
       ['training.sde', 'vesdee', 'vpsde', 'subvpsde']),
      ('unknown_predictor', toy, on_toy('--mode', 'sample', '--config.sampling.predictor=heun'),
       ['sampling.predictor', 'heun', 'euler_maruyama', 'reverse_diffusion']),
      ('unknown_corrector', toy, on_toy('--mode', 'sample', '--config.sampling.corrector=hmc'),
       ['sampling.corrector', 'hmc', 'langevin', 'ald']),
      ('unknown_dataset', toy, on_toy('--config.data.dataset=cifar11'),
       ['data.dataset', 'cifar11', 'digits', 'mnist']),
      # ancestral sampling is defined for the SMLD (VE) and DDPM (VP) chains only
      ('ancestral_on_subvp', toy, on_toy('--mode', 'sample', '--config.training.sde=subvpsde',
                                         '--config.sampling.predictor=ancestral_sampling'),
       ['sampling.predictor=ancestral_sampling', 'subVPSDE']),
      # NCSN++ halves the resolution len(ch_mult) - 1 = 1 time: 7 is odd
      ('image_size', image, image_cfg + ['--workdir', image, '--config.data.image_size=7'],
       ['data.image_size=7']),
      # no checkpoint: the empty workdir must stay empty
      ('sample_no_ckpt', empty, toy_cfg + ['--workdir', empty, '--mode', 'sample'],
       ['no checkpoint', empty]),
      # a checkpoint of another architecture (the MLP's label embedding width)
      ('shape_mismatch_sample', toy, on_toy('--mode', 'sample', '--config.model.nf=16'),
       ['does not match', os.path.join(toy, 'checkpoints')]),
      ('shape_mismatch_train', toy, on_toy('--config.model.nf=16', '--config.training.n_iters=2'),
       ['does not match', os.path.join(toy, 'checkpoints')]),
      # a workdir that cannot be created (its parent is a file; chmod does not stop root)
      ('unwritable_workdir', toy, toy_cfg + ['--workdir', os.path.join(blocker, 'run')],
       [os.path.join(blocker, 'run')]),
      # a TFDS dataset that is not prepared, offline
      ('tfds_offline', empty, image_cfg + ['--workdir', empty, '--config.data.dataset=cifar10',
                                           '--config.data.num_channels=3',
                                           f'--config.data.data_dir={tmp / "no_tfds"}'],
       ['cifar10', str(tmp / 'no_tfds')]),
      # an image-folder dataset (FFHQ) whose folder does not exist
      ('image_folder_missing', empty, image_cfg + ['--workdir', empty, '--config.data.dataset=ffhq',
                                                   '--config.data.num_channels=3',
                                                   f'--config.data.data_dir={tmp / "no_ffhq"}'],
       ['data.data_dir', str(tmp / 'no_ffhq')]),
      # the global batch must split over the 2 devices
      ('batch_not_divisible', toy, on_toy('--config.training.batch_size=7'),
       ['training.batch_size=7', 'device count 2']),
      ('sample_batch_not_divisible', toy, on_toy('--mode', 'sample',
                                                 '--config.sampling.batch_size=3'),
       ['sampling.batch_size=3', 'device count 2']),
      # gradient accumulation: each device's share must split into the microbatches
      ('microbatches_not_dividing', toy, on_toy('--config.training.batch_size=8',
                                                '--config.training.microbatches=3'),
       ['training.microbatches=3', 'per-device batch 4', 'divisor of 4']),
  ]
  # out-of-range values, refused by validation.validate before the mode starts; the toy
  # workdir holds a run (checkpoints/, tensorboard/ event files, metrics.jsonl)
  out += [
      ('zero_frequency', toy, on_toy('--config.training.snapshot_freq=0'),
       ['training.snapshot_freq=0', 'integer >= 1']),
      ('zero_batch_on_a_run', toy, on_toy('--config.training.batch_size=0'),
       ['training.batch_size=0', 'integer >= 1']),
      ('dropout_above_one', toy, on_toy('--config.model.dropout=1.5'),
       ['model.dropout=1.5', '[0, 1)']),
      ('negative_ode_tolerance', toy, on_toy('--mode', 'sample', '--config.sampling.method=ode',
                                             '--config.sampling.rtol=-1e-05'),
       ['sampling.rtol=-1e-05', '> 0']),
      ('negative_snr', toy, on_toy('--mode', 'sample', '--config.sampling.corrector=langevin',
                                   '--config.sampling.num_steps=30', '--config.sampling.snr=-0.16'),
       ['sampling.snr=-0.16', '> 0']),
      ('config_argument_unparsable', toy, [*toy_cfg[:1], toy_cfg[1] + ':nonsense',
                                           '--workdir', toy],
       ['get_config(\'nonsense\')', 'TypeError']),
  ]
  # modes of evaluate.py and controllable.py
  out += [
      ('likelihood_no_ckpt', empty, image_cfg + ['--workdir', empty, '--mode', 'likelihood'],
       ['no checkpoint', empty]),
      ('eval_no_ckpt', empty, image_cfg + ['--workdir', empty, '--mode', 'eval'],
       ['no checkpoint', empty]),
      ('mask_shape', image, image_cfg + ['--workdir', image, '--mode', 'inpaint',
                                         f'--config.sampling.mask={mask}'],
       ['sampling.mask', mask, '(5, 5)']),
  ]
  return out


NAN_ID = 'nan_loss'


@pytest.fixture(scope='module')
def results(tmp_path_factory):
  import numpy as np
  tmp = tmp_path_factory.mktemp('bad_inputs')
  (tmp / 'toy.py').write_text(CONFIG.format(repo=REPO, image=False))
  (tmp / 'image.py').write_text(CONFIG.format(repo=REPO, image=True))
  (tmp / 'empty').mkdir()
  (tmp / 'a_file').write_text('not a directory')
  np.save(tmp / 'mask.npy', np.ones((5, 5), bool))
  spec = [{'id': i, 'workdir': w, 'args': a} for i, w, a, _ in cases(tmp)]
  # A huge learning rate from the trained checkpoint on: the parameters overflow after one
  # step and the next loss is inf/NaN. Run on a copy, which may gain log lines only.
  nan_dir = str(tmp / 'nan')
  spec.append({'id': NAN_ID, 'workdir': nan_dir, 'copy_from': str(tmp / 'toy'),
               'args': ['--config', str(tmp / 'toy.py'), '--workdir', nan_dir,
                        '--config.optim.lr=1e30', '--config.training.n_iters=4',
                        '--config.training.snapshot_freq_for_preemption=4',
                        '--config.training.snapshot_freq=4']})
  (tmp / 'spec.json').write_text(json.dumps({'cases': spec, 'image_workdir': str(tmp / 'image')}))
  proc = run_python(['-c', DRIVER, str(tmp / 'spec.json'), str(tmp / 'results.json')],
                    env={'XLA_FLAGS': '--xla_force_host_platform_device_count=2'}, timeout=600)
  (tmp / 'driver.log').write_text(proc.stdout + proc.stderr)
  assert proc.returncode == 0, proc.stderr[-4000:]
  out = json.loads((tmp / 'results.json').read_text())
  out['_tmp'] = str(tmp)
  return out


def _ids():
  import pathlib
  return [c[0] for c in cases(pathlib.Path('/x'))[1:]]


def test_training_the_shared_checkpoint_worked(results):
  assert results['train']['code'] in (0, None), results['train']['stderr'][-3000:]
  assert os.path.isdir(os.path.join(results['_tmp'], 'toy', 'checkpoints', '1'))


@pytest.mark.parametrize('case_id', _ids())
def test_case(results, case_id):
  import pathlib
  tmp = pathlib.Path(results['_tmp'])
  needles = {c[0]: c[3] for c in cases(tmp)}[case_id]
  result = results[case_id]
  line = error_line(result)
  for needle in needles:
    assert needle in line, (needle, line)
  assert result['before'] == result['after'], 'the workdir changed'
  if case_id == 'sample_no_ckpt':
    assert result['after'] == {}          # not even an empty checkpoints/ folder
  if case_id == 'unwritable_workdir':
    assert not os.path.exists(tmp / 'a_file' / 'run')
  if case_id == 'zero_batch_on_a_run':   # the run's event files are among the untouched
    assert any(p.startswith('tensorboard' + os.sep) for p in result['before']), result['before']
  if case_id == 'tfds_offline':
    assert result['seconds'] < 5, result['seconds']   # the bound; no network retries


def test_nan_loss_keeps_the_last_good_checkpoint(results):
  result = results[NAN_ID]
  line = error_line(result)
  assert 'optim.lr' in line and 'last good checkpoint is step 1' in line, line
  before, after = result['before'], result['after']
  # Nothing is deleted; checkpoint files are untouched and no new step appears.
  assert set(before) <= set(after)
  for path, stat in before.items():
    if path != 'metrics.jsonl' and stat[2] != 'dir':   # folders may gain an event file
      assert after[path] == stat, path
  assert not [p for p in set(after) - set(before) if p.startswith('checkpoints')]
  # metrics.jsonl only grows (the finite loss of step 2 is logged before step 3's inf).
  assert after['metrics.jsonl'][0] >= before['metrics.jsonl'][0]


@pytest.mark.slow   # a real process; test_main checks the exit code 2 and the one line by default
def test_cli_end_to_end(results, tmp_path):
  """Real processes as a user runs them: exit code 2, one line, the workdir untouched."""
  import pathlib
  tmp = pathlib.Path(results['_tmp'])
  toy = str(tmp / 'toy')
  before = results['train']['after']
  proc = run_python(['main.py', '--config', str(tmp / 'toy.py'), '--workdir', toy, '--mode',
                     'sample', '--config.model.nf=16'], timeout=300)
  line = error_line({'code': proc.returncode, 'stderr': proc.stderr})
  assert proc.returncode == 2 and 'does not match' in line, line
  import hashlib
  for path, (size, mtime, digest) in before.items():   # the trained checkpoint, untouched
    full = os.path.join(toy, path)
    assert os.stat(full).st_mtime_ns == mtime, path
    if digest != 'dir':
      assert hashlib.sha256(open(full, 'rb').read()).hexdigest() == digest, path

  cfg, image_cfg = tmp_path / 'toy.py', tmp_path / 'image.py'
  cfg.write_text(CONFIG.format(repo=REPO, image=False))
  image_cfg.write_text(CONFIG.format(repo=REPO, image=True))
  empty = tmp_path / 'empty'
  empty.mkdir()
  proc = run_python(['main.py', '--config', str(cfg), '--workdir', str(empty), '--mode',
                     'sample', '--config.sampling.corrector=hmc'], timeout=300)
  line = error_line({'code': proc.returncode, 'stderr': proc.stderr})
  assert proc.returncode == 2 and 'sampling.corrector' in line, line
  assert os.listdir(empty) == []

  proc = run_python(['main.py', '--config', f'{cfg}:nonsense', '--workdir', str(empty)],
                    timeout=300)
  line = error_line({'code': proc.returncode, 'stderr': proc.stderr})
  assert proc.returncode == 2 and 'nonsense' in line and 'File "' not in line, line
  assert os.listdir(empty) == []

  tic = time.time()
  proc = run_python(['main.py', '--config', str(image_cfg), '--workdir', str(empty),
                     '--config.data.dataset=mnist', f'--config.data.data_dir={tmp_path}'],
                    timeout=300)
  seconds = time.time() - tic
  line = error_line({'code': proc.returncode, 'stderr': proc.stderr})
  assert proc.returncode == 2 and "'mnist'" in line, line
  assert os.listdir(empty) == []
  # The whole command, JAX's import included, in well under a minute (no network retries);
  # the < 5 s bound on the failing call itself is asserted in test_case[tfds_offline].
  assert seconds < 60, seconds


# ----------------------------------------------------------------------------- the schema, in-process
# validation.validate(config, mode) is the one entry main.run calls before any mode touches its
# workdir. These run it directly (milliseconds a case): every field of every mode with every
# value its rule refuses, and the classes of fields the issue names.

def base_config(mode: str):
  """A config that `mode` accepts, with every group the mode reads."""
  from configs.dmcmc import toy_gmm_dmcmc
  from configs.dsb import gaussian
  from tests.helpers import tiny_config
  if mode == 'dmcmc':
    return toy_gmm_dmcmc.get_config()
  if mode == 'dsb':
    return gaussian.get_config('2')
  config = tiny_config('vpsde', image=mode in ('inpaint', 'colorize'))
  if mode == 'colorize':
    config.data.num_channels = 3
  config.sampling.num_images = 2
  return config


MODES = ('train', 'sample', 'inpaint', 'colorize', 'likelihood', 'eval', 'dmcmc', 'dsb')


def schema_cases():
  import validation
  out = []
  for mode in MODES:
    config = base_config(mode)
    for field in validation.fields_of(mode):
      try:
        validation._get(config, field)   # pylint: disable=protected-access
      except KeyError:
        continue
      for value in validation.SCHEMA[field].invalid_examples():
        out.append(pytest.param(mode, field, value, id=f'{mode}-{field}={value!r}'))
  return out


@pytest.mark.parametrize('mode', MODES)
def test_base_configs_are_valid(mode):
  import validation
  validation.validate(base_config(mode), mode)


def test_every_schema_field_is_read_by_some_mode_and_has_refused_values():
  """A row no mode reads would be dead; a Number rule with no bound still refuses NaN."""
  import validation
  read = {f for m in MODES for f in validation.fields_of(m)}
  assert set(validation.SCHEMA) == read, set(validation.SCHEMA) - read
  for field, rule in validation.SCHEMA.items():
    if isinstance(rule, validation.Number) and rule.kind is float:
      assert rule.invalid_examples(), field


@pytest.mark.parametrize('mode,field,value', schema_cases())
def test_schema_refuses_every_out_of_range_value(mode, field, value):
  """Table-driven over validation.SCHEMA: each invalid value is one ConfigError line naming the
  field, the value, the allowed range and the --config override that fixes it."""
  import validation
  from errors import ConfigError
  config = base_config(mode)
  group, name = field.rsplit('.', 1) if '.' in field else ('', field)
  with config.unlocked():
    (config[group] if group else config)[name] = value
  with pytest.raises(ConfigError) as err:
    validation.validate(config, mode)
  message = str(err.value)
  assert '\n' not in message
  assert message.startswith(f'{field}={value!r} is '), message
  rule = validation.SCHEMA[field]
  allowed = ', '.join(rule.valid()) if isinstance(rule, validation.Choice) else rule.allowed()
  assert allowed in message and f'--config.{field}' in message, message


def _numeric_leaves(config, prefix=''):
  for key, value in config.items():
    if hasattr(value, 'items'):
      yield from _numeric_leaves(value, f'{prefix}{key}.')
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
      yield f'{prefix}{key}', value


# Numeric fields with no range to check: any value is a valid setting.
UNBOUNDED = {'dsb.data_mean', 'dsb.prior_mean'}


def test_every_numeric_field_of_every_family_is_in_the_schema():
  """Adding a numeric config field without a SCHEMA row (so without validation) fails here."""
  import validation
  from configs.dmcmc.defaults import get_config as dmcmc_defaults
  from configs.dsb.defaults import get_dsb_configs
  fields = {f for c in (dmcmc_defaults(), get_dsb_configs()) for f, _ in _numeric_leaves(c)}
  missing = sorted(fields - set(validation.SCHEMA) - UNBOUNDED)
  assert not missing, f'add a validation.SCHEMA row for {missing}'


@pytest.mark.parametrize('kind,fields', [
    ('frequency', lambda f: f.endswith(('_freq', 'freq_for_preemption', 'cache_refresh'))),
    ('tolerance', lambda f: f.endswith(('.rtol', '.atol'))),
    ('probability', lambda f: f in ('model.dropout', 'model.ema_rate', 'sampling.mask_fraction')),
    ('time', lambda f: f.endswith('.eps') and not f.startswith('optim')),
])
def test_each_class_of_field_refuses_its_bad_values(kind, fields):
  """The issue's classes by name: zero frequencies, non-positive tolerances, probabilities
  outside [0, 1] (dropout 1 included: it drops everything), times outside (0, 1)."""
  import validation
  chosen = [f for f in validation.SCHEMA if fields(f)]
  assert len(chosen) >= 2, chosen
  bad = {'frequency': [0, -1], 'tolerance': [0., -1e-5], 'probability': [-0.1, 1.5],
         'time': [0., 1., -1e-5]}[kind]
  for field in chosen:
    rule = validation.SCHEMA[field]
    for value in bad:
      assert not rule.ok(value), (field, value)
    if kind == 'probability' and field == 'model.dropout':
      assert not rule.ok(1.)
    assert rule.ok({'frequency': 1, 'tolerance': 1e-5, 'probability': 0.5, 'time': 1e-3}[kind])


@pytest.mark.parametrize('mode,overrides,needles', [
    ('train', {'training.n_iters': 4, 'training.log_freq': 3, 'training.n_jitted_steps': 2},
     ['training.log_freq=3', 'multiple of', 'n_jitted_steps=2']),
    ('train', {'model.sigma_min': 6., 'training.sde': 'vesde'}, ['sigma_min=6.0', 'sigma_max=5.0']),
    ('sample', {'sampling.predictor': 'ancestral_sampling', 'training.sde': 'subvpsde'},
     ['ancestral_sampling', 'subVPSDE']),
    ('sample', {'sampling.method': 'ald_ncsn'}, ['vesde']),
    ('sample', {'sampling.method': 'edm', 'sampling.s_tmin': 2., 'sampling.s_tmax': 1.},
     ['sampling.s_tmin=2.0', 'sampling.s_tmax=1.0']),
    ('eval', {'eval.begin_ckpt': 5, 'eval.end_ckpt': 2}, ['eval.begin_ckpt=5', 'end_ckpt=2']),
    ('dmcmc', {'dmcmc.num_outputs': 100}, ['dmcmc.num_outputs=100', 'n_chains']),
    ('dsb', {'dsb.gamma_min': 0.5, 'dsb.gamma_max': 0.1}, ['dsb.gamma_min=0.5']),
    ('dsb', {'training.microbatches': 2}, ['training.microbatches=2', '--mode dsb']),
    ('train', {'training.network_parts': 3}, ['training.network_parts=3', 'divisor of 8']),
    ('dsb', {'training.network_parts': 3}, ['training.network_parts=3', 'dsb.batch_size']),
    ('colorize', {'data.num_channels': 1}, ['num_channels=3']),
])
def test_combinations_are_checked_by_the_mode_entry(mode, overrides, needles):
  import validation
  from errors import ConfigError
  from tests.helpers import apply
  config = apply(base_config(mode), overrides)
  with pytest.raises(ConfigError) as err:
    validation.validate(config, mode)
  assert '\n' not in str(err.value)
  for needle in needles:
    assert needle in str(err.value), (needle, str(err.value))
