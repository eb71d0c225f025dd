"""Class-conditional sampling with a time-dependent classifier (Song et al. 2021, Sec. 5, App. I.1).

The conditional score is  grad log p_t(x | y) = s(x, t) + grad_x log p_t(y | x)  (Eq. 14's
controllable form with a class y). `guided_score_fn` turns any `score_fn`, a classifier's
`logits_fn(x, t)` and labels into the score_fn of

    s(x, t) + w grad_x log p_t(y | x),

so every sampler (PC, PF-ODE, EDM through its VE view, NCSN v1) samples class-conditionally
unchanged; w = 1 is the paper's. For w != 1 the guided field is the score of
p_t(x) p_t(y | x)^w, which is not a diffusion of the tempered law p_0(x) p_0(y | x)^w: a
sampler that only follows the reverse dynamics lands near, not on, that law; a corrector
that equilibrates at each t (Langevin) samples p_t(x) p_t(y | x)^w itself at the last t
(tests/test_guidance.py measures both).

The classifier p_t(y | x(t)) is trained by `--mode train` with training.objective=
'time_classifier': cross-entropy of the label on x(t) from the SDE's own perturbation kernel
(`sde.marginal_prob`) at t ~ U(eps, T), for any SDE (`time_classifier_loss`). Its network
(models/time_classifier.py) sees x(t) c_in(t), c_in = 1 / sqrt(alpha^2 + std^2) (unit
variance for unit-variance data, as EDM's c_in), and the time label 999 t; that map lives
in `logits_fn` only.

`--mode sample` with `sampling.classifier_workdir` set runs `conditional_sample`.
"""
from __future__ import annotations

import copy
import os
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

import checkpointing
import datasets
import io_utils
import parallel
import restore
import sampling
import sde_lib
import train_state
from errors import CheckpointError, ConfigError
from models import create_model
from models import utils as mutils
from sde_lib import bcast

Array = jax.Array
LogitsFn = Callable[[Array, Array], Array]   # (x [B, ...], t [B]) -> logits [B, K]


# ----------------------------------------------------------------------------- the classifier

def time_label(t: Array) -> Array:
  """The time label a classifier network sees: 999 t, [B]."""
  return 999. * t


def logits_fn(sde: sde_lib.SDE, model, params, *, train: bool = False,
              rng: Array | None = None) -> LogitsFn:
  """Binds a time classifier's params: (x(t) [B, ...], t [B]) -> logits [B, K]."""
  model_fn = mutils.get_model_fn(model, params, train=train, rng=rng)

  def fn(x, t):
    c_in = jax.lax.rsqrt(sde.alpha(t) ** 2 + sde.marginal_std(t) ** 2)
    return model_fn(x * bcast(c_in, x), time_label(t))

  return fn


def time_classifier_loss(logits_fn: LogitsFn, sde: sde_lib.SDE, key: Array, x0: Array,
                         y: Array, eps: float = 1e-5) -> Array:
  """Cross-entropy of y on x(t) = mean(x0, t) + std(t) z, t ~ U(eps, T) (App. I.1).

  Its minimiser over functions is the exact posterior log p_t(y | x) up to a per-x constant.

  Args:
    x0: clean data [B, ...]; y: int labels [B].
  Returns:
    The batch-mean cross-entropy (scalar, nats).
  """
  t_key, z_key = jax.random.split(key)
  t = jax.random.uniform(t_key, (x0.shape[0],), minval=eps, maxval=sde.T)
  mean, std = sde.marginal_prob(x0, t)
  x = mean + bcast(std, x0) * jax.random.normal(z_key, x0.shape)
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits_fn(x, t), y))


def get_classifier_loss(config, sde: sde_lib.SDE):
  """loss(logits_fn, key, (x0, y)) -> scalar, with training.eps."""
  eps = config.training.eps
  return lambda fn, key, batch: time_classifier_loss(fn, sde, key, batch[0], batch[1], eps)


def loss_fn_from_config(config, sde: sde_lib.SDE, model, *,
                        train: bool = True) -> train_state.LossFn:
  """training.objective='time_classifier' for the shared train step (`objectives.py`).

  Returns:
    loss_fn(params, key, (x0 [B, ...], y [B])) -> scalar.
  """
  return train_state.network_loss(
      get_classifier_loss(config, sde),
      lambda params, **kw: logits_fn(sde, model, params, **kw), train=train,
      parts=config.training.get('network_parts', 0))


