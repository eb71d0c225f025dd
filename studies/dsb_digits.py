"""De Bortoli et al. 2021 on digits: FD per IPF iteration, and digits <-> letters transfer.

    python studies/dsb_digits.py [--quick] [--out studies/results/dsb_digits]

1. Gaussian -> digits (configs/dsb/digits.py, its full n_ipf = 10 iterations, num_iter
   sized to the 2-core budget): after each IPF iteration the backward network's samples
   from fresh prior draws, digits FD mean +- SE over --seeds sampling seeds. Two FDs:
   `fd_mean` of the last step's mean (what DSB's sampler shows; the primary figure) and
   `fd_draws` of the true draws (last step's noise, sd sqrt(2 gamma_1) ~ 0.045, included).
2. digits <-> letters (configs/dsb/digits_letters.py): the 297 held-out letters pushed
   through the backward network (letters -> digits); the fraction the digits classifier
   (models/digits_classifier.py, the digits-FD network) assigns to a digit class with
   max softmax >= CONFIDENCE, beside the same fraction for the real test digits and for the
   untransported letters; a grid of (letter, transported) pairs.
Both runs are `--mode dsb` runs (dsb/run.py) in <out>/models/<tag>, reused on a rerun, with
every half-iteration's checkpoint kept so each iteration can be resampled.
"""
from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, logging  # noqa: E402

import checkpointing  # noqa: E402
import datasets  # noqa: E402
import parallel  # noqa: E402
from dsb import data as dsb_data  # noqa: E402
from dsb import ipf as ipf_lib  # noqa: E402
from dsb import run as dsb_run  # noqa: E402
from models import digits_classifier  # noqa: E402
from studies import common  # noqa: E402

FLAGS = common.FLAGS
common.define_flags('studies/results/dsb_digits')
common.flags.DEFINE_list('parts', ['gaussian', 'letters'], 'Which parts to run.')
common.flags.DEFINE_integer('letters_ipf', 0, 'IPF iterations of the transfer (0: SIZES).')

CONFIDENCE = 0.9
NUM_SAMPLES = (512, 128)          # FD samples per seed and iteration (full, quick)
# Sized to the budget: a small-NCSN++ step of batch 64 is ~0.05 s on 2 idle cores (3-5 steps/s
# measured on the shared, loaded machine), so 10 IPF iterations x 2 halves x 200 steps are
# ~4 min of idle training (the config's 2000 steps per half would be ~35 min, more than this
# study's share of the 2-hour budget).
SIZES = {  # n_ipf, num_iter, cache_size, cache_refresh
    'digits': ((10, 200, 256, 100), (2, 20, 64, 10)),
    'letters': ((4, 200, 256, 100), (1, 20, 64, 10)),
}


def make_config(kind: str, quick: bool):
  path = {'digits': 'configs/dsb/digits.py', 'letters': 'configs/dsb/digits_letters.py'}[kind]
  config = common.load_config(path)
  d = config.dsb
  d.n_ipf, d.num_iter, d.cache_size, d.cache_refresh = SIZES[kind][int(quick)]
  if kind == 'letters' and FLAGS.letters_ipf:
    d.n_ipf = FLAGS.letters_ipf
  d.log_freq = d.cache_refresh
  d.max_to_keep = 2 * d.n_ipf + 1      # keep every half: each iteration is resampled below
  d.num_samples = 64 if quick else 256
  return config


def trained_ipf(config, workdir: str):
  """Runs (or resumes, or reuses) the DSB run; returns (ipf, prior endpoint, m, v, seconds)."""
  tic = time.time()
  dsb_run.dsb_mode(config, workdir)
  seconds = time.time() - tic
  data, prior = dsb_data.get_endpoints(config)
  m, v = dsb_run.prior_moments(config, data, prior)
  ipf = ipf_lib.IPF(config, data.data_shape, m, v)
  return ipf, data, prior, m, v, seconds


def restore_iteration(ipf, workdir: str, n: int) -> dict:
  ckpt = checkpointing.Checkpointer(os.path.join(workdir, 'dsb'), create=False)
  try:
    template = ipf.init_nets(jax.random.PRNGKey(0))
    return ckpt.restore(checkpointing.abstract_like(
        template, parallel.replicated(parallel.make_mesh())), step=2 * n)
  finally:
    ckpt.close()


def to_images(config, x) -> np.ndarray:
  return np.clip(np.asarray(datasets.get_data_inverse_scaler(config)(np.asarray(x))), 0., 1.)


