"""Loader worker processes: no leaked shared memory at exit, no orphaned workers after the parent is SIGKILLed."""

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Run with `-c`, so that the spawned workers do not re-import the script as their main module.
LOADER = """
import sys
import numpy as np
from fdx.input import pipeline

source = [{'x': np.full((8, 8), i, np.float32), 'y': np.int64(i)} for i in range(32)]
dataset = pipeline.train_dataset(source, global_batch_size=4, seed=0, process_index=0, process_count=1)
loader = pipeline.make_loader(dataset, workers=2)
"""

EXIT = (
    LOADER
    + """
if sys.argv[1] == 'with':
    with loader:
        shapes = [next(loader)['x'].shape for _ in range(3)]
else:  # neither closed nor freed before exit, nor are the batches it returned
    batches = [next(loader) for _ in range(3)]
    shapes = [b['x'].shape for b in batches]
assert shapes == [(4, 8, 8)] * 3
"""
)

KILLED = (
    LOADER
    + """
import pathlib, time

next(loader)
children = [int(p) for f in pathlib.Path('/proc/self/task').glob('*/children') for p in f.read_text().split()]
print(*children, flush=True)
time.sleep(600)
"""
)


def _python(script: str, *args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, 'PYTHONPATH': str(REPO)}
    return subprocess.Popen([sys.executable, '-c', script, *args], env=env, text=True, **kwargs)


def _start_time(pid: int) -> int | None:
    """The process's start time (clock ticks after boot), None once it is gone or a zombie."""
    try:
        fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    except FileNotFoundError:
        return None
    return None if fields[0] == 'Z' else int(fields[19])


@pytest.mark.parametrize('mode', ['with', 'open'])
def test_exit_leaks_no_shared_memory(mode):
    proc = _python(EXIT, mode, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert 'leaked' not in stderr
    if mode == 'with':
        assert 'Traceback' not in stderr, stderr


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='reads /proc')
def test_workers_exit_when_parent_is_killed():
    proc = _python(KILLED, stdout=subprocess.PIPE)
    try:
        assert select.select([proc.stdout], [], [], 120)[0], 'the loader did not start'
        children = [int(pid) for pid in proc.stdout.readline().split()]
        started = {pid: _start_time(pid) for pid in children}
        workers = [pid for pid in children if b'spawn_main' in Path(f'/proc/{pid}/cmdline').read_bytes()]
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while (alive := [pid for pid in children if _start_time(pid) == started[pid]]) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert len(workers) == 2, children
    assert not alive, f'processes {alive} outlived their killed parent'
