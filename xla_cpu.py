"""XLA:CPU settings of this project, applied by importing this module before JAX starts.

In the pinned jaxlib (0.10.2) XLA:CPU hands every convolution and matmul to
YNNPACK, which runs the 3x3 convolutions of DDPM++ / NCSN++ on one thread: CPU
time / wall = 1.00 on a 2-core machine, against 1.98 for XLA's own Eigen
convolutions of the same shapes (benchmarks/xla_cpu_flags.py measures both).
So unless the user says otherwise we keep YNNPACK for the rest and give
convolutions and dots back to Eigen:

    --xla_cpu_experimental_ynn_fusion_type=-individual_convolution,-individual_dot

Measured in alternating processes (docs/performance.md): 1.36x faster train steps
and 1.5-1.6x faster forward passes for nf-32 U-Nets at batch 16-64, level on the
digits demo, but 3-13% slower for the published nf-128 widths at batch 2, whose
wide convolutions YNNPACK does thread (SCORE_XLA_CPU_DEFAULTS=0 for those).
Only XLA:CPU reads the flag; GPU and TPU runs are unaffected. XLA reads
XLA_FLAGS once, when the backend starts, so this must be imported before the
first computation (main.py, parallel.py, the benchmarks, studies and tests
import it first thing); a process whose backend already runs keeps its flags.

JAX's persistent compilation cache does not key its entries on this flag (seen in
tests/test_xla_cpu.py): when switching it, disable or clear that cache.

Leave it to the user: a flag of the same name already in XLA_FLAGS wins, and
SCORE_XLA_CPU_DEFAULTS=0 turns this off. Applied only with the jaxlib it was
measured on: an unknown flag would abort XLA, and a newer YNNPACK may thread
its convolutions.
"""
import os

FLAG = '--xla_cpu_experimental_ynn_fusion_type=-individual_convolution,-individual_dot'
TESTED_JAXLIB = ('0.10.',)


def wanted(environ=os.environ, jaxlib_version: str | None = None) -> bool:
  """Whether to add FLAG to XLA_FLAGS in `environ`."""
  if environ.get('SCORE_XLA_CPU_DEFAULTS', '1') == '0':
    return False
  if FLAG.split('=')[0] in environ.get('XLA_FLAGS', ''):
    return False   # the user chose
  if jaxlib_version is None:
    from importlib import metadata
    try:
      jaxlib_version = metadata.version('jaxlib')
    except metadata.PackageNotFoundError:
      return False
  return jaxlib_version.startswith(TESTED_JAXLIB)


def configure(environ=os.environ, jaxlib_version: str | None = None) -> str:
  """Adds FLAG to environ['XLA_FLAGS'] when `wanted`; returns the resulting XLA_FLAGS."""
  if wanted(environ, jaxlib_version):
    environ['XLA_FLAGS'] = (environ.get('XLA_FLAGS', '') + ' ' + FLAG).strip()
  return environ.get('XLA_FLAGS', '')


configure()
