"""xla_cpu.py: when the project's XLA:CPU flag is added, and that it changes speed, not results."""
import json
import os
import platform

import numpy as np
import pytest

import xla_cpu
from tests.helpers import run_python


def test_added_only_when_the_user_has_not_chosen():
  env = {}
  assert xla_cpu.configure(env, '0.10.2') == xla_cpu.FLAG
  assert xla_cpu.configure(env, '0.10.2') == xla_cpu.FLAG      # idempotent
  env = {'XLA_FLAGS': '--xla_dump_to=/tmp/d'}
  assert xla_cpu.configure(env, '0.10.2') == '--xla_dump_to=/tmp/d ' + xla_cpu.FLAG
  own = '--xla_cpu_experimental_ynn_fusion_type='
  assert xla_cpu.configure({'XLA_FLAGS': own}, '0.10.2') == own       # the user's own value wins
  assert xla_cpu.configure({'SCORE_XLA_CPU_DEFAULTS': '0'}, '0.10.2') == ''
  assert xla_cpu.configure({}, '0.11.0') == ''    # an untested jaxlib: the flag may not exist


# Loss and gradients of the tiny NCSN++ at nf 32 (3x3 convolutions, FIR resampling, GroupNorm,
# attention, dense layers) on fixed inputs; prints whether XLA kept any convolution in
# a YNNPACK fusion, and writes the numbers to argv[1].
_SCRIPT = r'''
import json, re, sys
import jax, jax.numpy as jnp, numpy as np
import losses, parallel, sde_lib
from models import create_model
from tests.helpers import tiny_config
config = tiny_config('vpsde', image=True)
config.model.init_scale = 1.
config.model.nf = 32   # YNNPACK takes convolutions of >= 32 channels, smaller ones stay Eigen's
sde, _ = sde_lib.get_sde(config)
model = create_model(config)
x = jax.random.uniform(jax.random.PRNGKey(1), (8, 8, 8, 1))
params = jax.jit(lambda: model.init(jax.random.PRNGKey(0), x, jnp.ones((8,)))['params'])()
loss = losses.loss_fn_from_config(config, sde, model, train=False)
f = jax.jit(jax.value_and_grad(lambda p: loss(p, jax.random.PRNGKey(2), x)))
hlo = f.lower(params).compile().as_text()
value, grads = f(params)
leaves = [np.asarray(g) for g in jax.tree.leaves(grads)]
np.savez(sys.argv[1], value=np.asarray(value), *leaves)
# A convolution inside a computation that a YNNPACK fusion calls runs in YNNPACK; one at
# the top level (ENTRY) is XLA's own.
blocks = [b for b in hlo.split('\n\n') if b.strip()]
called_by_ynn = set(re.findall(r'%ynn_fusion[\w.]* = .*?calls=%([\w.\-]+)', hlo))
ynn = sum(b.count(' convolution(') for b in blocks
          if b.split()[0].lstrip('%') in called_by_ynn)
entry = next(b for b in blocks if b.startswith('ENTRY'))
print(json.dumps({'ynn_convolutions': ynn, 'eigen_convolutions': entry.count(' convolution(')}))
'''


def test_same_loss_and_gradients_with_and_without_the_flag(tmp_path):
  results = {}
  for name, on in (('on', '1'), ('off', '0')):
    out = tmp_path / f'{name}.npz'
    proc = run_python(['-c', _SCRIPT, str(out)],
                      env={'XLA_FLAGS': '', 'SCORE_XLA_CPU_DEFAULTS': on,
                           'JAX_ENABLE_COMPILATION_CACHE': 'false'})   # keyed without the flag
    assert proc.returncode == 0, proc.stderr[-3000:]
    results[name] = (json.loads(proc.stdout.strip().splitlines()[-1]), np.load(out))
  (info_on, on), (info_off, off) = results['on'], results['off']
  # The flag took effect: most convolutions are XLA's own (Eigen) with it, YNNPACK's
  # without. (A few, fused by YNNPACK with their neighbours, stay YNNPACK's either way.)
  print('convolutions with / without the flag:', info_on, info_off)
  assert info_on['eigen_convolutions'] > 4 * info_on['ynn_convolutions'], info_on
  assert info_off['ynn_convolutions'] > 4 * info_off['eigen_convolutions'], info_off
  # Same maths, another summation order: float32 rounding, ~1e-6 relative. Bounds: the loss
  # to 1e-5 relative, every gradient entry to 1e-5 of the largest gradient entry (some
  # gradients are zero in exact arithmetic, e.g. a conv bias that a GroupNorm follows, so
  # their own scale is rounding noise).
  np.testing.assert_allclose(on['value'], off['value'], rtol=1e-5)
  keys = [k for k in on.files if k != 'value']
  assert keys and keys == [k for k in off.files if k != 'value']
  scale = max(float(np.max(np.abs(off[k]))) for k in keys)
  worst = max(float(np.max(np.abs(on[k] - off[k]))) for k in keys) / scale
  print('largest gradient difference / largest gradient:', worst)
  assert 0 < worst < 1e-5   # not 0: the two runs did compile different programs


