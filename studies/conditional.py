"""Class-conditional digits by classifier guidance, and colorization: Song et al. 2021, Sec. 5.

    python studies/conditional.py [--quick] [--out studies/results/conditional] [--models DIR]

Class-conditional: the VP DDPM++ digits model (configs/vp/digits_ddpmpp_continuous.py; the
same training as sde_samplers.py's, so a shared --models reuses it) and its time-dependent
classifier (configs/classifier/digits_classifier.py), each trained once. Samples
s(x, t) + w grad log p_t(y | x) (`guidance.guided_score_fn`) with Euler-Maruyama, --steps
steps, --num_samples per seed (each class equally often), for w in --scales (w = 0 is
unconditional: the accuracy of chance is 0.1). Score: the share of samples that the repo's
digits classifier (models/digits_classifier.py, the FD's feature network) assigns to the
requested class, overall and per class; also the digits FD. Mean ± SE over --seeds.

Colorization: the bundled digits have one channel, so their gray image *is* the image and
there is no colour to recover: the repo refuses it (`--mode colorize` needs
data.num_channels=3; the message is recorded). The repo's colour data are `photo_crops`
(16x16 crops of scikit-learn's two photographs; docs/sampling.md): a VP DDPM++ model
(configs/vp/photo_crops_ddpmpp_continuous.py) is trained once and colours the gray of all
120 test crops (`controllable`'s PC sampler with the gray component replaced,
Euler-Maruyama --color_steps steps). Colour error: the RGB MSE of the recoloured vs the true
crops and the chroma RMSE (`controllable.chroma_errors`), beside the mean-colour baseline;
mean ± SE over --seeds. Writes <out>/conditional.json and <out>/conditional.png.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

import controllable  # noqa: E402
import datasets  # noqa: E402
import guidance  # noqa: E402
import io_utils  # noqa: E402
import restore  # noqa: E402
import sampling  # noqa: E402
from errors import ConfigError  # noqa: E402
from models import digits_classifier  # noqa: E402
from studies import common, sde_samplers  # noqa: E402

FLAGS = flags.FLAGS

SCORE = 'configs/vp/digits_ddpmpp_continuous.py'
CLASSIFIER = 'configs/classifier/digits_classifier.py'
PHOTOS = 'configs/vp/photo_crops_ddpmpp_continuous.py'


def per_class_accuracy(images01: np.ndarray, labels: np.ndarray) -> list[float]:
  """digits_classifier.accuracy within each requested class: [10]."""
  params, _ = digits_classifier.load_or_train()
  return [digits_classifier.accuracy(params, images01[labels == k], labels[labels == k])
          for k in range(digits_classifier.NUM_CLASSES)]


def class_conditional(n_iters: int, classifier_iters: int, n: int, steps: int,
                      scales: list[float]) -> tuple[dict, dict]:
  config = common.study_training(common.load_config(SCORE), n_iters)
  config.sampling.method, config.sampling.predictor, config.sampling.corrector = \
      'pc', 'euler_maruyama', 'none'
  config.sampling.num_steps = steps
  score, train_s = common.trained_run(config, common.model_dir(sde_samplers.model_tag('vp', n_iters)))
  cconfig = common.study_training(common.load_config(CLASSIFIER), classifier_iters)
  cdir = common.model_dir(f'vp_classifier_{classifier_iters}')
  ctrain_s = common.train_once(cconfig, cdir)
  clf = restore.restore_run(guidance.classifier_config(config), cdir, mesh=score.mesh)
  labels = guidance.parse_labels('rows', 10, n)
  sample, nfe = sampling.get_sampler(config, score.sde, (n,) + score.data_shape)
  out = {'score_config': SCORE, 'classifier_config': CLASSIFIER, 'train_steps': n_iters,
         'classifier_train_steps': classifier_iters, 'train_seconds': train_s,
         'classifier_train_seconds': ctrain_s, 'num_samples': n, 'sampler':
         f'euler_maruyama, {steps} steps', 'nfe': nfe, 'cells': {}}
  grids = {}
  for w in scales:
    def run(key, params, cparams, w=w):
      guided = guidance.guided_score_fn(score.score_fn_of(params),
                                        guidance.logits_fn(score.sde, clf.model, cparams),
                                        jnp.asarray(labels), w)
      return sample(key, guided)[0]

    fn = jax.jit(run)
    acc, per_class, fds = [], [], []
    tic = time.time()
    for seed in range(FLAGS.seeds):
      images = common.images01(config, fn(jax.random.PRNGKey(seed), score.ema_params,
                                          clf.ema_params))
      acc.append(guidance.digits_label_accuracy(images, labels))
      per_class.append(per_class_accuracy(images, labels))
      fds.append(common.digits_fd(config, images))
      if seed == 0:
        grids[f'w = {w:g}'] = images
    per_class = np.asarray(per_class)
    out['cells'][f'{w:g}'] = {
        'guidance_scale': w, 'label_accuracy': common.mean_se(acc),
        'per_class_accuracy': [common.mean_se(per_class[:, k]) for k in range(10)],
        'fd': common.mean_se(fds), 'classifier_nfe': guidance.classifier_nfe(nfe, w),
        'seconds': time.time() - tic}
    logging.info('w=%g: accuracy %s, FD %s', w, common.fmt(common.mean_se(acc)),
                 common.fmt(common.mean_se(fds)))
  out['fd_floor'] = common.real_digits_fd(config, n)
  return out, grids


def digits_colorize_refusal() -> str:
  """The repo's own answer to colorizing 1-channel digits (nothing is read or written)."""
  config = common.load_config(SCORE)
  try:
    controllable.colorize_mode(config, os.path.join(FLAGS.out, 'no_such_run'))
  except ConfigError as e:
    return str(e)
  raise AssertionError('colorize accepted 1-channel digits')


