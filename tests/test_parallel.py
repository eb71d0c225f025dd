"""parallel.py: the process-local rows of a global batch."""
import jax
import numpy as np
import pytest

import parallel


@pytest.mark.parametrize('count,n,want', [
    (1, 8, [range(0, 8)]),
    (2, 8, [range(0, 4), range(4, 8)]),
    (4, 12, [range(0, 3), range(3, 6), range(6, 9), range(9, 12)]),
])
def test_local_rows_tile_the_global_batch_in_process_order(monkeypatch, count, n, want):
  """Process p of P holds rows [p n/P, (p + 1) n/P): the processes' rows, in order, are the
  global batch (the order jax.make_array_from_process_local_data assembles)."""
  monkeypatch.setattr(jax, 'process_count', lambda: count)
  x = np.arange(n)
  parts = []
  for p in range(count):
    monkeypatch.setattr(jax, 'process_index', lambda p=p: p)
    rows = parallel.local_rows(n)
    assert (rows.start, rows.stop) == (want[p].start, want[p].stop)
    parts.append(x[rows])
  np.testing.assert_array_equal(np.concatenate(parts), x)