GLIBC = platform.libc_ver()[0] == 'glibc'
THP = '/sys/kernel/mm/transparent_hugepage/enabled'


def test_malloc_tuning_only_for_glibc_on_the_cpu_backend_when_nobody_chose():
  assert xla_cpu.malloc_wanted({'JAX_PLATFORMS': 'cpu'}) == GLIBC
  assert not xla_cpu.malloc_wanted({'JAX_PLATFORMS': 'cpu', 'SCORE_CPU_MALLOC': '0'})
  assert not xla_cpu.malloc_wanted({'JAX_PLATFORMS': 'cpu', 'SCORE_XLA_CPU_DEFAULTS': '0'})
  assert not xla_cpu.malloc_wanted(
      {'JAX_PLATFORMS': 'cpu', 'LD_PRELOAD': '/usr/lib/libtcmalloc_minimal.so.4'})
  assert not xla_cpu.malloc_wanted({'JAX_PLATFORMS': 'cuda'})
  assert not xla_cpu.malloc_wanted({'JAX_PLATFORMS': 'tpu,cpu'})


# One jitted call with a 64 MiB temporary (the [8192, 2048] product between two matmuls),
# repeated; prints the temp size XLA assigned, the page faults of each call, the size of the
# brk heap after it (MiB) and the result.
_FAULTS = r'''
import json, resource, sys
import xla_cpu
import jax, jax.numpy as jnp, numpy as np
from jax._src import xla_bridge
a = jnp.asarray(np.random.default_rng(0).normal(size=(8192, 64)), jnp.float32)
b = jnp.asarray(np.random.default_rng(1).normal(size=(64, 2048)), jnp.float32) / 8
c = jnp.asarray(np.random.default_rng(2).normal(size=(2048, 4)), jnp.float32) / 45
f = jax.jit(lambda a, b, c: jnp.tanh(a @ b) @ c)
compiled = f.lower(a, b, c).compile()
out = np.asarray(f(a, b, c))
def heap_mib():
  spans = [l.split()[0].split('-') for l in open('/proc/self/maps') if '[heap]' in l]
  return sum(int(end, 16) - int(start, 16) for start, end in spans) >> 20
faults, heap = [], []
for _ in range(24):
  before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
  f(a, b, c).block_until_ready()
  faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
  heap.append(heap_mib())
np.save(sys.argv[1], out)
print(json.dumps({'temp': compiled.memory_analysis().temp_size_in_bytes, 'faults': faults,
                  'heap_mib': heap,
                  'async': xla_bridge._CPU_ENABLE_ASYNC_DISPATCH.value}))
'''


@pytest.mark.skipif(not GLIBC, reason='the tuning applies to glibc only')
def test_malloc_tuning_keeps_large_temporaries_mapped_between_calls(tmp_path):
  """With glibc's defaults each call maps its 64 MiB temporary afresh and faults in its
  16384 pages; tuned, the main arena keeps it, so a call faults in next to nothing. The
  results are the same numbers (only where the memory comes from changed)."""
  runs = {}
  for name, value in (('tuned', '1'), ('default', '0')):
    out = tmp_path / f'{name}.npy'
    proc = run_python(['-c', _FAULTS, str(out)],
                      env={'SCORE_CPU_MALLOC': value, 'LD_PRELOAD': '', 'JAX_PLATFORMS': 'cpu'})
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs[name] = (json.loads(proc.stdout.strip().splitlines()[-1]), np.load(out))
  (tuned, x), (default, y) = runs['tuned'], runs['default']
  print(tuned, default)
  assert tuned['temp'] >= 64 * 2**20 and not tuned['async'] and default['async']
  pages = tuned['temp'] // 4096
  # Tuned: once the arena has grown, a typical call faults in a few pages at most, far below
  # the temporary's. It takes some calls to grow: small allocations made between two calls
  # can be carved out of the freed 64 MiB chunk, so the next call extends the heap by another
  # temporary (heap_mib grows by 64 on exactly the calls that fault it in) until a layout
  # holds still -- after 2-5 calls here, 7 on the CI machine, which once relapsed at call 9.
  # Hence the median over the second half of 24 calls.
  assert np.median(tuned['faults'][12:]) < pages // 16, tuned
  # The control shows the test can fail: glibc's defaults fault in the temporary on every
  # call (base pages; a kernel that backs anonymous maps with huge pages would fault less).
  if not (os.path.exists(THP) and '[always]' in open(THP).read()):
    assert np.median(default['faults'][12:]) > pages // 2, default
  np.testing.assert_array_equal(x, y)
