"""Test setup: import from the repo root; float32 and CPU as in CI; one XLA cache per run."""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

# One persistent XLA compilation cache for the whole test run, shared by the pytest-xdist
# workers and every subprocess they start (jax reads these variables at import): many
# tests compile the same tiny networks, and the subprocess tests (two processes,
# preemption, main.py) compile the same train step in every process. A cache hit is the
# same executable, so results are unchanged; a cache read error only warns and
# recompiles (jax_raise_persistent_cache_errors is off). Removed when the run ends.
_RUN = os.environ.get('PYTEST_XDIST_TESTRUNUID') or f'pid{os.getpid()}'
_CACHE = os.path.join(tempfile.gettempdir(), f'score_jax_test_xla_cache_{_RUN}')
if 'JAX_COMPILATION_CACHE_DIR' not in os.environ:
  os.environ['JAX_COMPILATION_CACHE_DIR'] = _CACHE
  os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')


# Scheduling only (results are unaffected): the modules holding the longest tests (30-60 s
# each on CPU: training and sampling an image model, the bfloat16 gradients, the bad-input
# table, the two-process and preemption runs) run first. Collected last (alphabetically),
# they left one xdist worker busy on them while the other had finished. Whole modules
# move, in their own order, so module-scoped fixtures are still set up once.
_LONG_MODULES = ('test_train.py', 'test_precision.py', 'test_bad_inputs.py', 'test_preemption.py',
                 'test_multihost.py', 'test_dsb.py', 'test_controllable.py', 'test_dmcmc.py')


def pytest_collection_modifyitems(config, items):
  del config
  rank = {name: i for i, name in enumerate(_LONG_MODULES)}
  items.sort(key=lambda item: rank.get(os.path.basename(str(item.fspath)), len(rank)))


def pytest_configure(config):
  config.addinivalue_line('markers', 'slow: heavier tests, excluded from `make test`')


def pytest_unconfigure(config):
  if not os.environ.get('PYTEST_XDIST_WORKER'):   # the controller (or a run without xdist)
    shutil.rmtree(_CACHE, ignore_errors=True)