def gaussian_to_digits(quick: bool) -> dict:
  config = make_config('digits', quick)
  workdir = os.path.join(FLAGS.out, 'models', 'gaussian_digits')
  ipf, data, _, m, v, seconds = trained_ipf(config, workdir)
  num = NUM_SAMPLES[int(quick)]
  shape = tuple(data.data_shape)
  rows = []
  prior_fd = []
  for s in range(FLAGS.seeds):
    z = jax.random.normal(jax.random.PRNGKey(100 + s), (num,) + shape)
    prior_fd.append(common.digits_fd(config, to_images(config, m + np.sqrt(v) * z)))
  for n in range(1, config.dsb.n_ipf + 1):
    nets = restore_iteration(ipf, workdir, n)
    fd_mean, fd_draws = [], []
    for s in range(FLAGS.seeds):
      z = jax.random.normal(jax.random.PRNGKey(100 + s), (num,) + shape)
      chain = ipf.sample(nets, jnp.asarray(m + np.sqrt(v) * z, jnp.float32),
                         jax.random.PRNGKey(200 + s))
      fd_mean.append(common.digits_fd(config, to_images(config, chain.end_mean)))
      fd_draws.append(common.digits_fd(config, to_images(config, chain.end)))
      if s == 0 and n == config.dsb.n_ipf:
        final = to_images(config, chain.end_mean[:64])
    rows.append({'iteration': n, 'fd_mean': common.mean_se(fd_mean),
                 'fd_draws': common.mean_se(fd_draws)})
    logging.info('Gaussian -> digits, IPF iteration %d: FD %s (draws %s)', n,
                 common.fmt(rows[-1]['fd_mean']), common.fmt(rows[-1]['fd_draws']))
  return {'iterations': rows, 'prior_fd': common.mean_se(prior_fd), 'train_seconds': seconds,
          'num_samples': num, 'final_images': final,
          'dsb': {k: config.dsb[k] for k in ('n_ipf', 'num_iter', 'cache_size', 'cache_refresh',
                                             'batch_size', 'num_steps', 'gamma_min',
                                             'gamma_max')}}


def confident(params, images: np.ndarray) -> np.ndarray:
  """Per image: max softmax of the digits classifier >= CONFIDENCE (bool [N])."""
  _, logits = digits_classifier.DigitsClassifier().apply({'params': params}, images)
  return np.asarray(jax.nn.softmax(logits, -1).max(-1) >= CONFIDENCE)


def letters_to_digits(quick: bool) -> dict:
  config = make_config('letters', quick)
  workdir = os.path.join(FLAGS.out, 'models', 'digits_letters')
  ipf, _, prior, _, _, seconds = trained_ipf(config, workdir)
  params, _ = digits_classifier.load_or_train()
  letters_test = dsb_data.letters_images('test', config.data.image_size)   # [297, 8, 8, 1]
  digits_test = datasets.digits('test', config.data.image_size)[0]
  x_letters = jnp.asarray(prior.heldout(len(letters_test)))                # model space
  rows = []
  for n in range(1, config.dsb.n_ipf + 1):
    nets = restore_iteration(ipf, workdir, n)
    frac_mean, frac_draws, fds = [], [], []
    for s in range(FLAGS.seeds):
      chain = ipf.sample(nets, x_letters, jax.random.PRNGKey(300 + s))
      images = to_images(config, chain.end_mean)
      frac_mean.append(float(confident(params, images).mean()))
      frac_draws.append(float(confident(params, to_images(config, chain.end)).mean()))
      fds.append(common.digits_fd(config, images))
      if s == 0:
        pairs = images[:16]
    rows.append({'iteration': n, 'confident_fraction': common.mean_se(frac_mean),
                 'confident_fraction_draws': common.mean_se(frac_draws),
                 'fd_mean': common.mean_se(fds)})
    logging.info('letters -> digits, IPF iteration %d: confident %s, FD %s', n,
                 common.fmt(rows[-1]['confident_fraction']), common.fmt(rows[-1]['fd_mean']))
  return {'iterations': rows, 'threshold': CONFIDENCE, 'train_seconds': seconds,
          'num_transported': len(letters_test),
          'confident_fraction_real_test_digits': float(confident(params, digits_test).mean()),
          'confident_fraction_untransported_letters':
              float(confident(params, letters_test).mean()),
          'fd_untransported_letters': common.digits_fd(config, letters_test),
          'fd_real_test_digits': common.digits_fd(config, digits_test),
          'pairs': (letters_test[:16], pairs),
          'dsb': {k: config.dsb[k] for k in ('n_ipf', 'num_iter', 'cache_size', 'cache_refresh',
                                             'batch_size', 'num_steps')}}


