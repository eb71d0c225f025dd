"""Test setup: import from the repo root; float32 and CPU as in CI."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('JAX_PLATFORMS', 'cpu')


def pytest_configure(config):
  config.addinivalue_line('markers', 'slow: heavier tests, excluded from `make test`')
