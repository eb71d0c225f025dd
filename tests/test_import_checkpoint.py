"""tools/import_checkpoint.py: the reference implementations' own checkpoints, score for score.

The fixtures (tests/fixtures/reference_checkpoints, see its README) were written by
score_sde_pytorch's and score_sde's own save code with random weights, EMA and
training weights differing in every trainable tensor, together with the
references' own score outputs on fixed (x, t). Each is imported through the
tool's code path (`checkpoint_import.import_checkpoint`, an Orbax checkpoint),
restored as every mode restores a run (`restore.restore_run`), and
its score must equal the reference's to 1e-5 relative: float32 rounding through
these ~20-layer networks is ~1e-6 (measured 3e-7 .. 3e-6).

One reference value is not float32-exact: both references compute the VP
marginal std as sqrt(1 - exp(2 log alpha)), which cancels at small t (1.2e-4
relative at t = 1e-3; this project uses -expm1, 6e-8). For VP-continuous
fixtures the reference score is therefore compared after swapping its std for
the float64 one: score_ref * std_ref / std_exact, i.e. exactly -net_ema / std.
"""
import ast
import importlib
import json
import os
import pickle
import shutil
import zipfile

import jax
import numpy as np
import pytest

import checkpoint_import
import checkpointing
import evaluate
import parallel
import restore
import sde_lib
import train
from errors import CheckpointError, ConfigError
from models import create_model
from models import utils as mutils
from tests.helpers import REPO, run_python

FIXTURES = os.path.join(REPO, 'tests', 'fixtures', 'reference_checkpoints')
with open(os.path.join(FIXTURES, 'manifest.json')) as _f:
  MANIFEST = json.load(_f)


def fixture_config(src: str, **extra):
  """The project config + overrides that the manifest names for `src`."""
  entry = MANIFEST[src]
  module = entry['project_config'][:-len('.py')].replace('/', '.')
  config = importlib.import_module(module).get_config()
  for flag in entry['project_overrides']:
    key, value = flag[len('--config.'):].split('=', 1)
    group, field = key.split('.')
    config[group][field] = ast.literal_eval(value)
  for key, value in extra.items():
    group, field = key.split('__')
    config[group][field] = value
  return config


def restore_state(config, workdir):
  """The TrainState restored into the abstract state the modes restore into
  (restore.abstract_state, under restore.restore_run's import check)."""
  checkpointing.check_import_record(config, workdir)
  model = create_model(config)
  mesh = parallel.make_mesh()
  shape = (config.data.image_size, config.data.image_size, config.data.num_channels)
  ckpt = checkpointing.Checkpointer(workdir, create=False)
  state = ckpt.restore(restore.abstract_state(config, model, shape, mesh))
  ckpt.close()
  return model, state


def exact_vp_std(sde, t):
  lmc = -0.25 * t ** 2 * (sde.beta_max - sde.beta_min) - 0.5 * t * sde.beta_min
  return np.sqrt(-np.expm1(2. * lmc.astype(np.float64)))


def rel_err(a, b):
  return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))


# Default tier: one fixture per reader and architecture, discrete and continuous labels
# (torch NCSNv2, NCSN++ continuous, DDPM++ discrete; jax DDPM++). -m slow adds the rest:
# torch DDPM (its fidelity also in test_ddpm_needs_the_references_32_groups), torch DDPM++
# continuous, torch NCSN v1 (~25 s; its pairing also in
# test_torch_ncsn_v1_pairs_each_tensor_with_its_layer), torch NCSN++ discrete, jax NCSN++.
SLOW_FIXTURES = ('torch_ddpm_vp_discrete/checkpoint_1.pth',
                 'torch_ddpmpp_vp_continuous/checkpoint_1.pth',
                 'torch_ncsn_ve_discrete/checkpoint_1.pth',
                 'torch_ncsnpp_ve_discrete/checkpoint_1.pth', 'jax_ncsnpp_ve_continuous/checkpoint_1')


@pytest.mark.parametrize('src', [pytest.param(s, marks=pytest.mark.slow) if s in SLOW_FIXTURES
                                 else s for s in sorted(MANIFEST)])
