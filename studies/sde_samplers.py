"""Score SDE samplers at equal NFE on digits: the shape of Song et al. 2021, Table 1.

    python studies/sde_samplers.py [--quick] [--out studies/results/sde_samplers] [--models DIR]

Trains a VE (NCSN++, configs/ve/digits_ncsnpp_continuous.py) and a VP (DDPM++,
configs/vp/digits_ddpmpp_continuous.py) digits model once (into --models, default
<out>/models), then, for every NFE budget B in --budgets, draws --num_samples digits with

- P-only: Euler-Maruyama, reverse diffusion, ancestral sampling (B steps, 1 NFE each);
- C-only: Langevin (predictor 'none', B Langevin steps at snr 0.16);
- PC: reverse diffusion + Langevin (B / 2 steps of 1 predictor + 1 corrector evaluation);
- the PF ODE (dopri5, adaptive; rtol = atol chosen from a grid so that its NFE lands
  nearest B on a calibration batch; the NFE it actually used is recorded per seed);
- EDM Heun (Karras et al. 2022, Algorithm 1: n = (B + 1) // 2 steps, 2n - 1 NFE),

and scores each by the digits FD against the train split, mean ± SE over --seeds sampling
seeds. The FD floor is that of as many real test digits (of 297) against train. Writes
<out>/sde_samplers.json, <out>/sde_samplers.png (FD against NFE) and
<out>/sde_samplers_grids.png (samples of every sampler at the largest budget).
"""
import copy
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

import ode  # noqa: E402
import sampling  # noqa: E402
from studies import common  # noqa: E402

FLAGS = flags.FLAGS

MODELS = {'ve': 'configs/ve/digits_ncsnpp_continuous.py',
          'vp': 'configs/vp/digits_ddpmpp_continuous.py'}
# label -> (kind, sampling fields): the budget B sets num_steps (see `settings`).
SAMPLERS = {
    'P: Euler-Maruyama': ('p', dict(predictor='euler_maruyama', corrector='none')),
    'P: reverse diffusion': ('p', dict(predictor='reverse_diffusion', corrector='none')),
    'P: ancestral': ('p', dict(predictor='ancestral_sampling', corrector='none')),
    'C: Langevin': ('c', dict(predictor='none', corrector='langevin')),
    'PC: reverse diffusion + Langevin': ('pc', dict(predictor='reverse_diffusion',
                                                    corrector='langevin')),
    'PF ODE (dopri5)': ('ode', {}),
    'EDM Heun': ('edm', {}),
}
ODE_TOLS = (3e-1, 1e-1, 5e-2, 2e-2, 1e-2, 5e-3, 2e-3, 1e-3, 5e-4, 2e-4, 1e-4)
CALIBRATION_SEED = 1000   # not one of the measured seeds


def model_tag(name: str, n_iters: int, weighted: bool = False, importance: bool = False) -> str:
  """A trained model's directory name under --models, shared by the studies that train the
  same config the same way (sde_likelihood.py's unweighted VP / VE, conditional.py's VP)."""
  return f"{name}{'_lw' if weighted else ''}{'_is' if importance else ''}_{n_iters}"


def settings(kind: str, fields: dict, budget: int) -> tuple[dict, int]:
  """config.sampling fields for `budget` and the NFE they cost (known before running)."""
  if kind in ('p', 'c'):
    return dict(method='pc', num_steps=budget, n_steps_each=1, **fields), budget
  if kind == 'pc':
    n = budget // 2    # one predictor + one corrector evaluation per step
    return dict(method='pc', num_steps=n, n_steps_each=1, **fields), 2 * n
  if kind == 'edm':
    n = (budget + 1) // 2   # Heun: 2 per step, no correction on the last: 2n - 1
    return dict(method='edm', num_steps=n, s_churn=0.), 2 * n - 1
  raise ValueError(kind)


def fixed_grid_sampler(run, fields: dict, n: int):
  """jit(key, params) -> (x [n, ...], nfe) of `sampling.get_sampler` with these fields."""
  config = copy.deepcopy(run.config)
  for k, v in fields.items():
    config.sampling[k] = v
  sample, nfe = sampling.get_sampler(config, run.sde, (n,) + run.data_shape)
  return jax.jit(lambda key, params: sample(key, run.score_fn_of(params))), nfe


