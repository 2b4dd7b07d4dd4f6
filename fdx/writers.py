"""Logging on process 0: TensorBoard event files, a JSON-lines file of every scalar, a parameter overview."""

import json
import sys
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np
from flax import traverse_util


def _summary_writer_class():
    """tensorboardX's `SummaryWriter`, imported without PyTorch where torch is not loaded yet: tensorboardX imports
    torch, when installed, only to name `torch.Tensor` in its type hints (fdx logs floats), which cost every
    `fdx train` 4 s on the 2-core machine of the README where the `torch` extra is installed."""
    if 'tensorboardX' not in sys.modules and 'torch' not in sys.modules:
        sys.modules['torch'] = None  # `import torch` raises ImportError while tensorboardX is imported
        try:
            import tensorboardX  # noqa: F401
        finally:
            del sys.modules['torch']
    from tensorboardX import SummaryWriter

    return SummaryWriter


class MetricWriter:
    """Writes scalars to `<workdir>/metrics.jsonl` (one object per step) and TensorBoard events in `<workdir>/tb`.

    On processes other than 0 every method is a no-op.
    """

    def __init__(self, workdir: str | Path):
        self.active = jax.process_index() == 0
        if not self.active:
            return
        SummaryWriter = _summary_writer_class()
        workdir = Path(workdir)
        self._jsonl = open(workdir / 'metrics.jsonl', 'a')
        self._tb = SummaryWriter(str(workdir / 'tb'))

    def write(self, step: int, scalars: Mapping[str, Any]) -> None:
        if not self.active:
            return
        scalars = {k: float(v) for k, v in scalars.items()}
        self._jsonl.write(json.dumps({'step': int(step), **scalars}) + '\n')
        self._jsonl.flush()
        for key, value in scalars.items():
            self._tb.add_scalar(key, value, int(step))

    def flush(self) -> None:
        if self.active:
            self._jsonl.flush()
            self._tb.flush()

    def close(self) -> None:
        if self.active:
            self._jsonl.close()
            self._tb.close()


def parameter_overview(variables: Mapping[str, Any]) -> str:
    """A table of every variable: collection/path, shape, dtype, size; with totals per collection."""
    rows, totals = [], {}
    for path, leaf in traverse_util.flatten_dict(variables).items():
        size = int(np.prod(leaf.shape))
        totals[path[0]] = totals.get(path[0], 0) + size
        rows.append(('/'.join(path), str(tuple(leaf.shape)), str(leaf.dtype), f'{size:,}'))
    widths = [max(len(r[i]) for r in rows + [('variable', 'shape', 'dtype', 'size')]) for i in range(4)]
    lines = ['  '.join(c.ljust(w) for c, w in zip(('variable', 'shape', 'dtype', 'size'), widths))]
    lines += ['  '.join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    lines += [f'total {collection}: {total:,}' for collection, total in totals.items()]
    return '\n'.join(lines)


def log(message: str) -> None:
    """Prints on process 0 only."""
    if jax.process_index() == 0:
        print(message, file=sys.stderr, flush=True)