def test_imported_score_equals_reference(src, tmp_path):
  config = fixture_config(src)
  record = checkpoint_import.import_checkpoint(config, os.path.join(FIXTURES, src),
                                               str(tmp_path))
  ref = np.load(os.path.join(FIXTURES, MANIFEST[src]['reference']))
  meta = json.loads(str(ref['meta']))
  model, state = restore_state(config, str(tmp_path))
  assert int(state.step) == record['step'] == meta['step']
  # Only a .pth RefineNet needs model options beyond the config's (see the test below);
  # every other import leaves its workdir restorable with the plain config.
  want_required = ({'model.instance_norm_unbiased': True, 'model.refine_align_corners': True}
                   if src.startswith(('torch_ncsnv2', 'torch_ncsn_')) else {})
  with open(tmp_path / checkpointing.IMPORT_RECORD) as f:
    assert json.load(f)['required_overrides'] == record['required_overrides'] == want_required

  sde, _ = sde_lib.get_sde(config)
  x, t = ref['x_nhwc'], ref['t']
  to_nhwc = (lambda a: a.transpose(0, 2, 3, 1)) if src.endswith('.pth') else (lambda a: a)
  # The labels are what the reference fed its network (VE-continuous references feed
  # sigma(t) and take its log inside; this project's NCSN++ is given log sigma).
  labels = mutils.noise_labels(sde, t, config.training.continuous,
                               config.model.label_convention)
  want_labels = (np.log(ref['labels']) if meta['labels'].startswith('sigma')
                 else ref['labels'])
  np.testing.assert_allclose(labels, want_labels, rtol=1e-6)

  if sde.name == 'vesde':   # the network output is the score (scale_by_sigma inside)
    want_ema, want_raw = to_nhwc(ref['score']), to_nhwc(ref['net_params'])
  else:
    std = exact_vp_std(sde, t) if config.training.continuous else ref['std'].astype(np.float64)
    # the fixture is consistent: score = -net_ema / std_ref, to float32 rounding
    np.testing.assert_allclose(ref['score'] * ref['std'][:, None, None, None], -ref['net_ema'],
                               rtol=1e-5, atol=1e-6 * np.abs(ref['net_ema']).max())
    want_ema = -to_nhwc(ref['net_ema']).astype(np.float64) / std[:, None, None, None]
    want_raw = -to_nhwc(ref['net_params']).astype(np.float64) / std[:, None, None, None]
  score = jax.jit(lambda p: mutils.score_fn_from_config(config, sde, model, p)(x, t))
  score_ema, score_raw = score(state.ema_params), score(state.params)
  assert score_ema.dtype == np.float32
  assert rel_err(score_ema, want_ema) < 1e-5, rel_err(score_ema, want_ema)
  assert rel_err(score_raw, want_raw) < 1e-5, rel_err(score_raw, want_raw)
  # EMA and training weights differ on purpose (by ~5% of each tensor's std):
  # swapping them would miss by far more than the tolerance.
  assert rel_err(score_raw, want_ema) > 1e-3


@pytest.mark.parametrize('src', ['torch_ncsnv2_ve_discrete/checkpoint_1.pth',
                                 pytest.param('torch_ncsn_ve_discrete/checkpoint_1.pth',
                                              marks=pytest.mark.slow)])
def test_pytorch_refinenet_needs_its_norm_and_resize(src):
  """Without score_sde_pytorch's InstanceNorm++ variance and align_corners the NCSNv2 and
  NCSN v1 files score differently: both options are needed, and the importer sets them."""
  config = fixture_config(src)
  assert config_overrides_for(config) == {'instance_norm_unbiased': True,
                                          'refine_align_corners': True}
  ref = np.load(os.path.join(FIXTURES, MANIFEST[src]['reference']))
  sde, _ = sde_lib.get_sde(config)
  for unbiased, corners in ((False, True), (True, False)):
    c = fixture_config(src, model__instance_norm_unbiased=unbiased,
                       model__refine_align_corners=corners)
    model = create_model(c)
    _, ema, _ = checkpoint_import.read_reference(c, os.path.join(FIXTURES, src), model,
                                                 (16, 16, 3))
    score = mutils.score_fn_from_config(c, sde, model, ema)(ref['x_nhwc'], ref['t'])
    assert rel_err(score, ref['score'].transpose(0, 2, 3, 1)) > 1e-4