def ode_sampler(run, n: int):
  """jit(key, params, tol) -> (x, nfe): `ode.ode_sample` with rtol = atol = tol (traced, so
  one compilation serves every tolerance), the config's eps and final denoising."""
  s = run.config.sampling

  def fn(key, params, tol):
    return ode.ode_sample(key, run.score_fn_of(params), run.sde, (n,) + run.data_shape,
                          eps=s.eps, rtol=tol, atol=tol, method=s.ode_method,
                          denoise=s.noise_removal)

  return jax.jit(fn)


def calibrate_ode(run, fn, budgets: list[int]) -> dict:
  """rtol = atol per budget: the ODE_TOLS entry whose NFE on a calibration batch (seed
  CALIBRATION_SEED, the study's batch size) is nearest the budget in log NFE.

  Returns {'nfe_by_tol': {tol: nfe}, 'tol': {budget: tol}}."""
  nfes = {}
  for tol in ODE_TOLS:
    _, nfe = fn(jax.random.PRNGKey(CALIBRATION_SEED), run.ema_params, jnp.float32(tol))
    nfes[tol] = int(nfe)
    logging.info('ODE calibration: tol %.0e -> %d NFE', tol, nfes[tol])
    if nfes[tol] > 2 * max(budgets):
      break
  pick = {b: min(nfes, key=lambda tol: abs(np.log(nfes[tol] / b))) for b in budgets}
  return {'nfe_by_tol': {f'{k:g}': v for k, v in nfes.items()},
          'tol': {str(b): pick[b] for b in budgets}}


def measure(run, label: str, budget: int, seeds: int, n: int, grids: dict,
            ode_fn=None, tol: float | None = None) -> dict:
  """One cell: FD mean ± SE over seeds, the NFE, wall seconds (compilation apart)."""
  kind, fields = SAMPLERS[label]
  if kind == 'ode':
    fn = ode_fn
    call = lambda key: fn(key, run.ema_params, jnp.float32(tol))
    expected, record = None, {'rtol': tol, 'atol': tol, 'method': run.config.sampling.ode_method}
  else:
    fields, expected = settings(kind, fields, budget)
    fn, nfe0 = fixed_grid_sampler(run, fields, n)
    assert nfe0 == expected, (label, nfe0, expected)
    call = lambda key: fn(key, run.ema_params)
    record = fields
  tic = time.time()
  jax.block_until_ready(call(jax.random.PRNGKey(10_000)))    # compile (and warm up)
  compile_s = time.time() - tic
  fds, nfes, sample_s = [], [], 0.
  for seed in range(seeds):
    tic = time.time()
    x, nfe = jax.block_until_ready(call(jax.random.PRNGKey(seed)))
    sample_s += time.time() - tic
    images = common.images01(run.config, x)
    fds.append(common.digits_fd(run.config, images))
    nfes.append(int(nfe))
    if seed == 0:
      grids[label] = images[:64]
  logging.info('%s B=%d: FD %.3f (NFE %s)', label, budget, np.mean(fds), nfes)
  return {'budget': budget, 'nfe': nfes[0] if expected is not None else float(np.mean(nfes)),
          'nfe_per_seed': nfes, 'nfe_formula': expected, 'fd': common.mean_se(fds),
          'settings': record, 'compile_seconds': compile_s,
          'sample_seconds_per_seed': sample_s / seeds}


def plot(payload: dict, path: str) -> None:
  plt = common.pyplot()
  fig, axes = plt.subplots(1, len(payload['models']), figsize=(6 * len(payload['models']), 4.5))
  for ax, (name, model) in zip(np.atleast_1d(axes), payload['models'].items()):
    for label, cells in model['cells'].items():
      x = [c['nfe'] for c in cells]
      y = [c['fd']['mean'] for c in cells]
      e = [c['fd']['se'] for c in cells]
      ax.errorbar(x, y, yerr=e, marker='o', capsize=3, label=label)
    ax.axhline(payload['fd_floor']['mean'], color='k', ls='--', lw=1,
               label=f"floor: {payload['num_samples']} real test digits")
    ax.set_xscale('log')
    ax.set_yscale('log')
    ax.set_xlabel('NFE (score evaluations per sample)')
    ax.set_ylabel(f"digits FD ({payload['num_samples']} samples, mean ± SE)")
    ax.set_title(f"{name.upper()} ({model['config']}, {model['train_steps']} steps)", fontsize=9)
    ax.legend(fontsize=7)
  common.save_figure(fig, path, dpi=120)


