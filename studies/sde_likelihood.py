"""Test-split bits/dim of VP, sub-VP and VE digits models, with and without likelihood
weighting: the shape of Song et al. 2021, Table 2.

    python studies/sde_likelihood.py [--quick] [--out studies/results/sde_likelihood] [--models DIR]

Eight models, each trained once (into --models, default <out>/models): VP and sub-VP DDPM++
(configs/vp/digits_ddpmpp_continuous.py, configs/subvp/digits_ddpmpp_continuous.py) and VE
NCSN++ (configs/ve/digits_ncsnpp_continuous.py), each with training.likelihood_weighting
False and True (lambda(t) = g(t)^2, t ~ U(eps, 1)), and VP and sub-VP also with
likelihood weighting and training.importance_sampling (t ~ g^2/std^2; `ORDER`). Bits/dim by the probability-flow ODE (evaluate.py's
`make_bpd_fn` / `bpd_over_split`: dopri5 at rtol = atol = 1e-5, one Rademacher Hutchinson
probe per digit, uniform dequantization of the 17 grey levels) over the first --num_test
digits of the test split (default 0: all 297), --repeats passes. The standard error
is over the test digits: each digit's bits/dim averaged over the repeats, then std /
sqrt(n) (`evaluate.summarize`); it holds the spread between digits and the dequantization
and probe noise.
Writes <out>/sde_likelihood.json and <out>/sde_likelihood.png.
"""
import copy
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

import evaluate  # noqa: E402
import restore  # noqa: E402
from studies import common, sde_samplers  # noqa: E402

FLAGS = flags.FLAGS

MODELS = {'vp': 'configs/vp/digits_ddpmpp_continuous.py',
          'subvp': 'configs/subvp/digits_ddpmpp_continuous.py',
          've': 'configs/ve/digits_ncsnpp_continuous.py'}


def tag(name: str, weighted: bool, n_iters: int, importance: bool = False) -> str:
  """The model directory name; the unweighted VP / VE ones are sde_samplers.py's too."""
  return sde_samplers.model_tag(name, n_iters, weighted, importance)


# (model, likelihood weighting, importance sampling of t). Importance sampling only for VP
# and sub-VP: VE's proposal g^2/std^2 is constant, i.e. the uniform t of its weighted model.
# The unweighted VP / VE models last: sde_samplers.py trains them (shared --models), so a
# run beside it finds them trained by then.
ORDER = [('vp', True, False), ('subvp', True, False), ('ve', True, False),
         ('vp', True, True), ('subvp', True, True),
         ('subvp', False, False), ('vp', False, False), ('ve', False, False)]
SERIES = {(False, False): 'unweighted', (True, False): 'likelihood weighting, t ~ U',
          (True, True): 'likelihood weighting, t ~ g^2/std^2'}


def bits_per_dim(config, workdir: str, tol: float, repeats: int, num_batches: int,
                 batch_size: int) -> dict:
  """evaluate.py's bits/dim of the EMA params over the test split (resumable progress file)."""
  config = copy.deepcopy(config)
  e = config.eval
  e.rtol = e.atol = tol
  e.num_repeats, e.bpd_dataset, e.batch_size, e.bpd_num_batches = repeats, 'test', batch_size, \
      num_batches
  evaluate.check_eval_config(config)
  ds, quant = evaluate.bpd_data(config)
  run = restore.restore_run(config, workdir, shape=ds.data_shape)
  bpd_fn = evaluate.make_bpd_fn(config, run.sde, run.model, run.mesh, quant)
  tic = time.time()
  out = evaluate.bpd_over_split(
      config, run.ema_params, bpd_fn=bpd_fn, ds=ds, quant=quant, mesh=run.mesh,
      ckpt_step=run.step, progress_path=os.path.join(workdir, 'eval', f'study_bpd_{tol:g}.jsonl'))
  out['wall_seconds'] = time.time() - tic
  return out