def _ncsn_v1_layer(torch_name: str) -> str:
  """Where score_sde_pytorch's NCSN (v1) parameter lives in this project's tree, derived
  from its name alone: resK.j -> ResidualBlock_{2(K-1)+j} (norm1, conv1, norm2, conv2,
  shortcut); refineK -> RefineBlock_{K-1} with RCUBlock per input then the output RCU,
  '<b>_<s>_norm|conv' -> Norm|Conv_{2(b-1)+(s-1)}; msf / crp norms.j, convs.j -> Norm_j,
  Conv_j; flax counts each module type per parent in call order."""
  parts = torch_name.split('.')
  leaf = {'weight': 'kernel', 'bias': 'bias'}[parts[-1]]
  if parts[-2] == 'embed':   # ConditionalInstanceNorm2dPlus's [L, 3C] table
    leaf, parts = 'CondInstanceNormPlus_0/Embed_0/embedding', parts[:-1]
  top, rest = parts[0], parts[1:-1]
  if top in ('begin_conv', 'end_conv', 'normalizer'):
    return {'begin_conv': 'Conv_0', 'end_conv': 'Conv_1', 'normalizer': 'Norm_0'}[top] + '/' + leaf
  if top.startswith('res'):
    block = 2 * (int(top[3:]) - 1) + int(rest[0])
    layer = {'normalize1': 'Norm_0', 'conv1': 'Conv_0', 'normalize2': 'Norm_1',
             'conv2': 'Conv_1', 'shortcut': 'Conv_2'}[rest[1]]
    return f'ResidualBlock_{block}/{layer}/{leaf}'
  k = int(top[len('refine'):])
  head = f'RefineBlock_{k - 1}'
  if rest[0] in ('adapt_convs', 'output_convs'):
    rcu = int(rest[1]) if rest[0] == 'adapt_convs' else (1 if k == 1 else 2)
    b, st, kind = rest[-1].split('_')
    layer = f"{'Norm' if kind == 'norm' else 'Conv'}_{2 * (int(b) - 1) + int(st) - 1}"
    return f'{head}/RCUBlock_{rcu}/{layer}/{leaf}'
  block = {'msf': 'MSFBlock_0', 'crp': 'CRPBlock_0'}[rest[0]]
  layer = {'norms': 'Norm', 'convs': 'Conv'}[rest[1]] + f'_{rest[2]}'
  return f'{head}/{block}/{layer}/{leaf}'


def test_torch_ncsn_v1_pairs_each_tensor_with_its_layer():
  """Cheap (no score compiled): every NCSN v1 `model` and `ema.shadow_params` tensor lands,
  in the project layout, on the layer its torch name names. score_sde_pytorch's CondCRPBlock
  and CondMSFBlock register `convs` before `norms`, its CondRCUBlock names `i_j_norm` before
  `i_j_conv`; both are called norm first. (The score itself: the slow fixture case above.)"""
  from checkpoint_import import layouts, readers
  src = 'torch_ncsn_ve_discrete/checkpoint_1.pth'
  config = fixture_config(src)
  order, _ = layouts.creation_order(create_model(config), (16, 16, 3))
  ckpt = readers.read_pth(os.path.join(FIXTURES, src))
  params, ema = layouts.torch_to_project(ckpt['model'], list(ckpt['ema']['shadow_params']),
                                         order, src, config.model.name)
  names = [k[len('module.'):] for k in ckpt['model']]
  assert len(names) == len(order) == len(ckpt['ema']['shadow_params']) == 173   # no buffer
  assert sorted(_ncsn_v1_layer(n) for n in names) == sorted('/'.join(p) for p, _ in order)
  for tree, tensors in ((params, [ckpt['model']['module.' + n] for n in names]),
                        (ema, ckpt['ema']['shadow_params'])):
    for name, tensor in zip(names, tensors):
      value = tree
      for key in _ncsn_v1_layer(name).split('/'):
        value = value[key]
      want = np.asarray(tensor)
      want = want.transpose(2, 3, 1, 0) if want.ndim == 4 else want
      np.testing.assert_array_equal(value, want, err_msg=name)


def _tree_snapshot(root):
  return sorted((os.path.relpath(os.path.join(d, n), root), os.stat(os.path.join(d, n)).st_mtime_ns)
                for d, dirs, files in os.walk(root) for n in dirs + files)