def plot(path: str, g: dict, t: dict, yardstick: float) -> None:
  plt = common.pyplot()
  fig = plt.figure(figsize=(13, 6.5))
  if g:
    _plot_gaussian(fig, g, yardstick)
  if t:
    _plot_letters(fig, t)
  common.save_figure(fig, path, dpi=100)


def _plot_gaussian(fig, g: dict, yardstick: float) -> None:
  ax = fig.add_subplot(2, 3, 1)
  its = [r['iteration'] for r in g['iterations']]
  for key, label in (('fd_mean', 'last step mean'), ('fd_draws', 'draws (with last noise)')):
    ax.errorbar(its, [r[key]['mean'] for r in g['iterations']],
                yerr=[r[key]['se'] for r in g['iterations']], marker='o', ms=3, capsize=2,
                label=label)
  ax.axhline(yardstick, color='k', ls=':', lw=1, label='real test digits')
  ax.set_yscale('log')
  ax.set_xlabel('IPF iteration')
  ax.set_ylabel('digits FD')
  ax.set_title('Gaussian -> digits', fontsize=9)
  ax.legend(fontsize=7)
  ax = fig.add_subplot(2, 3, 2)
  ax.imshow(_grid(g['final_images'], 8), cmap='gray', vmin=0, vmax=1)
  ax.set_title(f"samples after iteration {its[-1]} (means)", fontsize=9)
  ax.axis('off')


def _plot_letters(fig, t: dict) -> None:
  ax = fig.add_subplot(2, 3, 3)
  its = [r['iteration'] for r in t['iterations']]
  ax.errorbar(its, [r['confident_fraction']['mean'] for r in t['iterations']],
              yerr=[r['confident_fraction']['se'] for r in t['iterations']], marker='o', ms=3,
              capsize=2, label='transported letters')
  ax.axhline(t['confident_fraction_real_test_digits'], color='g', ls='--', lw=1,
             label='real test digits')
  ax.axhline(t['confident_fraction_untransported_letters'], color='r', ls=':', lw=1,
             label='letters, untransported')
  ax.set_ylim(0, 1)
  ax.set_xlabel('IPF iteration')
  ax.set_ylabel(f'fraction with max softmax >= {t["threshold"]}')
  ax.set_title('letters -> digits', fontsize=9)
  ax.legend(fontsize=7)
  ax = fig.add_subplot(2, 1, 2)
  letters, moved = t['pairs']
  ax.imshow(np.concatenate([_grid(letters, 16), _grid(moved, 16)], 0), cmap='gray', vmin=0,
            vmax=1)
  ax.set_title('top: held-out letters; bottom: transported by the backward network', fontsize=9)
  ax.axis('off')


def _grid(images: np.ndarray, cols: int) -> np.ndarray:
  images = np.asarray(images)[..., 0]
  rows = -(-len(images) // cols)
  pad = np.zeros((rows * cols - len(images),) + images.shape[1:])
  tiles = np.concatenate([images, pad]).reshape(rows, cols, *images.shape[1:])
  tiles = np.pad(tiles, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=0.5)
  return tiles.transpose(0, 2, 1, 3).reshape(rows * tiles.shape[2], cols * tiles.shape[3])


def main(argv):
  del argv
  quick = FLAGS.quick
  tic, load0 = time.time(), os.getloadavg()
  g = gaussian_to_digits(quick) if 'gaussian' in FLAGS.parts else None
  t = letters_to_digits(quick) if 'letters' in FLAGS.parts else None
  config = make_config('digits', quick)
  yardstick = common.digits_fd(config, datasets.digits('test', 8)[0])
  os.makedirs(FLAGS.out, exist_ok=True)
  plot(os.path.join(FLAGS.out, 'dsb_digits.png'), g, t, yardstick)
  for part, key in ((g, 'final_images'), (t, 'pairs')):
    if part:
      part.pop(key)
  payload = {'study': 'dsb_digits', 'gaussian_to_digits': g, 'letters_to_digits': t,
             'real_test_digits_fd': yardstick, 'wall_seconds': time.time() - tic,
             'load_average_start': load0, 'load_average_end': os.getloadavg()}
  common.write(FLAGS.out, 'dsb_digits', payload, config)
  for r in (g or {'iterations': []})['iterations']:
    print('digits iteration', r['iteration'], 'FD', common.fmt(r['fd_mean']), flush=True)
  for r in (t or {'iterations': []})['iterations']:
    print('letters iteration', r['iteration'], 'confident',
          common.fmt(r['confident_fraction']), flush=True)


if __name__ == '__main__':
  app.run(main)