def classifier_config(config):
  """The classifier's training config as seen from a sampling config (same classifier.*)."""
  c = copy.deepcopy(config)
  c.model.name = config.classifier.model
  c.training.objective = 'time_classifier'
  return c


# ----------------------------------------------------------------------------- guidance

def guided_score_fn(score_fn: sde_lib.ScoreFn, logits_fn: LogitsFn, labels: Array,
                    w: float) -> sde_lib.ScoreFn:
  """score_fn(x, t) + w grad_x log softmax(logits_fn(x, t))[y]: the conditional score at w = 1.

  The classifier treats samples independently, so the gradient of the batch sum of
  log p_t(y_i | x_i) is each sample's own gradient. Each call evaluates the score once and
  the classifier gradient once (none when w = 0).

  Args:
    labels: int [B], the class of each sample.
    w: guidance scale.
  """
  labels = jnp.asarray(labels, jnp.int32)
  if w == 0:
    return score_fn

  def log_p(x, t):
    logp = jax.nn.log_softmax(logits_fn(x, t), axis=-1)
    # A one-hot product, not a gather: its transpose is a multiply, where a gather's is a
    # scatter that XLA constant-folds slowly when the labels are constants.
    return jnp.sum(logp * jax.nn.one_hot(labels, logp.shape[-1], dtype=logp.dtype))

  def fn(x, t):
    return score_fn(x, t) + w * jax.grad(log_p)(x, t)

  return fn


def classifier_nfe(score_nfe: int, w: float) -> int:
  """Classifier-gradient evaluations of a guided run: one per score evaluation (0 at w = 0)."""
  return int(score_nfe) if w != 0 else 0


