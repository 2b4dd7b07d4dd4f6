"""Loader worker processes: no leaked shared memory at exit (orphaned workers: tests/test_train.py)."""

import os
import subprocess
import sys
from pathlib import Path

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
batches = [next(loader) for _ in range(3)]  # neither the loader nor the batches it returned are freed before exit
assert [b['x'].shape for b in batches] == [(4, 8, 8)] * 3
"""
)


def _python(script: str, *args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, 'PYTHONPATH': str(REPO)}
    return subprocess.Popen([sys.executable, '-c', script, *args], env=env, text=True, **kwargs)


def test_an_unclosed_loader_leaks_no_shared_memory_at_exit():
    """The trainer and evaluator close their loaders (tests/test_train.py: killed and finished runs with workers);
    a loader left open, with batches still referenced, is closed at interpreter exit."""
    proc = _python(EXIT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert 'leaked' not in stderr