@pytest.mark.parametrize('entry', ['restore_run', 'eval_mode', 'train'])
def test_imported_refinenet_refuses_a_config_without_its_options(entry, tmp_path):
  """An imported NCSNv2 restores into either norm/resize option (same shapes) but scores
  as its reference only with the two the import recorded: every restoring mode refuses
  a config without them, in one line naming the field and the flags, writing nothing."""
  src = 'torch_ncsnv2_ve_discrete/checkpoint_1.pth'
  workdir = str(tmp_path / 'run')
  checkpoint_import.import_checkpoint(fixture_config(src), os.path.join(FIXTURES, src), workdir)
  before = _tree_snapshot(workdir)
  call = {'restore_run': lambda c: restore.restore_run(c, workdir),
          'eval_mode': lambda c: evaluate.eval_mode(c, workdir),
          'train': lambda c: train.train_and_evaluate(c, workdir)}[entry]
  for given, named in (({}, 'model.instance_norm_unbiased'),
                       ({'model__instance_norm_unbiased': True}, 'model.refine_align_corners')):
    with pytest.raises(ConfigError) as e:
      call(fixture_config(src, **given))
    message = str(e.value)
    assert '\n' not in message and message.startswith(f'{named}=False but '), message
    assert f'records {named}=True' in message and f'--config.{named}=True' in message, message
    # the fix names every differing flag, and only those
    assert '--config.model.refine_align_corners=True' in message, message
    assert (given != {}) == ('--config.model.instance_norm_unbiased' not in message), message
    assert _tree_snapshot(workdir) == before
  if entry == 'restore_run':
    run = call(fixture_config(src, model__instance_norm_unbiased=True,
                              model__refine_align_corners=True))
    assert run.step == 1 and run.data_shape == (16, 16, 3)


def test_ddpm_needs_the_references_32_groups():
  """At nf = 32 the references' 32 GroupNorm groups differ from min(C // 4, 32) = 8 / 16."""
  src = 'torch_ddpm_vp_discrete/checkpoint_1.pth'
  ref = np.load(os.path.join(FIXTURES, MANIFEST[src]['reference']))
  errors = {}
  for groups in (32, 0):
    c = fixture_config(src, model__ddpm_num_groups=groups)
    model = create_model(c)
    _, ema, _ = checkpoint_import.read_reference(c, os.path.join(FIXTURES, src), model,
                                                 (16, 16, 3))
    sde, _ = sde_lib.get_sde(c)
    score = mutils.score_fn_from_config(c, sde, model, ema)(ref['x_nhwc'], ref['t'])
    errors[groups] = rel_err(score, ref['score'].transpose(0, 2, 3, 1))
  assert errors[32] < 1e-5 and errors[0] > 1e-2, errors


def config_overrides_for(config):
  return checkpoint_import.config_overrides(config, 'pth')


# ----------------------------------------------------------------------------- bad files

def _expect_error(config, src, workdir, *words):
  with pytest.raises(CheckpointError) as info:
    checkpoint_import.import_checkpoint(config, src, str(workdir))
  message = str(info.value)
  assert '\n' not in message, message
  for word in words:
    assert word in message, message
  assert not os.path.exists(workdir), os.listdir(workdir)   # nothing written
  return message


def test_wrong_architecture_names_the_first_parameter(tmp_path):
  src = 'torch_ncsnpp_ve_continuous/checkpoint_1.pth'
  _expect_error(fixture_config(src, model__nf=8), os.path.join(FIXTURES, src), tmp_path / 'w',
                "'all_modules.0.W'", 'GaussianFourierProjection_0/W', '(8,)')
  src = 'jax_ncsnpp_ve_continuous/checkpoint_1'
  _expect_error(fixture_config(src, model__num_res_blocks=1), os.path.join(FIXTURES, src),
                tmp_path / 'w', 'AttnBlockpp_3', 'no counterpart')


def test_wrong_config_is_refused(tmp_path):
  # DDPM++ weights under the NCSN++ config: positional (nf wide) instead of Fourier (2 nf)
  # features feed the first Dense layer.
  src = 'jax_ddpmpp_vp_continuous/checkpoint_1'
  _expect_error(fixture_config('jax_ncsnpp_ve_continuous/checkpoint_1'),
                os.path.join(FIXTURES, src), tmp_path / 'w', 'Dense_0/kernel', '(4, 16)',
                '(8, 16)')
  # Same architecture, other noise levels: the torch file's sigmas buffer disagrees.
  src = 'torch_ncsnv2_ve_discrete/checkpoint_1.pth'
  _expect_error(fixture_config(src, model__num_scales=500), os.path.join(FIXTURES, src),
                tmp_path / 'w', 'sigmas', '232 levels', 'model.num_scales=500')