def parse_labels(spec: str, num_classes: int, batch_size: int) -> np.ndarray:
  """The label of each sample: int32 [batch_size].

  'rows': each class in turn, batch_size / num_classes consecutive samples per class (one
  grid row each); otherwise a comma-separated list, repeated cyclically to batch_size.
  """
  spec = str(spec).strip()
  if spec == 'rows':
    if batch_size % num_classes:
      raise ConfigError(f"sampling.labels='rows' needs sampling.batch_size={batch_size} to be "
                        f'a multiple of the {num_classes} classes; use '
                        f'{num_classes * max(1, batch_size // num_classes)}')
    return np.repeat(np.arange(num_classes, dtype=np.int32), batch_size // num_classes)
  try:
    values = [int(v) for v in spec.replace(' ', '').strip('()[]').split(',') if v != '']
  except ValueError:
    values = []
  if not values:
    raise ConfigError(f"sampling.labels={spec!r} is neither 'rows' nor a list of class "
                      "indices such as '3,3,7'")
  bad = [v for v in values if not 0 <= v < num_classes]
  if bad:
    raise ConfigError(f'sampling.labels={spec!r} has label {bad[0]} outside [0, {num_classes}) '
                      f'(data.dataset has {num_classes} classes)')
  return np.resize(np.asarray(values, np.int32), batch_size)


def check_config(config) -> np.ndarray:
  """Every check of a guided `--mode sample`, before anything is read or written.

  Returns:
    The labels [sampling.batch_size].
  """
  s = config.sampling
  if s.guidance_scale < 0:
    raise ConfigError(f'sampling.guidance_scale={s.guidance_scale} must be >= 0 (w in '
                      's + w grad log p_t(y | x); 1 = the paper)')
  if config.training.get('objective', 'score') != 'score':
    raise ConfigError("guided --mode sample takes the score model's config (training.objective="
                      f"'score'), not {config.training.objective!r}")
  labels = parse_labels(s.labels, datasets.num_classes(config), s.batch_size)
  ckpt_dir = checkpointing.checkpoint_dir(s.classifier_workdir)
  if not os.path.isdir(ckpt_dir) or not any(n.isdigit() for n in os.listdir(ckpt_dir)):
    raise CheckpointError(f'sampling.classifier_workdir={s.classifier_workdir!r} has no '
                          f'checkpoint in {ckpt_dir}; train the classifier first with --mode '
                          'train on a time_classifier config (e.g. configs/classifier/)')
  create_model(classifier_config(config))   # a bad classifier.* field fails here
  return labels


# ----------------------------------------------------------------------------- --mode sample

def _row_grid(images: np.ndarray, rows: int, pad: int = 1) -> np.ndarray:
  """[rows * k, H, W, C] -> one [rows (H + pad) + pad, k (W + pad) + pad, C] picture."""
  n, h, w, c = images.shape
  k = n // rows
  tiles = np.pad(images.reshape(rows, k, h, w, c), ((0, 0), (0, 0), (pad, 0), (pad, 0), (0, 0)),
                 constant_values=1.)
  picture = tiles.transpose(0, 2, 1, 3, 4).reshape(rows * (h + pad), k * (w + pad), c)
  return np.pad(picture, ((0, pad), (0, pad), (0, 0)), constant_values=1.)


def digits_label_accuracy(images01: np.ndarray, labels: np.ndarray) -> float:
  """Share of digit images [B, H, W, 1] in [0, 1] that models/digits_classifier.py labels y."""
  from models import digits_classifier  # pylint: disable=g-import-not-at-top
  params, _ = digits_classifier.load_or_train()
  return digits_classifier.accuracy(params, np.clip(images01, 0., 1.), labels)


def conditional_sample(config, workdir: str, name: str | None = None) -> dict:
  """`--mode sample` with a classifier: samples of `sampling.labels`, one grid row per class.

  Writes workdir/samples/<name>.{png,npz,json}; the JSON has the score NFE ('nfe'), the
  classifier-gradient NFE ('classifier_nfe'), the labels, w and, for digits, the share of
  samples that the repo's digits classifier assigns to their label ('label_accuracy').
  """
  labels = check_config(config)
  s = config.sampling
  w = float(s.guidance_scale)
  ds = datasets.get_dataset(config, 'train')
  shape = (s.batch_size,) + tuple(ds.data_shape)
  parallel.check_batch_size(shape[0], 'sampling.batch_size')
  score = restore.restore_run(config, workdir, shape=ds.data_shape)
  clf = restore.restore_run(classifier_config(config), s.classifier_workdir,
                            shape=ds.data_shape, mesh=score.mesh)
  sampler, _ = sampling.get_sampler(config, score.sde, shape)
  labels_dev = parallel.from_host(labels, score.batch_sharding)

  def run(key, params, cparams, labels):
    guided = guided_score_fn(score.score_fn_of(params), logits_fn(score.sde, clf.model, cparams),
                             labels, w)
    return sampler(key, guided)

  compiled = jax.jit(run, out_shardings=(score.batch_sharding, score.replicated))
  step, cstep = score.step, clf.step
  tic = time.time()
  x, nfe = compiled(jax.random.PRNGKey(config.seed), score.ema_params, clf.ema_params, labels_dev)
  x = parallel.to_host(jax.block_until_ready(x))
  seconds = time.time() - tic
  nfe = int(nfe)
  kind = f'{s.predictor}_{s.corrector}' if s.method == 'pc' else s.method
  name = name or f'guided_w{w:g}_{kind}_ckpt{step}'
  meta = {'checkpoint_step': step, 'classifier_checkpoint_step': cstep,
          'classifier_workdir': s.classifier_workdir, 'guidance_scale': w,
          'nfe': nfe, 'classifier_nfe': classifier_nfe(nfe, w), 'seconds': seconds,
          'num_samples': len(x), 'labels': labels.tolist(), 'sampler': s.to_dict()}
  prefix = os.path.join(workdir, 'samples', name)
  arrays = {'samples': x, 'labels': labels}
  if ds.is_image:
    images = np.asarray(datasets.get_data_inverse_scaler(config)(x))
    if config.data.dataset == 'digits':
      meta['label_accuracy'] = digits_label_accuracy(images, labels)
    if str(s.labels).strip() == 'rows':   # one row per class
      images = _row_grid(images, len(np.unique(labels)))[None]
    paths = io_utils.write_result(prefix, arrays, images=images, upscale=max(1, 64 // x.shape[1]),
                                  meta=meta, config=config)
  else:
    paths = io_utils.write_result(prefix, arrays, points=x, reference=ds.batch(0, len(x)),
                                  title=f'labels {s.labels}', meta=meta, config=config)
  logging.info('Wrote %d class-conditional samples (w=%g, %d score + %d classifier NFE, '
               '%.1fs) to %s%s', len(x), w, nfe, meta['classifier_nfe'], seconds, paths['png'],
               f"; digits label accuracy {meta['label_accuracy']:.3f}"
               if 'label_accuracy' in meta else '')
  return {**meta, 'paths': paths}
