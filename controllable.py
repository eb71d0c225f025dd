"""Controllable generation with any `score_fn`: inpainting and colorization.

Both constrain some coordinates of x, in an orthonormal basis `to`/`frm`, to
known values y0 (inpainting: the identity basis and the known pixels;
colorization: the decoupled colour basis and the gray component). Because the
basis is orthonormal, the forward marginal of the constrained coordinates is the
SDE's own, p_t(y_t | y0) = N(alpha(t) y0, std(t)^2) (`sde.marginal_prob`).

- PC (Song et al. 2021, App. I.2): after every predictor and corrector update the
  constrained coordinates are replaced by a fresh draw of p_t(y_t | y0), and those
  of x_mean by its mean: `sampling.pc_driver` with wrapped steps.
- NCSN v1 (Song & Ermon 2019, App. B; ermongroup/ncsn's
  anneal_Langevin_dynamics_inpainting): at each level sigma_i the known part is
  y0 + sigma_i z, drawn once per level and held through its Langevin steps:
  `sampling.ald_ncsn_driver` with a per-level constraint.

The replacement method samples p(x_u | x_k) exactly only when the unknown part is
independent of the known one. When they are correlated it is an approximation:
the re-imposed known part is drawn without regard to the unknown part, so the
predictor pulls the unknown part only part of the way to the conditional. With the
exact score of a 2+2-dim Gaussian with cross-correlation 0.8 (VP, 200 steps;
tests/test_controllable.py, 400,000 samples), the unknown part's mean goes 63% of
the way from its marginal mean to the exact conditional mean and its variance is
1.39x the conditional one with euler_maruyama alone; a Langevin corrector (snr 0.16),
which at fixed t equilibrates to p_t(x_u | x_k), brings this to 89% and 1.08x (VP)
or 99.9% and 1.02x (VE, reverse_diffusion).

`inpaint_mode` / `colorize_mode` are `--mode inpaint` / `--mode colorize`.
"""
from __future__ import annotations

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

import datasets
import io_utils
import parallel
import restore
import sampling
import sde_lib
from errors import ConfigError, DataError, lookup
from sde_lib import bcast

Array = jax.Array
Basis = tuple  # (to, frm): orthonormal maps of the last axis, frm(to(x)) = x


def _identity(x):
  return x


IDENTITY = (_identity, _identity)

# Rows orthonormal, the first (1, 1, 1)/sqrt(3): the gray axis. score_sde uses an
# equivalent M (its first column is (1, 1, 1)/sqrt(3)); any orthonormal completion works.
COLOR_MATRIX = np.array([[1., 1., 1.], [1., -1., 0.], [1., 1., -2.]], np.float32) / np.sqrt(
    np.array([[3.], [2.], [6.]], np.float32))


def decouple(x: Array) -> Array:
  """RGB [..., 3] -> decoupled [..., 3]; component 0 is sqrt(3) x the channel mean."""
  return jnp.einsum('...c,dc->...d', x, COLOR_MATRIX)


def couple(y: Array) -> Array:
  """Inverse of `decouple` (the matrix is orthonormal, so its transpose)."""
  return jnp.einsum('...d,dc->...c', y, COLOR_MATRIX)


COLOR = (decouple, couple)


def _imposer(sde: sde_lib.SDE, known: Array, mask: Array, basis: Basis):
  """impose(key, x, x_mean, t) -> (x, x_mean) with the constrained part re-drawn at t [B]."""
  to, frm = basis

  def impose(key, x, x_mean, t):
    mean, std = sde.marginal_prob(known, t)
    draw = mean + bcast(std, known) * jax.random.normal(key, known.shape)
    return frm(jnp.where(mask, draw, to(x))), frm(jnp.where(mask, mean, to(x_mean)))

  return impose


def _put(x: Array, known: Array, mask: Array, basis: Basis) -> Array:
  to, frm = basis
  return frm(jnp.where(mask, known, to(x)))