def colorization(n_iters: int, steps: int) -> tuple[dict, np.ndarray]:
  config = common.study_training(common.load_config(PHOTOS), n_iters)
  config.sampling.method, config.sampling.predictor, config.sampling.corrector = \
      'pc', 'euler_maruyama', 'none'
  config.sampling.num_steps = steps
  run, train_s = common.trained_run(config, common.model_dir(f'photos_{n_iters}'))
  ds = datasets.get_dataset(config, 'test')
  images = jnp.asarray(ds.heldout_examples(ds.num_examples))   # model space, all test crops
  original = common.images01(config, images)
  sampler = controllable.METHODS['pc'](config.sampling, run.sde)
  known, mask = controllable.gray_constraint(images.mean(-1, keepdims=True))

  def run_fn(key, params):
    return sampler(key, run.score_fn_of(params), known=known, mask=mask,
                   basis=controllable.COLOR)

  fn = jax.jit(run_fn)
  mse, chroma, nfe = [], [], None
  tic = time.time()
  for seed in range(FLAGS.seeds):
    x, nfe = fn(jax.random.PRNGKey(seed), run.ema_params)
    result = common.images01(config, x)
    mse.append(float(((result - original) ** 2).mean()))
    errors = controllable.chroma_errors(config, result, original)
    chroma.append(errors['chroma_rmse'])
    if seed == 0:
      first = result
  gray = np.repeat(original.mean(-1, keepdims=True), 3, -1)
  baseline_mse = float(((gray - original) ** 2).mean())   # no colour at all
  out = {'config': PHOTOS, 'train_steps': n_iters, 'train_seconds': train_s,
         'num_test_crops': int(len(original)), 'sampler': f'euler_maruyama, {steps} steps',
         'nfe': int(nfe), 'rgb_mse': common.mean_se(mse), 'chroma_rmse': common.mean_se(chroma),
         'chroma_rmse_mean_colour': errors['chroma_rmse_mean_colour'],
         'rgb_mse_gray_only': baseline_mse, 'seconds': time.time() - tic}
  strip = np.concatenate([gray[:16], first[:16], original[:16]], axis=2)   # gray | ours | true
  return out, strip


