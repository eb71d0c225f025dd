"""The line protocol between benchmarks/versus_reference.py and its two workers.

Pure standard library, so that both the project's environment and the
reference's own venv can import it. The driver writes one JSON object per line
on the worker's stdin; the worker answers one line on stdout starting with
PREFIX (anything else a library prints is ignored):

    {"cmd": "versions"}                   -> {"versions": {...}}
    {"cmd": "setup", "row": {...}}         -> {"setup_seconds": s, ...}   (build, warm up)
    {"cmd": "time", "id": ID, "reps": n}   -> {"wall": s, "cpu": s, "result": ...}
    {"cmd": "quit"}

`wall` and `cpu` are per repetition: wall-clock seconds, and CPU seconds of the
worker process (all threads), whose ratio is the number of cores kept busy.
"""
import json
import sys
import time
import traceback

PREFIX = '@@'


def reply(obj) -> None:
  sys.stdout.write(PREFIX + json.dumps(obj) + '\n')
  sys.stdout.flush()


def serve(worker, import_seconds: float = 0.) -> None:
  """Answers commands until 'quit' or EOF. `worker` has versions(), setup(row), run(id)."""
  for line in sys.stdin:
    msg = json.loads(line)
    try:
      if msg['cmd'] == 'quit':
        return
      if msg['cmd'] == 'versions':
        reply({'versions': worker.versions(), 'import_seconds': import_seconds})
      elif msg['cmd'] == 'setup':
        tic = time.perf_counter()
        info = worker.setup(msg['row'])
        first = worker.run(msg['row']['id'])   # compile / warm-up, untimed
        reply({'setup_seconds': time.perf_counter() - tic, 'first_result': first, **info})
      elif msg['cmd'] == 'time':
        tic, cpu = time.perf_counter(), time.process_time()
        for _ in range(msg['reps']):
          result = worker.run(msg['id'])
        reply({'wall': (time.perf_counter() - tic) / msg['reps'],
               'cpu': (time.process_time() - cpu) / msg['reps'], 'result': result})
      else:
        raise ValueError(f'unknown command {msg["cmd"]!r}')
    except Exception as e:  # report to the driver, which stops the run with this message
      reply({'error': f'{type(e).__name__}: {e}', 'traceback': traceback.format_exc()})