def constrained_prior(key: Array, sde: sde_lib.SDE, known: Array, mask: Array,
                      basis: Basis = IDENTITY) -> Array:
  """A prior draw [B, ...] with its constrained part drawn from p_T(. | known)."""
  k_prior, k_known = jax.random.split(key)
  x = sde.prior_sampling(k_prior, known.shape)
  return _imposer(sde, known, mask, basis)(k_known, x, x, jnp.full((known.shape[0],), sde.T))[0]


def constrained_pc_driver(key: Array, score_fn, sde: sde_lib.SDE, x_init: Array, grid: Array,
                          *, known: Array, mask: Array, basis: Basis = IDENTITY, **options):
  """PC sampling of x with to(x) = known where mask (Song et al. 2021, App. I.2).

  `sampling.pc_driver` with wrapped steps: after the predictor (t -> t_next) the
  constrained part is drawn from p_{t_next}(. | known), the time the state now
  represents; after the corrector (at fixed t) from p_t. (score_sde uses t for both.)

  Args:
    x_init: [B, ...] at grid[0], e.g. `constrained_prior`.
    grid: times [N + 1] or per sample [N + 1, B] (`sampling.time_grid`).
    known: [B, ...] like x, in the basis: the constrained values y0 (ignored where
      mask is False).
    mask: bool, broadcastable to known: True where constrained.
    basis: (to, frm); IDENTITY for inpainting, COLOR for colorization.
    options: `sampling.pc_driver`'s.
  Returns:
    x [B, ...] with to(x) = known exactly where mask, and the NFE (a Python int).
  """
  impose = _imposer(sde, known, mask, basis)

  def constrain(step, after_move: bool):
    def wrapped(key, x, t, t_next):
      k_step, k_known = jax.random.split(key)
      x, x_mean = step(k_step, x, t, t_next)
      return impose(k_known, x, x_mean, t_next if after_move else t)
    return wrapped

  x, nfe = sampling.pc_driver(key, score_fn, sde, x_init, grid, wrap_step=constrain, **options)
  return _put(x, known, mask, basis), nfe


def constrained_pc(key: Array, score_fn, sde: sde_lib.SDE, known: Array, mask: Array, *,
                   basis: Basis = IDENTITY, eps: float = 1e-3, num_steps: int | None = None,
                   **options):
  """`constrained_pc_driver` from `constrained_prior` on `sampling.time_grid(sde, eps, N)`."""
  init_key, key = jax.random.split(key)
  return constrained_pc_driver(key, score_fn, sde, constrained_prior(init_key, sde, known, mask,
                                                                     basis),
                               sampling.time_grid(sde, eps, num_steps or sde.N), known=known,
                               mask=mask, basis=basis, **options)


def constrained_ald_ncsn_driver(key: Array, score_fn, sde: sde_lib.SDE, x_init: Array,
                                grid: Array, *, known: Array, mask: Array,
                                basis: Basis = IDENTITY, **options):
  """NCSN v1 inpainting (Song & Ermon 2019, App. B): Algorithm 1 with the known part
  replaced by known + sigma_i z (one draw per level) before and after each step.

  Steps are the paper's x + alpha_i/2 s + sqrt(alpha_i) z, as `sampling.ald_ncsn_driver`
  (ermongroup/ncsn's code steps with eps = alpha_i, twice the paper's), whose loop this is.

  Args: x_init, grid and options as `sampling.ald_ncsn_driver`; known, mask, basis as
    `constrained_pc_driver`.
  Returns:
    x [B, ...] with to(x) = known exactly where mask, and the NFE L T (+1 with denoise).
  """

  def level_constraint(k, sigma):
    noisy = known + bcast(sigma, known) * jax.random.normal(k, known.shape)
    return lambda x: _put(x, noisy, mask, basis)

  x, nfe = sampling.ald_ncsn_driver(key, score_fn, sde, x_init, grid,
                                    level_constraint=level_constraint, **options)
  return _put(x, known, mask, basis), nfe