def plot(payload: dict, grids: dict, strip: np.ndarray | None, path: str) -> None:
  plt = common.pyplot()
  ncols = 1 + len(grids) + (strip is not None)
  fig, axes = plt.subplots(1, ncols, figsize=(3.8 * ncols, 3.8))
  cells = payload['class_conditional']['cells']
  for k, c in cells.items():
    axes[0].errorbar(range(10), [v['mean'] for v in c['per_class_accuracy']],
                     yerr=[v['se'] for v in c['per_class_accuracy']], marker='o', capsize=2,
                     label=f"w = {k}: {common.fmt(c['label_accuracy'], 2)}")
  axes[0].set_xticks(range(10))
  axes[0].set_xlabel('requested class')
  axes[0].set_ylabel('digits-classifier accuracy (mean ± SE)')
  axes[0].set_ylim(-0.05, 1.05)
  axes[0].legend(fontsize=7)
  for ax, (name, images) in zip(axes[1:], grids.items()):
    ax.imshow(guidance._row_grid(images[:100], 10).squeeze(-1), cmap='gray', vmin=0, vmax=1)
    ax.set_title(f'guided samples, {name} (one row per class)', fontsize=8)
    ax.set_axis_off()
  if strip is not None:
    axes[-1].imshow(io_utils.image_grid(strip))
    axes[-1].set_title('photo_crops: gray | colorized | true', fontsize=8)
    axes[-1].set_axis_off()
  common.save_figure(fig, path, dpi=120)


def main(_):
  quick = FLAGS.quick
  load_start, tic0 = common.load_average(), time.time()
  if quick:
    cc, grids = class_conditional(30, 30, 20, 30, [0., 1.])
    color, strip = colorization(10, 30)
  else:
    cc, grids = class_conditional(FLAGS.n_iters, FLAGS.classifier_iters, FLAGS.num_samples,
                                  FLAGS.steps, [float(w) for w in FLAGS.scales.split(',')])
    color, strip = colorization(FLAGS.color_iters, FLAGS.color_steps)
  payload = {'class_conditional': cc, 'colorization_photo_crops': color,
             'colorization_digits': digits_colorize_refusal()}
  payload.update(wall_seconds=time.time() - tic0, load_average_start=load_start,
                 load_average_end=common.load_average())
  os.makedirs(FLAGS.out, exist_ok=True)
  plot(payload, {k: v for k, v in grids.items() if k != 'w = 0'} or grids, strip,
       os.path.join(FLAGS.out, 'conditional.png'))
  common.write(FLAGS.out, 'conditional', payload)
  for k, c in cc['cells'].items():
    print('w', k, 'acc', common.fmt(c['label_accuracy']), 'fd', common.fmt(c['fd']))
  print('color', common.fmt(color['rgb_mse'], 4), common.fmt(color['chroma_rmse'], 4),
        'mean colour', color['chroma_rmse_mean_colour'])
  print('wall', payload['wall_seconds'])


def define_flags() -> None:
  """The study's flags (defined when run, so that tests can import the module)."""
  common.define_flags('studies/results/conditional')
  common.define_models_flag()
  flags.DEFINE_integer('num_samples', 100, 'Class-conditional samples per seed (10 classes).')
  flags.DEFINE_integer('steps', 200, 'Euler-Maruyama steps of the guided sampler.')
  flags.DEFINE_string('scales', '0,1,2', 'Guidance scales w.')
  flags.DEFINE_integer('n_iters', 1000, 'Training steps of the digits score model.')
  flags.DEFINE_integer('classifier_iters', 600, 'Training steps of the time classifier.')
  flags.DEFINE_integer('color_iters', 200, 'Training steps of the photo_crops model.')
  flags.DEFINE_integer('color_steps', 200, 'Euler-Maruyama steps of the colorization.')


if __name__ == '__main__':
  define_flags()
  app.run(main)
