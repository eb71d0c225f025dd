"""NCSN v1 (Song & Ermon 2019) on digits: annealed Langevin dynamics with the paper's
schedule, in both step conventions.

    python studies/ncsn.py [--quick] [--out studies/results/ncsn] [--models DIR]

Trains configs/ncsn/digits_ncsnpp_discrete.py (SMLD's loss over L = 10 geometric levels
sigma 1 -> 0.01, discrete level labels, a tiny NCSN++; the paper's RefineNet,
configs/ncsn/digits_ncsn_discrete.py, trains at 0.4 steps/s on the shared 2-core machine,
too slow for this study's budget) once, then samples with Algorithm 1's schedule
(T = 100 steps per level, epsilon = 2e-5, U[0, 1] start, no final denoising: 1000 NFE) in
both `sampling.langevin_convention`s:

- 'paper': x + alpha_i/2 s + sqrt(alpha_i) z (the paper's Algorithm 1);
- 'code':  x + alpha_i s + sqrt(2 alpha_i) z (ermongroup/ncsn's anneal_runner.py, which the
  published numbers used): the paper's step at 2 epsilon,

and scores each by the digits FD against train, mean ± SE over --seeds seeds, beside the
floor (as many real test digits against train). Writes <out>/ncsn.json and <out>/ncsn.png
(FD bars and a sample grid per convention).
"""
import copy
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
from absl import app, flags, logging  # noqa: E402

import io_utils  # noqa: E402
import sampling  # noqa: E402
from studies import common  # noqa: E402

FLAGS = flags.FLAGS

CONFIG = 'configs/ncsn/digits_ncsnpp_discrete.py'
CONVENTIONS = ('paper', 'code')


def plot(payload: dict, grids: dict, path: str) -> None:
  plt = common.pyplot()
  fig, axes = plt.subplots(1, 1 + len(grids), figsize=(4 * (1 + len(grids)), 3.8))
  cells = payload['cells']
  axes[0].bar(range(len(cells)), [c['fd']['mean'] for c in cells.values()],
              yerr=[c['fd']['se'] for c in cells.values()], capsize=5)
  axes[0].axhline(payload['fd_floor']['mean'], color='k', ls='--', lw=1,
                  label=f"floor: {payload['num_samples']} real test digits")
  axes[0].set_xticks(range(len(cells)), list(cells))
  axes[0].set_ylabel(f"digits FD (mean ± SE, {payload['seeds']} seeds)")
  axes[0].legend(fontsize=7)
  axes[0].set_title(f"NCSN v1, {payload['train_steps']} steps, eps = {payload['step_lr']:g}",
                    fontsize=9)
  for ax, (name, images) in zip(axes[1:], grids.items()):
    ax.imshow(io_utils.image_grid(images[:64]).squeeze(-1), cmap='gray', vmin=0, vmax=255)
    ax.set_title(f"'{name}' convention", fontsize=9)
    ax.set_axis_off()
  common.save_figure(fig, path, dpi=120)


def main(_):
  quick = FLAGS.quick
  n = 64 if quick else FLAGS.num_samples
  n_iters = 30 if quick else FLAGS.n_iters
  load_start, tic0 = common.load_average(), time.time()
  config = common.study_training(common.load_config(CONFIG), n_iters)
  if quick:   # the same schedule, fewer Langevin steps per level
    config.sampling.n_steps_each = 5
  run, train_s = common.trained_run(config, common.model_dir(f'ncsn_{n_iters}'))
  s = config.sampling
  payload = {'config': CONFIG, 'train_steps': n_iters, 'train_seconds': train_s,
             'num_samples': n, 'levels': run.sde.N, 'n_steps_each': s.n_steps_each,
             'seeds': FLAGS.seeds, 'step_lr': s.step_lr, 'sigma_max': config.model.sigma_max,
             'sigma_min': config.model.sigma_min, 'cells': {}}
  grids = {}
  for convention in CONVENTIONS:
    c = copy.deepcopy(config)
    c.sampling.langevin_convention = convention
    sample, nfe = sampling.get_sampler(c, run.sde, (n,) + run.data_shape)
    fn = jax.jit(lambda key, params, sample=sample: sample(key, run.score_fn_of(params)))
    tic = time.time()
    jax.block_until_ready(fn(jax.random.PRNGKey(10_000), run.ema_params))
    compile_s, fds, sample_s = time.time() - tic, [], 0.
    for seed in range(FLAGS.seeds):
      tic = time.time()
      x, _ = jax.block_until_ready(fn(jax.random.PRNGKey(seed), run.ema_params))
      sample_s += time.time() - tic
      images = common.images01(c, x)
      fds.append(common.digits_fd(c, images))
      if seed == 0:
        grids[convention] = images
    payload['cells'][convention] = {'fd': common.mean_se(fds), 'nfe': nfe,
                                    'compile_seconds': compile_s,
                                    'sample_seconds_per_seed': sample_s / FLAGS.seeds}
    logging.info("'%s': FD %s (NFE %d)", convention, common.fmt(common.mean_se(fds)), nfe)
  payload['fd_floor'] = common.real_digits_fd(config, n)
  payload.update(wall_seconds=time.time() - tic0, load_average_start=load_start,
                 load_average_end=common.load_average())
  os.makedirs(FLAGS.out, exist_ok=True)
  plot(payload, grids, os.path.join(FLAGS.out, 'ncsn.png'))
  common.write(FLAGS.out, 'ncsn', payload)
  for k, v in payload['cells'].items():
    print(k, common.fmt(v['fd']), 'nfe', v['nfe'])
  print('floor', common.fmt(payload['fd_floor']), 'wall', payload['wall_seconds'])


def define_flags() -> None:
  """The study's flags (defined when run, so that tests can import the module)."""
  common.define_flags('studies/results/ncsn')
  common.define_models_flag()
  flags.DEFINE_integer('num_samples', 100, 'Samples per FD (the floor uses as many test digits).')
  flags.DEFINE_integer('n_iters', 1000, 'Training steps.')


if __name__ == '__main__':
  define_flags()
  app.run(main)
