"""Test setup: import from the repo root; float32 and CPU as in CI; one XLA cache per run."""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
import xla_cpu  # noqa: E402,F401  (the project's XLA:CPU flags, as in every entry point)

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


def pytest_configure(config):
  config.addinivalue_line('markers', 'slow: heavier tests, excluded from `make test`')


def pytest_unconfigure(config):
  if not os.environ.get('PYTEST_XDIST_WORKER'):   # the controller (or a run without xdist)
    shutil.rmtree(_CACHE, ignore_errors=True)