def plot(payload: dict, path: str) -> None:
  plt = common.pyplot()
  fig, ax = plt.subplots(figsize=(6, 4))
  names = list(MODELS)
  for j, ((weighted, importance), label) in enumerate(SERIES.items()):
    # --only runs a subset: plot the cells there are.
    cells = [(i, payload['cells'].get(tag(n, weighted, payload['train_steps'], importance)))
             for i, n in enumerate(names)]
    cells = [(i, c) for i, c in cells if c is not None]
    ax.errorbar(np.asarray([i for i, _ in cells]) + (j - 1) * 0.15, [c['bpd'] for _, c in cells],
                yerr=[c['bpd_stderr'] for _, c in cells], fmt='o', capsize=4, label=label)
  ax.set_xticks(range(len(names)), [n.upper().replace('SUBVP', 'sub-VP') for n in names])
  ax.set_ylabel(f"test bits/dim (± SE over {payload['num_test_digits']} digits)")
  ax.set_title(f"digits, {payload['train_steps']} training steps, rtol = atol = "
               f"{payload['tol']:g}", fontsize=9)
  ax.legend(fontsize=8)
  common.save_figure(fig, path, dpi=120)


def main(_):
  quick = FLAGS.quick
  n_iters = 30 if quick else FLAGS.n_iters
  # Quick: 1e-3 and the first 32 test digits (1e-5 on an untrained net is the slow part).
  if quick:
    tol, num_batches, batch = 1e-3, 1, 32
  elif FLAGS.num_test:   # the first num_test digits of the split's (fixed) order: one batch
    tol, num_batches, batch = 1e-5, 1, FLAGS.num_test
  else:
    tol, num_batches, batch = 1e-5, 0, 297
  load_start, tic0 = common.load_average(), time.time()
  payload = {'train_steps': n_iters, 'tol': tol, 'repeats': FLAGS.repeats, 'cells': {},
             'se_over': 'test digits (per-digit bits/dim averaged over repeats; '
                        'std(ddof=1) / sqrt(n))'}
  order = ORDER
  if FLAGS.only:   # a subset of the model tags (e.g. a second process on trained models)
    order = [o for o in order if tag(o[0], o[1], n_iters, o[2]) in FLAGS.only.split(',')]
  for name, weighted, importance in order:
    path = MODELS[name]
    config = common.study_training(common.load_config(path), n_iters)
    config.training.likelihood_weighting = weighted
    config.training.importance_sampling = importance
    workdir = common.model_dir(tag(name, weighted, n_iters, importance))
    train_s = common.train_once(config, workdir)
    cell = bits_per_dim(config, workdir, tol, FLAGS.repeats, num_batches, batch)
    cell.update(sde=config.training.sde, likelihood_weighting=weighted,
                importance_sampling=importance, config=path, train_seconds=train_s)
    payload['cells'][tag(name, weighted, n_iters, importance)] = cell
    logging.info('%s lw=%s is=%s: %.4f ± %.4f bits/dim (NFE %.0f)', name, weighted, importance,
                 cell['bpd'], cell['bpd_stderr'], cell['nfe_mean'])
  payload['num_test_digits'] = next(iter(payload['cells'].values()))['num_images']
  payload.update(wall_seconds=time.time() - tic0, load_average_start=load_start,
                 load_average_end=common.load_average())
  os.makedirs(FLAGS.out, exist_ok=True)
  plot(payload, os.path.join(FLAGS.out, 'sde_likelihood.png'))
  common.write(FLAGS.out, 'sde_likelihood', payload)
  for k, c in payload['cells'].items():
    print(k, f"{c['bpd']:.4f} ± {c['bpd_stderr']:.4f}", 'nfe', c['nfe_mean'])
  print('wall', payload['wall_seconds'])


def define_flags() -> None:
  """The study's flags (defined when run, so that tests can import the module)."""
  common.define_flags('studies/results/sde_likelihood')
  common.define_models_flag()
  flags.DEFINE_integer('n_iters', 1000, 'Training steps of each model.')
  flags.DEFINE_integer('repeats', 1, 'Passes over the test split (fresh dequantization, probe).')
  flags.DEFINE_string('only', '', 'Comma-separated model tags to run (default: all eight).')
  flags.DEFINE_integer('num_test', 0, 'Test digits scored (the first n of the split); 0 = all '
                       '297 (at rtol = 1e-5 the solve is the slow part).')


if __name__ == '__main__':
  define_flags()
  app.run(main)
