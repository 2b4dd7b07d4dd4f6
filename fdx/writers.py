"""Logging on process 0: TensorBoard event files, a JSON-lines file of every scalar, a parameter overview."""

import json
import sys
from pathlib import Path
from typing import Any, Mapping

import jax
import numpy as np
from flax import traverse_util

from fdx import storage


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


class _RewrittenText:
    """An append-only text file on an object store (no appends there): the whole text is rewritten at each flush."""

    def __init__(self, path):
        self.path = path
        self.text = path.read_text() if path.exists() else ''
        self.written = self.text

    def write(self, text: str) -> None:
        self.text += text

    def flush(self) -> None:
        if self.text != self.written:
            self.path.write_text(self.text)
            self.written = self.text

    close = flush


class MetricWriter:
    """Writes scalars to `<workdir>/metrics.jsonl` (one object per step) and TensorBoard events in `<workdir>/tb`.

    The workdir may be a `gs://` URL (`fdx.storage`): there metrics.jsonl is rewritten whole at each write (objects
    cannot be appended to; a run logs every `log_every` steps). On processes other than 0 every method is a no-op.
    """

    def __init__(self, workdir: str | Path):
        self.active = jax.process_index() == 0
        if not self.active:
            return
        SummaryWriter = _summary_writer_class()
        workdir = storage.path(workdir)
        jsonl = workdir / 'metrics.jsonl'
        self._jsonl = _RewrittenText(jsonl) if storage.is_cloud(workdir) else open(jsonl, 'a')
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