@pytest.mark.parametrize('src', ['torch_ddpmpp_vp_continuous/checkpoint_1.pth',
                                 'jax_ddpmpp_vp_continuous/checkpoint_1'])
def test_truncated_file_is_refused(src, tmp_path):
  cut = tmp_path / 'cut'
  with open(os.path.join(FIXTURES, src), 'rb') as f:
    data = f.read()
  cut.write_bytes(data[:len(data) * 2 // 3])
  _expect_error(fixture_config(src), str(cut), tmp_path / 'w', str(cut), 'truncated')


def test_source_format_routes_both_torch_formats_and_msgpack(tmp_path):
  # A legacy torch.save opens with pickle's PROTO byte 0x80, which is also a msgpack
  # fixmap's first byte: sniffing one byte sent legacy .pth files to the msgpack reader.
  legacy = os.path.join(REPO, 'tests', 'fixtures', 'torch_state_legacy.pth')
  assert checkpoint_import.source_format(legacy) == 'pth'
  assert checkpoint_import.source_format(
      os.path.join(REPO, 'tests', 'fixtures', 'torch_state_zip.pth')) == 'pth'
  assert checkpoint_import.source_format(
      os.path.join(FIXTURES, 'jax_ddpmpp_vp_continuous', 'checkpoint_1')) == 'msgpack'
  other = tmp_path / 'other.png'
  other.write_bytes(b'PNG')
  with pytest.raises(CheckpointError, match='neither a torch.save file'):
    checkpoint_import.source_format(str(other))


def test_missing_ema_is_refused(tmp_path):
  from flax import serialization
  src = 'jax_ddpmpp_vp_continuous/checkpoint_1'
  with open(os.path.join(FIXTURES, src), 'rb') as f:
    state = serialization.msgpack_restore(f.read())
  del state['params_ema']
  no_ema = tmp_path / 'checkpoint_1'
  no_ema.write_bytes(serialization.msgpack_serialize(state))
  _expect_error(fixture_config(src), str(no_ema), tmp_path / 'w', 'params_ema')
  # A .pth whose ema entry is gone (a zip holding just a pickle, no tensors needed).
  pth = tmp_path / 'no_ema.pth'
  with zipfile.ZipFile(pth, 'w') as z:
    z.writestr('archive/data.pkl', pickle.dumps({'model': {}, 'step': 1}, protocol=2))
  _expect_error(fixture_config('torch_ddpmpp_vp_continuous/checkpoint_1.pth'), str(pth),
                tmp_path / 'w', 'ema.shadow_params')


def test_unsafe_pickle_is_refused(tmp_path):
  pth = tmp_path / 'evil.pth'
  with zipfile.ZipFile(pth, 'w') as z:
    z.writestr('archive/data.pkl', pickle.dumps({'model': shutil.rmtree}, protocol=2))
  _expect_error(fixture_config('torch_ddpmpp_vp_continuous/checkpoint_1.pth'), str(pth),
                tmp_path / 'w', 'shutil.rmtree', 'refusing')


def test_existing_checkpoints_are_not_overwritten(tmp_path):
  src = 'jax_ddpmpp_vp_continuous/checkpoint_1'
  (tmp_path / 'checkpoints' / '3').mkdir(parents=True)
  with pytest.raises(CheckpointError, match='already holds checkpoints'):
    checkpoint_import.import_checkpoint(fixture_config(src), os.path.join(FIXTURES, src),
                                        str(tmp_path))
  assert os.listdir(tmp_path / 'checkpoints') == ['3']


# ----------------------------------------------------------------------------- end to end

@pytest.mark.slow   # subprocesses; the import and its errors are checked in-process above
def test_tool_then_sample_mode(tmp_path):
  """The command line: a bad import is one line and exit 2; a good one samples via main.py."""
  src = 'torch_ddpmpp_vp_continuous/checkpoint_1.pth'
  entry = MANIFEST[src]
  tool = ['tools/import_checkpoint.py', '--config', entry['project_config'],
          '--src', os.path.join(FIXTURES, src), '--workdir', str(tmp_path / 'run')]
  bad = run_python(tool + entry['project_overrides'] + ['--config.model.nf=8'])
  assert bad.returncode == 2, bad.stderr
  assert bad.stderr.strip().count('\n') == 0 and "'all_modules.0.weight'" in bad.stderr and 'Dense_0/kernel' in bad.stderr, bad.stderr
  assert not (tmp_path / 'run').exists()
  good = run_python(tool + entry['project_overrides'])
  assert good.returncode == 0, good.stderr[-2000:]
  assert (tmp_path / 'run' / 'checkpoints' / '1').is_dir()
  # Sample mode needs a data shape: a folder of two 16x16 images stands in for CIFAR-10.
  from PIL import Image
  folder = tmp_path / 'images'
  folder.mkdir()
  for i in range(2):
    Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(folder / f'{i}.png')
  sample = run_python(['main.py', '--config', entry['project_config'], '--mode', 'sample',
                       '--workdir', str(tmp_path / 'run')] + entry['project_overrides'] + [
                           '--config.data.dataset=ffhq', f'--config.data.data_dir={folder}',
                           '--config.sampling.batch_size=2', '--config.sampling.num_steps=3'])
  assert sample.returncode == 0, sample.stderr[-2000:]
  out = json.loads((tmp_path / 'run' / 'samples').glob('*.json').__next__().read_text())
  assert out['checkpoint_step'] == 1



# ----------------------------------------------------------------------------- every mode

PHOTO_SRC = 'jax_ncsnpp_ve_continuous/checkpoint_1'


def photo_config():
  """The fixture's own config (+ a dmcmc.* group) on the bundled 16x16 colour crops.

  The fixture's config is score_sde's CIFAR-10 one: data in [0, 1], data.centered=False,
  which is photo_crops' range too; every budget is cut to its smallest.
  """
  from configs.dmcmc.defaults import add_dmcmc_configs
  c = add_dmcmc_configs(fixture_config(PHOTO_SRC))
  assert c.data.centered is False and c.training.sde == 'vesde'
  c.data.dataset = 'photo_crops'
  c.training.snapshot_freq = 1                      # eval: ckpt n is step n (imported: 5)
  t = c.training                                    # the DMCMC classifier's one step:
  t.n_iters, t.n_jitted_steps, t.batch_size, t.snapshot_sampling = 1, 1, 2, False
  c.sampling.num_images, c.sampling.num_steps, c.sampling.mask = 2, 2, 'center'
  e = c.eval
  e.begin_ckpt, e.end_ckpt = 1, 26                  # step is among ckpts 1..26
  e.batch_size, e.num_repeats, e.bpd_num_batches = 2, 1, 1
  # Tight ODE tolerances: at 1e-2, bits/dim from main.run and from the direct solve below
  # (the same ODE in two differently rounded programs) landed 0.8-1.0% apart, both 2-3% off
  # the converged value; at 1e-5 they agree to 1e-6 (2 images, +10 s).
  e.rtol = e.atol = 1e-5
  d = c.dmcmc
  d.n_levels, d.sigma_min, d.sigma_max = 8, 0.01, 50.   # inside the VE SDE's [0.01, 50]
  d.classifier_hidden_dims = (8,)
  d.n_chains, d.num_outputs, d.n_skip, d.warmup_steps = 2, 2, 2, 1
  d.integrator, d.integrator_steps = 'edm_heun', 2
  return c


@pytest.mark.slow
def test_every_mode_runs_on_an_imported_checkpoint(tmp_path):
  """Issue 15: after the import, likelihood, eval, inpaint, colorize and dmcmc run through
  main.run (validation included) on the imported workdir, unchanged, and use its EMA
  params: bits/dim and test loss equal a direct computation with the restored EMA params
  (and not with the training params), the constraints hold exactly."""
  import controllable
  import datasets
  import likelihood
  import main
  from dmcmc import run as dmcmc_run
  config = photo_config()
  workdir = str(tmp_path / 'run')
  checkpoint_import.import_checkpoint(fixture_config(PHOTO_SRC), os.path.join(FIXTURES, PHOTO_SRC),
                                      workdir)
  model, state = restore_state(config, workdir)
  step = int(state.step)
  assert step == json.loads(str(np.load(os.path.join(FIXTURES, MANIFEST[PHOTO_SRC]['reference']))['meta']))['step']
  sde, _ = sde_lib.get_sde(config)
  mesh = parallel.make_mesh()
  test = datasets.get_dataset(config, 'test')
  x_test, _ = next(test.iterate(2))

  # likelihood: the first 2 test crops, dequantized with batch (0, 0)'s key, by the PF ODE.
  out = main.run(config, workdir, 'likelihood')
  assert out['checkpoint_step'] == step and out['num_images'] == 2 and out['levels'] == 256
  deq_key, probe_key = jax.random.split(evaluate.batch_key(config.seed, 0, 0))
  u = jax.random.uniform(deq_key, x_test.shape, np.float32)
  x = datasets.dequantize(np.asarray(x_test), u, 256)       # centered=False: scaler = id
  e = config.eval

  @jax.jit
  def direct(params):
    score_fn = mutils.score_fn_from_config(config, sde, model, params)
    r = likelihood.log_likelihood(probe_key, score_fn, sde, x, eps=e.eps, rtol=e.rtol,
                                  atol=e.atol, method=e.ode_method, probe=e.probe)
    return likelihood.bits_per_dim(r.logp, x.shape, levels=256, scale=1.)
  want = np.asarray(direct(state.ema_params), np.float64)
  assert np.all(np.isfinite(want))
  np.testing.assert_allclose(out['bpd'], want.mean(), rtol=1e-3)   # see photo_config
  with open(os.path.join(workdir, 'eval', 'likelihood.json')) as f:
    assert json.load(f)['checkpoint_step'] == step

  # eval (test loss only): the mode's mean over the 120 test crops with the EMA params.
  [res] = main.run(config, workdir, 'eval')
  assert res['ckpt'] == step and res['step'] == step
  loss_fn = evaluate.make_test_loss_fn(config, sde, model, mesh)
  loss = lambda p: evaluate.mean_test_loss(config, p, loss_fn, test, mesh)
  np.testing.assert_allclose(res['test_loss'], loss(state.ema_params), rtol=1e-5)
  assert abs(loss(state.params) / res['test_loss'] - 1) > 1e-4   # the EMA params, not raw

  # inpaint (center mask): the known pixels are the test crops' own, exactly.
  meta = main.run(config, workdir, 'inpaint')
  arrays = np.load(meta['paths']['npz'])
  known = controllable.load_mask(config, 16, 16)
  assert meta['checkpoint_step'] == step and meta['known_max_abs_error'] == 0.
  source = np.asarray(test.batch(0, 2))                    # sampling.source = 'test'
  np.testing.assert_array_equal(arrays['original'], source)
  np.testing.assert_array_equal(arrays['result'][:, known], source[:, known])
  assert np.all(np.isfinite(arrays['result']))

  # colorize: the result's channel mean is the input gray to float32 rounding.
  meta = main.run(config, workdir, 'colorize')
  arrays = np.load(meta['paths']['npz'])
  # decouple -> couple in float32 rounds to a few ulps of the result's largest |value|
  # (2 VE steps leave values well outside [0, 1]).
  tol = 8 * np.finfo(np.float32).eps * max(1., float(np.abs(arrays['result']).max()))
  assert meta['checkpoint_step'] == step and meta['gray_max_abs_error'] < tol
  np.testing.assert_array_equal(arrays['original'], source)
  np.testing.assert_allclose(arrays['result'].mean(-1), source.mean(-1), atol=tol)

  # dmcmc: the imported score model with a 1-step noise classifier (its quality is not the
  # point: the score model is read from the imported workdir, at its step).
  config.dmcmc.score_workdir = workdir
  config.dmcmc.classifier_workdir = str(tmp_path / 'clf')
  main.run(dmcmc_run.classifier_config(config), config.dmcmc.classifier_workdir, 'train')
  meta = main.run(config, str(tmp_path / 'dmcmc'), 'dmcmc')
  assert meta['score_checkpoint_step'] == step and meta['classifier_checkpoint_step'] == 1
  samples = np.load(tmp_path / 'dmcmc' / 'dmcmc' / 'samples.npz')['samples']
  assert samples.shape == (2, 16, 16, 3) and np.all(np.isfinite(samples))