def constrained_ald_ncsn(key: Array, score_fn, sde: sde_lib.SDE, known: Array, mask: Array,
                         *, basis: Basis = IDENTITY, init: str = 'uniform', **options):
  """`constrained_ald_ncsn_driver` from a `sampling.INITS` draw on `sampling.ncsn_grid(sde)`."""
  draw_init = lookup(sampling.INITS, init, 'init')
  init_key, key = jax.random.split(key)
  return constrained_ald_ncsn_driver(key, score_fn, sde, draw_init(init_key, known.shape, sde),
                                     sampling.ncsn_grid(sde), known=known, mask=mask,
                                     basis=basis, **options)


def gray_constraint(gray: Array) -> tuple[Array, Array]:
  """(known, mask) in the COLOR basis for a gray image [B, H, W, 1] (the channel mean)."""
  known = jnp.concatenate([jnp.float32(np.sqrt(3.)) * gray,
                           jnp.zeros(gray.shape[:-1] + (2,), gray.dtype)], -1)
  return known, np.array([True, False, False])


# ----------------------------------------------------------------------------- masks

def _half(h, w, cfg):
  m = np.zeros((h, w), bool)
  m[:, :w // 2] = True           # known: the left half, as score_sde's and ncsn's demos
  return m


def _center(h, w, cfg):
  m = np.ones((h, w), bool)
  m[h // 4:h // 4 + h // 2, w // 4:w // 4 + w // 2] = False
  return m


def _random(h, w, cfg):
  return np.random.default_rng(cfg.seed).random((h, w)) < cfg.sampling.mask_fraction


MASKS = {'half': _half, 'center': _center, 'random': _random}


def load_mask(config, h: int, w: int) -> np.ndarray:
  """The known-pixel mask [H, W] (True = known) named by `sampling.mask`."""
  spec = config.sampling.mask
  if not spec.endswith(('.npy', '.png')):
    return lookup(MASKS, spec, 'sampling.mask')(h, w, config)
  if not os.path.exists(spec):
    raise DataError(f'sampling.mask file {spec} does not exist')
  if spec.endswith('.npy'):
    m = np.load(spec)
  else:
    from PIL import Image
    m = np.asarray(Image.open(spec).convert('L')) > 127
  if m.shape != (h, w):
    raise DataError(f'sampling.mask file {spec} has shape {m.shape}; expected the data\'s '
                    f'(H, W) = ({h}, {w}), 1/True = known')
  return m.astype(bool)


# ----------------------------------------------------------------------------- modes

def _recipe(s, sde, default_progress):
  """--mode sample's recipe (`sampling.RECIPES`: validation, options, grid, NFE), with
  progress logged by default here (`default_progress(N)` steps; --mode sample is
  silent unless asked): deliberately, as these modes are one long jitted call."""
  r = sampling.RECIPES[s.method](s, sde)
  progress = s.progress_every or default_progress(r.num_steps)
  return r, {**r.options, 'progress_every': progress}


def _pc_from_config(s, sde):
  r, options = _recipe(s, sde, lambda n: max(1, n // 10))

  def sampler(key, score_fn, known, mask, basis=IDENTITY):
    init_key, key = jax.random.split(key)
    return constrained_pc_driver(key, score_fn, sde,
                                 constrained_prior(init_key, sde, known, mask, basis), r.grid(),
                                 known=known, mask=mask, basis=basis, **options)

  return sampler


def _ald_ncsn_from_config(s, sde):
  r, options = _recipe(s, sde, lambda n: 1)

  def sampler(key, score_fn, known, mask, basis=IDENTITY):
    init_key, key = jax.random.split(key)
    return constrained_ald_ncsn_driver(key, score_fn, sde, r.init(init_key, known.shape),
                                       r.grid(), known=known, mask=mask, basis=basis, **options)

  return sampler


METHODS = {'pc': _pc_from_config, 'ald_ncsn': _ald_ncsn_from_config}


def _source_images(config, mesh) -> jax.Array:
  """`sampling.num_images` images [N, H, W, C] in model space, sharded on the mesh."""
  s, d = config.sampling, config.data
  n, shape = s.num_images, (d.image_size, d.image_size, d.num_channels)
  if s.source in ('train', 'test'):
    return parallel.global_batch(datasets.get_dataset(config, s.source).batch(0, n), mesh)
  if not s.source.endswith('.npy'):
    raise ConfigError(f"sampling.source={s.source!r} is neither 'train', 'test' nor a .npy file")
  if not os.path.exists(s.source):
    raise DataError(f'sampling.source file {s.source} does not exist')
  x = np.load(s.source)
  if x.ndim != 4 or x.shape[1:] != shape or len(x) < n:
    raise DataError(f'sampling.source file {s.source} has shape {x.shape}; expected '
                    f'[>= {n}, {shape[0]}, {shape[1]}, {shape[2]}] in [0, 1]')
  local = x[parallel.local_rows(n)].astype(np.float32)
  return parallel.global_batch(datasets.get_data_scaler(config)(local), mesh)


def _check(config, task: str):
  """Every config check, before the workdir is touched."""
  s = config.sampling
  if config.data.dataset in datasets.TOYS:
    raise ConfigError(f'--mode {task} needs image data, not data.dataset={config.data.dataset!r}')
  if task == 'colorize' and config.data.num_channels != 3:
    raise ConfigError(f'--mode colorize needs data.num_channels=3, not '
                      f'{config.data.num_channels}: gray is the mean of 3 colour channels')
  build = lookup(METHODS, s.method, 'sampling.method')
  parallel.check_batch_size(s.num_images, 'sampling.num_images')
  sde, _ = sde_lib.get_sde(config)
  return sde, build(s, sde)


MEAN_COLOUR_EXAMPLES = 2048   # train examples whose mean chroma is the baseline's colour


def chroma_errors(config, result01: np.ndarray, original: np.ndarray) -> dict:
  """Per-pixel RMSE of the two chroma channels of `decouple` ([0, 1] RGB units), beside the
  "mean colour" baseline: the gray image with the mean chroma of the first
  MEAN_COLOUR_EXAMPLES train images (of the source images themselves for a .npy source,
  whose dataset may not be the config's)."""
  chroma = lambda v: np.asarray(decouple(jnp.asarray(v, jnp.float32)), np.float64)[..., 1:]
  if config.sampling.source.endswith('.npy'):
    reference, origin = original, 'source'
  else:
    ds = datasets.get_dataset(config, 'train')
    reference = np.asarray(datasets.get_data_inverse_scaler(config)(
        ds.heldout_examples(MEAN_COLOUR_EXAMPLES)))
    origin = 'train'
  mean_chroma = chroma(reference).reshape(-1, 2).mean(0)
  truth = chroma(original)
  rmse = lambda c: float(np.sqrt(np.mean((c - truth) ** 2)))
  return {'chroma_rmse': rmse(chroma(result01)), 'chroma_rmse_mean_colour': rmse(mean_chroma),
          'mean_colour_chroma': mean_chroma.tolist(), 'mean_colour_from': origin}


def _rows(columns: list[np.ndarray], pad: int = 1) -> np.ndarray:
  """Images [B, H, W, C] per column -> one [B (H + pad), K (W + pad), C] picture."""
  row = np.concatenate([np.pad(c, ((0, 0), (0, pad), (0, pad), (0, 0)), constant_values=1.)
                        for c in columns], axis=2)
  return row.reshape(-1, *row.shape[2:])


def _run(config, workdir: str, task: str) -> dict:
  _, sampler = _check(config, task)
  s, d = config.sampling, config.data
  h = d.image_size
  mask = load_mask(config, h, h) if task == 'inpaint' else None
  mesh = parallel.make_mesh()
  images = _source_images(config, mesh)
  restored = restore.restore_run(config, workdir, mesh=mesh)
  params, step = restored.ema_params, restored.step
  rep, shard = restored.replicated, restored.batch_sharding

  def run(key, params, images):
    score_fn = restored.score_fn_of(params)
    if task == 'inpaint':
      return sampler(key, score_fn, known=images, mask=mask[None, :, :, None])
    gray = images.mean(-1, keepdims=True)
    known, cmask = gray_constraint(gray)
    return sampler(key, score_fn, known=known, mask=cmask, basis=COLOR)

  key = jax.random.PRNGKey(config.seed)
  tic = time.time()
  compiled = jax.jit(run, in_shardings=(rep, rep, shard),
                     out_shardings=(shard, rep)).lower(key, params, images).compile()
  compile_seconds = time.time() - tic
  tic = time.time()
  result, nfe = compiled(key, params, images)
  result = parallel.to_host(jax.block_until_ready(result))
  seconds = time.time() - tic
  inv = datasets.get_data_inverse_scaler(config)
  original, result01 = np.asarray(inv(parallel.to_host(images))), np.asarray(inv(result))
  stats = {}
  if task == 'inpaint':
    m = np.broadcast_to(mask[None, :, :, None], original.shape)
    columns = [np.where(m, original, 0.), m.astype(np.float32), result01, original]
    stats = {'known_max_abs_error': float(np.abs(result01 - original)[m].max(initial=0.)),
             'unknown_mse': float(((result01 - original)[~m] ** 2).mean()) if (~m).any() else 0.,
             'known_fraction': float(mask.mean()), 'mask': s.mask}
    arrays = {'input': np.where(m, original, 0.), 'mask': mask}
  else:
    gray = original.mean(-1, keepdims=True)
    columns = [np.repeat(gray, 3, -1), result01, original]
    stats = {'gray_max_abs_error': float(np.abs(result01.mean(-1, keepdims=True) - gray).max()),
             'color_mse': float(((result01 - original) ** 2).mean()),
             **chroma_errors(config, result01, original)}
    arrays = {'input': gray}
  kind = f'{s.predictor}_{s.corrector}' if s.method == 'pc' else s.method
  name = f'{task}_{s.mask}_{kind}_ckpt{step}' if task == 'inpaint' else f'{task}_{kind}_ckpt{step}'
  if task == 'inpaint' and s.mask.endswith(('.npy', '.png')):
    name = f'{task}_file_{kind}_ckpt{step}'
  prefix = os.path.join(workdir, 'samples', name)
  meta = {'task': task, 'checkpoint_step': step, 'nfe': int(nfe), 'seconds': seconds,
          'compile_seconds': compile_seconds, 'num_images': len(result), 'source': s.source,
          'columns': ['input', 'mask', 'result', 'original'] if task == 'inpaint'
                     else ['gray', 'result', 'original'],
          **stats, 'sampler': s.to_dict()}
  paths = io_utils.write_result(prefix, {'result': result01, 'original': original, **arrays},
                                images=_rows(columns)[None], upscale=max(1, 64 // h),
                                meta=meta, config=config)
  logging.info('%s: %d images (%d NFE, %.1fs + %.1fs compile) -> %s', task, len(result),
               int(nfe), seconds, compile_seconds, paths['png'])
  return {**meta, 'paths': paths}


def inpaint_mode(config, workdir: str) -> dict:
  """`--mode inpaint`: fills the unknown pixels of `sampling.mask` in `sampling.source` images.

  Writes workdir/samples/inpaint_<mask>_<sampler>_ckpt<n>.{png,npz,json}; the PNG has one
  row per image: input (unknown pixels black) | mask (white = known) | result | original.
  """
  return _run(config, workdir, 'inpaint')


def colorize_mode(config, workdir: str) -> dict:
  """`--mode colorize`: colours the gray (channel mean) of `sampling.source` images.

  Writes workdir/samples/colorize_<sampler>_ckpt<n>.{png,npz,json}; the PNG has one row
  per image: gray | result | original.
  """
  return _run(config, workdir, 'colorize')