def plot_grids(grids: dict, path: str, budget: int) -> None:
  plt = common.pyplot()
  import io_utils  # pylint: disable=g-import-not-at-top
  rows = list(grids.items())
  fig, axes = plt.subplots(len(rows), 1, figsize=(3 * len(SAMPLERS), 3.3 * len(rows)))
  for ax, (name, by_sampler) in zip(np.atleast_1d(axes), rows):
    tiles = [io_utils.image_grid(v[:16]) for v in by_sampler.values()]
    pad = np.full((tiles[0].shape[0], 4, tiles[0].shape[2]), 255, np.uint8)
    strip = np.concatenate([t for tile in tiles for t in (tile, pad)][:-1], axis=1)
    ax.imshow(strip.squeeze(-1), cmap='gray', vmin=0, vmax=255)
    ax.set_title(f'{name.upper()} at budget {budget}: ' + ' | '.join(by_sampler), fontsize=7)
    ax.set_axis_off()
  common.save_figure(fig, path, dpi=120)


def main(_):
  quick = FLAGS.quick
  # VP's discrete steps need N > 20 (beta_max / N < 1): PC at B // 2 steps needs B >= 42.
  budgets = [42] if quick else [int(b) for b in FLAGS.budgets.split(',')]
  n = 64 if quick else FLAGS.num_samples
  n_iters = 30 if quick else FLAGS.n_iters
  load_start, tic0 = common.load_average(), time.time()
  payload = {'budgets': budgets, 'num_samples': n, 'models': {},
             'nfe_rule': {'P': 'B steps, 1 each', 'C': 'B Langevin steps, 1 each',
                          'PC': 'B // 2 steps, 2 each', 'EDM Heun': '(B+1)//2 = n steps, 2n - 1',
                          'PF ODE': 'adaptive; the NFE used (plus 1 for the final denoising)'}}
  grids = {}
  for name, path in MODELS.items():
    config = common.study_training(common.load_config(path), n_iters)
    run, train_s = common.trained_run(config, common.model_dir(model_tag(name, n_iters)))
    ode_fn = ode_sampler(run, n)
    cal = calibrate_ode(run, ode_fn, budgets)
    cells, grids[name] = {}, {}
    for label in SAMPLERS:
      cells[label] = [measure(run, label, b, FLAGS.seeds, n, grids[name], ode_fn=ode_fn,
                              tol=cal['tol'][str(b)]) for b in budgets]
    payload['models'][name] = {'config': path, 'train_steps': n_iters, 'train_seconds': train_s,
                               'ode_calibration': cal, 'cells': cells}
  payload['fd_floor'] = common.real_digits_fd(run.config, n)
  payload.update(wall_seconds=time.time() - tic0, load_average_start=load_start,
                 load_average_end=common.load_average())
  os.makedirs(FLAGS.out, exist_ok=True)
  plot(payload, os.path.join(FLAGS.out, 'sde_samplers.png'))
  plot_grids(grids, os.path.join(FLAGS.out, 'sde_samplers_grids.png'), budgets[-1])
  common.write(FLAGS.out, 'sde_samplers', payload)
  for name, model in payload['models'].items():
    for label, cells in model['cells'].items():
      print(name, label, ' '.join(f"{c['nfe']:g}:{common.fmt(c['fd'])}" for c in cells))
  print('floor', common.fmt(payload['fd_floor']), 'wall', payload['wall_seconds'])


def define_flags() -> None:
  """The study's flags (defined when run, so that tests can import the module)."""
  common.define_flags('studies/results/sde_samplers')
  common.define_models_flag()
  flags.DEFINE_string('budgets', '50,200,1000', 'NFE budgets (comma-separated).')
  flags.DEFINE_integer('num_samples', 100, 'Samples per FD (the floor uses as many test digits).')
  flags.DEFINE_integer('n_iters', 1000, 'Training steps of each model.')


if __name__ == '__main__':
  define_flags()
  app.run(main)
