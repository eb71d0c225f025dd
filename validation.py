"""Validate before acting: one entry per mode, run by main.py before the mode touches anything.

`validate(config, mode)` checks every config field the mode reads against `SCHEMA`
(field -> rule: type, range, allowed names) and then the mode's combination checks
(`COMBINATIONS`: divisibility, orderings, SDE/sampler pairs, device counts). Each failure
is one `ConfigError` line: the field, its value, the allowed range and the fix.

To add a field, add one `SCHEMA` row; to add a mode, add a `MODE_FIELDS` row (the
field prefixes it reads) and, if needed, a `COMBINATIONS` row. A field absent from a
config (say dmcmc.* in an image config) is skipped, so the table may name every group.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

from errors import ConfigError

INF = math.inf


@dataclasses.dataclass(frozen=True)
class Number:
  """An int or float field in [lo, hi]; `open` makes an end exclusive ('lo', 'hi' or both)."""
  kind: type = float
  lo: float = -INF
  hi: float = INF
  open: str = ''
  hint: str = ''

  def allowed(self) -> str:
    name = 'an integer' if self.kind is int else 'a number'
    if self.lo == -INF and self.hi == INF:
      return name
    if self.hi == INF:
      return f'{name} {">" if "lo" in self.open else ">="} {self.lo:g}'
    left = '(' if 'lo' in self.open else '['
    right = ')' if 'hi' in self.open else ']'
    return f'{name} in {left}{self.lo:g}, {self.hi:g}{right}'

  def ok(self, value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      return False
    if self.kind is int and not isinstance(value, int):
      return False
    if value != value:   # NaN
      return False
    above = value > self.lo if 'lo' in self.open else value >= self.lo
    below = value < self.hi if 'hi' in self.open else value <= self.hi
    return above and below

  def invalid_examples(self) -> list:
    """Values the rule must refuse (the table-driven tests feed each one in)."""
    out = [float('nan')] if self.kind is float else []
    if self.lo > -INF:
      out.append(self.lo - (1 if self.kind is int else max(abs(self.lo), 1.) * 0.5))
      if 'lo' in self.open:
        out.append(self.kind(self.lo))
    if self.hi < INF:
      out.append(self.hi + (1 if self.kind is int else max(abs(self.hi), 1.) * 0.5))
      if 'hi' in self.open:
        out.append(self.kind(self.hi))
    return out


@dataclasses.dataclass(frozen=True)
class Choice:
  """A name from a fixed tuple or from a registry (a callable returning the names, so that
  the table never imports the registries' heavy modules at import time)."""
  names: tuple | Callable[[], Any]
  hint: str = ''
  lower: bool = False   # the code looks the name up lower-cased


  def valid(self) -> list[str]:
    names = self.names() if callable(self.names) else self.names
    return sorted(names)

  def allowed(self) -> str:
    return 'one of ' + ', '.join(repr(n) for n in self.valid())

  def ok(self, value: Any) -> bool:
    return isinstance(value, str) and (value.lower() if self.lower else value) in self.valid()

  def invalid_examples(self) -> list:
    return ['no_such_name']


def Int(lo=-INF, hi=INF, open='', hint=''):   # pylint: disable=invalid-name,redefined-builtin
  return Number(int, lo, hi, open, hint)


def Float(lo=-INF, hi=INF, open='', hint=''):   # pylint: disable=invalid-name,redefined-builtin
  return Number(float, lo, hi, open, hint)


POSITIVE = Float(0., open='lo')
FREQ = Int(1, hint='a frequency counts steps; 0 would never fire')
COUNT = Int(1)
TOL = Float(0., open='lo', hint='ODE tolerances must be positive, e.g. 1e-5')
EPS_T = Float(0., 1., open='lo hi', hint='the time grid ends at eps in (0, T = 1), e.g. 1e-5')
PROB = Float(0., 1.)


def _registry(module: str, name: str) -> Callable[[], Any]:
  def names():
    import importlib
    return getattr(importlib.import_module(module), name)
  return names


SCHEMA: dict[str, Number | Choice] = {
    'seed': Int(),
    # training.*
    'training.sde': Choice(_registry('sde_lib', 'SDES'), lower=True),
    'training.batch_size': COUNT,
    'training.n_iters': COUNT,
    'training.n_jitted_steps': COUNT,
    'training.microbatches': COUNT,
    'training.network_parts': Int(0, hint='0 means automatic'),
    'training.log_freq': FREQ,
    'training.eval_freq': FREQ,
    'training.snapshot_freq': FREQ,
    'training.snapshot_freq_for_preemption': FREQ,
    'training.eps': EPS_T,
    'training.max_to_keep': COUNT,
    'training.objective': Choice(_registry('objectives', 'OBJECTIVES')),
    'training.precision': Choice(_registry('precision', 'PRECISIONS')),
    # sampling.*
    'sampling.method': Choice(_registry('sampling', 'SAMPLERS')),
    'sampling.predictor': Choice(_registry('sampling', 'PREDICTORS')),
    'sampling.corrector': Choice(_registry('sampling', 'CORRECTORS')),
    'sampling.n_steps_each': COUNT,
    'sampling.snr': Float(0., open='lo', hint="the Langevin step is 2 (snr |z| / |score|)^2"),
    'sampling.eps': EPS_T,
    'sampling.batch_size': COUNT,
    'sampling.num_steps': Int(0, hint='0 means model.num_scales'),
    'sampling.ode_method': Choice(_registry('sampling', 'SOLVERS')),
    'sampling.rtol': TOL,
    'sampling.atol': TOL,
    'sampling.rho': POSITIVE,
    'sampling.s_churn': Float(0.),
    'sampling.s_noise': Float(0.),
    'sampling.s_tmin': Float(0.),
    'sampling.s_tmax': Float(0.),
    'sampling.step_lr': POSITIVE,
    'sampling.langevin_convention': Choice(_registry('sampling', 'LANGEVIN_CONVENTIONS')),
    'sampling.progress_every': Int(0, hint='0 means silent'),
    'sampling.mask_fraction': PROB,
    'sampling.num_images': COUNT,
    'sampling.guidance_scale': Float(0., hint='w = 1 is the paper; 0 turns guidance off'),
    # eval.*
    'eval.begin_ckpt': Int(1),
    'eval.end_ckpt': Int(1),
    'eval.batch_size': COUNT,
    'eval.num_samples': COUNT,
    'eval.bpd_dataset': Choice(('train', 'test')),
    'eval.eps': EPS_T,
    'eval.num_repeats': COUNT,
    'eval.bpd_num_batches': Int(0, hint='0 means the whole split'),
    'eval.rtol': TOL,
    'eval.atol': TOL,
    'eval.ode_method': Choice(_registry('sampling', 'SOLVERS')),
    'eval.probe': Choice(_registry('likelihood', 'PROBES')),
    'eval.stats_split': Choice(('train', 'test')),
    'eval.num_stats_examples': Int(0, hint='0 means the whole split'),
    'eval.feature_batch_size': COUNT,
    'eval.kid_subset_size': Int(2),
    'eval.kid_num_subsets': COUNT,
    'eval.is_splits': COUNT,
    # data.*
    'data.image_size': COUNT,
    'data.num_channels': COUNT,
    'data.dim': COUNT,
    'data.num_train': Int(0, hint='0 means fresh draws'),
    # model.*
    'model.name': Choice(_registry('models', 'MODELS')),
    'model.sigma_min': POSITIVE,
    'model.sigma_max': POSITIVE,
    'model.num_scales': COUNT,
    'model.beta_min': POSITIVE,
    'model.beta_max': POSITIVE,
    'model.dropout': Float(0., 1., open='hi', hint='a dropout rate is a probability below 1'),
    'model.embedding_type': Choice(('positional', 'fourier')),
    'model.fourier_scale': POSITIVE,
    'model.ema_rate': PROB,
    'model.nf': COUNT,
    'model.num_res_blocks': COUNT,
    'model.init_scale': Float(0.),
    'model.conv_size': COUNT,
    'model.label_convention': Choice(('score_sde', 'legacy')),
    'model.ddpm_num_groups': Int(0, hint='0 means min(C // 4, 32)'),
    # classifier.* (guidance.py's time-dependent classifier)
    'classifier.model': Choice(('time_cnn', 'time_mlp')),
    'classifier.nf': COUNT,
    # optim.* (warmup <= 0 means none, grad_clip < 0 means no clipping: any number)
    'optim.optimizer': Choice(_registry('optim', 'OPTIMIZERS'), lower=True),
    'optim.lr': POSITIVE,
    'optim.beta1': Float(0., 1., open='hi'),
    'optim.eps': POSITIVE,
    'optim.weight_decay': Float(0.),
    'optim.warmup': Int(),
    'optim.grad_clip': Float(),
    # dmcmc.*
    'dmcmc.n_levels': Int(2),
    'dmcmc.sigma_min': POSITIVE,
    'dmcmc.sigma_max': POSITIVE,
    'dmcmc.classifier_model': Choice(('noise_mlp', 'noise_cnn')),
    'dmcmc.n_chains': COUNT,
    'dmcmc.num_outputs': COUNT,
    'dmcmc.n_skip': COUNT,
    'dmcmc.sigma_update': Choice(_registry('dmcmc.dlg', 'SIGMA_UPDATES')),
    'dmcmc.eta': POSITIVE,
    'dmcmc.eta_scaling': Choice(_registry('dmcmc.dlg', 'ETA_SCALINGS')),
    'dmcmc.init_integrator_steps': COUNT,
    'dmcmc.init_noise': Float(0.),
    'dmcmc.warmup_steps': Int(0),
    'dmcmc.eta0': Float(0.),
    'dmcmc.integrator': Choice(_registry('dmcmc.integrators', 'FINISHERS')),
    'dmcmc.integrator_steps': COUNT,
    'dmcmc.s_churn': Float(0.),
    'dmcmc.rho': POSITIVE,
    'dmcmc.rtol': TOL,
    'dmcmc.atol': TOL,
    'dmcmc.ode_method': Choice(_registry('sampling', 'SOLVERS')),
    'dmcmc.n_track': Int(0),
    # dsb.*
    'dsb.n_ipf': COUNT,
    'dsb.num_iter': COUNT,
    'dsb.batch_size': COUNT,
    'dsb.cache_size': COUNT,
    'dsb.cache_refresh': FREQ,
    'dsb.num_steps': COUNT,
    'dsb.gamma_schedule': Choice(_registry('dsb.schedule', 'GAMMA_SCHEDULES')),
    'dsb.gamma_min': POSITIVE,
    'dsb.gamma_max': POSITIVE,
    'dsb.gamma_total': Float(0., hint='0 keeps the grid as given'),
    'dsb.reference': Choice(_registry('dsb.schedule', 'REFERENCES')),
    'dsb.prior_var': POSITIVE,
    'dsb.data_var': POSITIVE,
    'dsb.estimate_size': Int(2),
    'dsb.network': Choice(('model', 'affine')),
    'dsb.log_freq': FREQ,
    'dsb.num_samples': COUNT,
    'dsb.sw_projections': COUNT,
    'dsb.max_to_keep': COUNT,
}

# mode -> the SCHEMA prefixes it reads ('training.sde' alone, or a whole group 'sampling.').
_COMMON = ('seed', 'data.', 'model.', 'training.sde')
MODE_FIELDS: dict[str, tuple[str, ...]] = {
    'train': _COMMON + ('training.', 'optim.', 'classifier.'),
    'sample': _COMMON + ('sampling.', 'classifier.'),
    'inpaint': _COMMON + ('sampling.',),
    'colorize': _COMMON + ('sampling.',),
    'likelihood': _COMMON + ('eval.',),
    'eval': _COMMON + ('eval.', 'training.batch_size', 'training.snapshot_freq'),
    'dmcmc': _COMMON + ('dmcmc.', 'optim.', 'training.objective'),
    'dsb': ('seed', 'data.', 'model.', 'optim.', 'dsb.'),
    'fid_stats': ('seed', 'data.', 'eval.'),
}


def _message(field: str, value: Any, rule) -> str:
  if isinstance(rule, Choice):   # the wording of errors.lookup, which the registries use
    return (f'{field}={value!r} is unknown; valid: {", ".join(rule.valid())}; set '
            f'--config.{field} to one of them')
  return (f'{field}={value!r} is out of range; set --config.{field} to {rule.allowed()}'
          + (f' ({rule.hint})' if rule.hint else ''))


def _get(config, field: str):
  node = config
  for part in field.split('.'):
    if part not in node:
      raise KeyError(field)
    node = node[part]
  return node


def check_field(config, field: str) -> None:
  """Checks one SCHEMA field (skipped if the config has no such field)."""
  try:
    value = _get(config, field)
  except KeyError:
    return
  rule = SCHEMA[field]
  if not rule.ok(value):
    raise ConfigError(_message(field, value, rule))


def fields_of(mode: str) -> list[str]:
  """The SCHEMA fields that `mode` reads."""
  prefixes = MODE_FIELDS[mode]
  return [f for f in SCHEMA
          if any(f == p or (p.endswith('.') and f.startswith(p)) for p in prefixes)]


# ----------------------------------------------------------------------------- combinations

def _order(config, low: str, high: str, strict: bool = True) -> None:
  try:
    a, b = _get(config, low), _get(config, high)
  except KeyError:
    return
  if not (a < b if strict else a <= b):
    raise ConfigError(f'{low}={a!r} must be {"<" if strict else "<="} {high}={b!r}; '
                      f'lower {low} or raise {high}')


def _sde_ranges(config) -> None:
  if config.training.sde.lower() == 'vesde':
    _order(config, 'model.sigma_min', 'model.sigma_max')
  else:
    _order(config, 'model.beta_min', 'model.beta_max', strict=False)


def _sampler(config) -> None:
  """The sampler is built now (pure, no score): impossible SDE/step pairs raise here."""
  import sampling
  import sde_lib
  s = config.sampling
  if s.method == 'edm':
    _order(config, 'sampling.s_tmin', 'sampling.s_tmax', strict=False)
  sde, _ = sde_lib.get_sde(config)
  sampling.get_sampler(config, sde, (s.batch_size, 1))


def _batch(field: str):
  def check(config):
    import parallel
    parallel.check_batch_size(_get(config, field), field)
  return check


def _train(config) -> None:
  import train
  train._check_frequencies(config)   # pylint: disable=protected-access
  t = config.training
  import parallel
  parallel.check_microbatches(t.batch_size, t.get('microbatches', 1), 'training.batch_size',
                              t.get('network_parts', 0))
  if t.snapshot_sampling and t.get('objective', 'score') == 'score':
    for field in fields_of('sample'):
      check_field(config, field)
    _sampler(config)
    _batch('sampling.batch_size')(config)


def _likelihood(config) -> None:
  import evaluate
  evaluate.check_eval_config(config)


def _eval(config) -> None:
  import evaluate
  evaluate.check_eval_config(config)
  _order(config, 'eval.begin_ckpt', 'eval.end_ckpt', strict=False)
  if config.eval.enable_sampling:
    for field in fields_of('sample'):
      check_field(config, field)
    _sampler(config)


def _controllable(task: str):
  def check(config):
    import controllable
    controllable._check(config, task)   # pylint: disable=protected-access
  return check


def _dmcmc(config) -> None:
  import sde_lib
  from dmcmc import classifier, run
  _order(config, 'dmcmc.sigma_min', 'dmcmc.sigma_max')
  sde, _ = sde_lib.get_sde(config)
  run.check_config(config, sde)
  classifier.check_ladder(sde, classifier.ladder_from_config(config))


def _fid_stats(config) -> None:
  import fid_stats
  fid_stats.check_config(config)


def _dsb(config) -> None:
  from dsb import schedule
  _order(config, 'dsb.gamma_min', 'dsb.gamma_max', strict=False)
  schedule.get_gammas(config)
  _batch('dsb.batch_size')(config)
  if config.training.get('microbatches', 1) != 1:
    # IPF draws each step's minibatch from its cache inside the loss: nothing to split.
    raise ConfigError(f'training.microbatches={config.training.microbatches} does not apply '
                      'to --mode dsb (its steps draw dsb.batch_size rows from the cache); '
                      'leave it at 1')
  import parallel
  parallel.check_microbatches(config.dsb.batch_size, 1, 'dsb.batch_size',
                              config.training.get('network_parts', 0))


COMBINATIONS: dict[str, tuple[Callable, ...]] = {
    'train': (_sde_ranges, _batch('training.batch_size'), _train),
    'sample': (_sde_ranges, _sampler, _batch('sampling.batch_size')),
    'inpaint': (_sde_ranges, _controllable('inpaint')),
    'colorize': (_sde_ranges, _controllable('colorize')),
    'likelihood': (_sde_ranges, _likelihood),
    'eval': (_sde_ranges, _eval),
    'dmcmc': (_sde_ranges, _dmcmc),
    'dsb': (_dsb,),
    'fid_stats': (_fid_stats,),
}


def validate(config, mode: str) -> None:
  """Every check of `mode`, before it touches the workdir. Raises ConfigError (one line)."""
  for field in fields_of(mode):
    check_field(config, field)
  for check in COMBINATIONS.get(mode, ()):
    check(config)
