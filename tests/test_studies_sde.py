"""The score-SDE / NCSN / conditional studies (studies/): their NFE accounting and one
quick study end to end (slow tier).

The studies themselves are measurements, not tests; what is checked here is what their
tables rest on: that a sampler cell at budget B costs the NFE the table says (counted as
score calls made, on an exact score), and that a quick study writes every cell.
"""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import sampling
import sde_lib
from configs.defaults import get_default_configs
from tests import exact

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _studies():
  # The study modules define their flags only when run as scripts, so importing is free.
  from studies import sde_likelihood, sde_samplers  # pylint: disable=g-import-not-at-top
  return sde_samplers, sde_likelihood


def counted_calls(sample, score_fn) -> int:
  """Runs `sample(key, score_fn)` jitted and returns how many times the score was called
  on device (a host callback per call; lax.scan bodies run it once per iteration)."""
  calls = []

  def counting(x, t):
    jax.debug.callback(lambda: calls.append(1))
    return score_fn(x, t)

  jax.block_until_ready(jax.jit(lambda k: sample(k, counting))(jax.random.PRNGKey(0)))
  return len(calls)


def _cell_sampler(sde_name: str, kind: str, fields: dict, budget: int):
  sde_samplers, _ = _studies()
  sde = sde_lib.VPSDE() if sde_name == 'vp' else sde_lib.VESDE(sigma_max=5.)
  fields, nfe = sde_samplers.settings(kind, fields, budget)
  config = get_default_configs()
  config.training.sde = {'vp': 'vpsde', 've': 'vesde'}[sde_name]
  for k, v in fields.items():
    config.sampling[k] = v
  sample, recipe_nfe = sampling.get_sampler(config, sde, (3, 2))
  return sde, sample, recipe_nfe, nfe


@pytest.mark.parametrize('budget', [42, 50, 51, 100, 101, 200])
@pytest.mark.parametrize('sde_name', ['vp', 've'])
def test_every_fixed_grid_cell_records_its_recipe_nfe(sde_name, budget):
  """P, C, PC and EDM Heun at budget B: the NFE the study records is the one the sampler
  recipe reports (B; B; 2 (B // 2); 2 ((B + 1) // 2) - 1), never above B. Catches a PC cell
  given B steps (2B evaluations) or a Heun cell B steps (2B - 1). Builds, never runs."""
  sde_samplers, _ = _studies()
  for label, (kind, fields) in sde_samplers.SAMPLERS.items():
    if kind == 'ode':
      continue
    _, _, recipe_nfe, nfe = _cell_sampler(sde_name, kind, fields, budget)
    expected = {'p': budget, 'c': budget, 'pc': 2 * (budget // 2),
                'edm': 2 * ((budget + 1) // 2) - 1}[kind]
    assert recipe_nfe == nfe == expected <= budget, label


@pytest.mark.slow
@pytest.mark.parametrize('sde_name,budget', [('vp', 42), ('ve', 51)])
def test_every_fixed_grid_cell_makes_as_many_score_calls(sde_name, budget):
  """The recorded NFE is the number of score calls the jitted sampler makes (an exact
  Gaussian score with a host callback per call)."""
  sde_samplers, _ = _studies()
  for label, (kind, fields) in sde_samplers.SAMPLERS.items():
    if kind == 'ode':
      continue
    sde, sample, _, nfe = _cell_sampler(sde_name, kind, fields, budget)
    assert counted_calls(sample, exact.gaussian(2, std=0.5).score_fn(sde)) == nfe, label


def test_likelihood_reuses_the_sampler_studys_unweighted_models():
  """sde_likelihood's unweighted VP / VE tags are sde_samplers' model tags (one training),
  and the weighted and importance-sampled ones differ (a separate model each)."""
  sde_samplers, sde_likelihood = _studies()
  assert set(sde_samplers.MODELS) <= set(sde_likelihood.MODELS)
  for name in sde_samplers.MODELS:
    assert sde_likelihood.MODELS[name] == sde_samplers.MODELS[name]
    assert sde_likelihood.tag(name, False, 3000) == sde_samplers.model_tag(name, 3000)
  tags = {sde_likelihood.tag(n, w, 3000, i) for n, w, i in sde_likelihood.ORDER}
  assert len(tags) == len(sde_likelihood.ORDER) == 8


@pytest.mark.slow
def test_quick_sampler_study_writes_every_cell(tmp_path):
  """studies/sde_samplers.py --quick end to end: every (model, sampler) cell has a finite
  FD mean and SE over 3 seeds, the fixed-grid cells' NFE equals the budget formula, and the
  ODE's recorded NFE is a positive integer it actually used (same for every seed only if
  the solver agreed)."""
  out = tmp_path / 'sde_samplers'
  subprocess.run([sys.executable, os.path.join(ROOT, 'studies', 'sde_samplers.py'), '--quick',
                  f'--out={out}'], check=True, cwd=ROOT, timeout=1800,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  payload = json.loads((out / 'sde_samplers.json').read_text())
  assert (out / 'sde_samplers.png').stat().st_size > 0
  sde_samplers, _ = _studies()
  assert set(payload['models']) == {'ve', 'vp'}
  for model in payload['models'].values():
    assert set(model['cells']) == set(sde_samplers.SAMPLERS)
    for label, cells in model['cells'].items():
      assert [c['budget'] for c in cells] == payload['budgets']
      for c in cells:
        assert c['fd']['n'] == 3 and np.all(np.isfinite(c['fd']['values']))
        assert np.isfinite(c['fd']['se'])
        kind, fields = sde_samplers.SAMPLERS[label]
        if kind == 'ode':
          assert all(isinstance(v, int) and v > 0 for v in c['nfe_per_seed'])
        else:
          assert c['nfe'] == c['nfe_formula'] == sde_samplers.settings(kind, fields,
                                                                       c['budget'])[1]
  assert np.isfinite(payload['fd_floor']['mean'])


def test_run_all_names_every_study_script_and_refuses_an_unknown_one():
  """studies/run_all.py runs each study's script (they all exist); an unknown --only name is
  one line naming the choices, exit 2, before anything runs."""
  from studies import run_all  # pylint: disable=g-import-not-at-top
  for name, script, _ in run_all.STUDIES:
    assert os.path.exists(os.path.join(ROOT, script)), (name, script)
  proc = subprocess.run([sys.executable, 'studies/run_all.py', '--only', 'ncsn,nope'],
                        cwd=ROOT, capture_output=True, text=True, timeout=60)
  assert proc.returncode == 2
  assert proc.stderr.strip().count('\n') == 0 and "'nope'" in proc.stderr, proc.stderr
