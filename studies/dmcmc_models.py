"""The four trained models of the DMCMC study: VP and VE score models and their classifiers.

One noise-level classifier per score model: the ladder lives in each model's VE view
(VP: data in [-1, 1], sigma 0.01..50; VE: data in [0, 1], sigma 0.01..8), so the two
classifiers see different inputs and levels.
"""
from __future__ import annotations

import os

import ml_collections

from studies import common

SCORE = {'vp': 'configs/dmcmc/digits_score.py', 've': 'configs/dmcmc/digits_score_ve.py'}
CLASSIFIER = {'vp': 'configs/dmcmc/digits_classifier.py',
              've': 'configs/dmcmc/digits_classifier_ve.py'}
# Training steps (full, quick). Measured on the shared 2-core machine: DDPM++ (VP) ~20 steps/s,
# NCSN++ (VE, Fourier embedding, BigGAN blocks) ~6-8 steps/s, the CNN classifier ~70 steps/s.
ITERS = {'score_vp': (4000, 150), 'score_ve': (2500, 150), 'classifier': (3000, 150)}


def _shrink(config: ml_collections.ConfigDict, n_iters: int) -> ml_collections.ConfigDict:
  t = config.training
  t.n_iters = n_iters
  t.snapshot_sampling = False           # the study samples; the train loop need not
  t.snapshot_freq = n_iters
  t.snapshot_freq_for_preemption = min(t.snapshot_freq_for_preemption, n_iters)
  t.eval_freq = min(t.eval_freq, n_iters)
  t.log_freq = min(t.log_freq, n_iters)
  return config


def score_config(sde: str, quick: bool) -> ml_collections.ConfigDict:
  return _shrink(common.load_config(SCORE[sde]), ITERS['score_' + sde][int(quick)])


def classifier_config(sde: str, quick: bool) -> ml_collections.ConfigDict:
  return _shrink(common.load_config(CLASSIFIER[sde]), ITERS['classifier'][int(quick)])


def workdirs(out: str, sde: str) -> tuple[str, str]:
  """(score workdir, classifier workdir) under <out>/models."""
  return (os.path.join(out, 'models', f'{sde}_score'),
          os.path.join(out, 'models', f'{sde}_classifier'))


def train_all(out: str, quick: bool) -> dict[str, float]:
  """Trains (or reuses) the four models; returns the training seconds of each."""
  seconds = {}
  for sde in ('vp', 've'):
    score_dir, clf_dir = workdirs(out, sde)
    seconds[f'{sde}_score'] = common.train_once(score_config(sde, quick), score_dir)
    seconds[f'{sde}_classifier'] = common.train_once(classifier_config(sde, quick), clf_dir)
  return seconds


if __name__ == '__main__':   # pre-train the full-size models: python studies/dmcmc_models.py OUT
  import sys
  import time
  tic = time.time()
  print(train_all(sys.argv[1], quick=False), time.time() - tic, flush=True)
