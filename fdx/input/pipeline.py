"""grain input pipelines whose global batches do not depend on the number of processes or loader workers.

Training step `s` reads the global batch of epoch `s // steps_per_epoch`: positions `[b * B, (b + 1) * B)` of that
epoch's permutation of the records (`b = s % steps_per_epoch`; the last `N % B` positions of every epoch are dropped).
Each process loads only its contiguous slice of `B / P` positions and augments record position `p` of the global
stream (`epoch * N + position in epoch`) with `np.random.default_rng([seed, p])`, so concatenating the local batches
of all processes gives the same global batch, augmentation included, for any process and worker count.

A transform may turn one record into a list of `examples_per_item` examples (a real frame and its self-blended fake):
the batch sizes count examples, a global batch then reads `B / examples_per_item` records, and the examples of one
record sit next to each other in the batch.

A pipeline is a `grain.MapDataset` with one local batch per element, so `mp_prefetch` workers each produce whole
batches that are interleaved back in order, and an iterator's state is a few batch counters (JSON).

`make_loader` returns a `Loader`: close it (or use it as a context manager) to stop its worker processes; one left
open is closed at interpreter exit, and its workers end themselves within a second of their parent dying (SIGKILL).
"""

import atexit
import functools
import os
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, Self

import grain
import jax
import numpy as np
from absl import flags
from grain.sources import RandomAccessDataSource as Source

Record = dict[str, Any]
Transform = Callable[[Record, np.random.Generator], Record]


def records_per_batch(global_batch_size: int, examples_per_item: int = 1) -> int:
    """Records read per global batch of `global_batch_size` examples."""
    if examples_per_item < 1 or global_batch_size % examples_per_item:
        raise ValueError(
            f'batch size {global_batch_size} is not a multiple of the {examples_per_item} examples each record gives'
        )
    return global_batch_size // examples_per_item


def steps_per_epoch(num_records: int, global_batch_size: int, examples_per_item: int = 1) -> int:
    """Full global batches per epoch (the remainder is dropped)."""
    steps = num_records // records_per_batch(global_batch_size, examples_per_item)
    if steps == 0:
        raise ValueError(f'{num_records} records make no full global batch of {global_batch_size} examples')
    return steps


def _examples_per_item(transform) -> int:
    return getattr(transform, 'examples_per_item', 1)


def _stacked(out: Record | list[Record], examples_per_item: int) -> Record:
    """One record's transform output: a dict, or its `examples_per_item` examples stacked on a leading axis."""
    if examples_per_item == 1:
        return out
    if not isinstance(out, list) or len(out) != examples_per_item:
        raise ValueError(f'the view must return a list of {examples_per_item} examples per record, got {type(out)}')
    return {k: np.stack([np.asarray(example[k]) for example in out]) for k in out[0]}


def _flatten_examples(batch: Record) -> Record:
    """[records, examples, ...] -> [records · examples, ...]."""
    return {k: v.reshape(-1, *v.shape[2:]) for k, v in batch.items()}


def _local_batch_size(global_batch_size: int, process_index: int, process_count: int) -> int:
    """Per-process share of the global batch."""
    if global_batch_size <= 0 or global_batch_size % process_count:
        raise ValueError(
            f'global batch size {global_batch_size} is not a positive multiple of the process count {process_count}'
        )
    if not 0 <= process_index < process_count:
        raise ValueError(f'process index {process_index} is outside [0, {process_count})')
    return global_batch_size // process_count


def _shuffle_seed(seed: int) -> int:
    """32-bit seed for grain's shuffle, hashed so that run `seed + 1` does not replay run `seed`'s next epoch."""
    return int(np.random.SeedSequence(seed).generate_state(1)[0])


class _TrainRecord:
    """Local record `k` (of local batch `k // local_batch_size`) -> its transformed source record."""

    def __init__(
        self,
        source: Source,
        *,
        global_batch_size: int,
        seed: int,
        process_index: int,
        process_count: int,
        transform: Transform | None,
    ):
        self.source = source
        self.global_batch_size = global_batch_size
        self.local_batch_size = _local_batch_size(global_batch_size, process_index, process_count)
        self.process_index = process_index
        self.steps_per_epoch = steps_per_epoch(len(source), global_batch_size)
        self.seed = seed
        self.transform = transform
        # order[epoch * N + i] is the record at position i of the epoch; grain reseeds its shuffle every epoch.
        self.order = grain.MapDataset.range(len(source)).shuffle(seed=_shuffle_seed(seed))

    def __call__(self, k: int) -> Record:
        step, slot = divmod(k, self.local_batch_size)
        epoch, batch = divmod(step, self.steps_per_epoch)
        position = batch * self.global_batch_size + self.process_index * self.local_batch_size + slot
        stream_position = epoch * len(self.source) + position
        record = dict(self.source[self.order[stream_position]])
        if self.transform is not None:
            record = self.transform(record, np.random.default_rng([self.seed, stream_position]))
        return _stacked(record, _examples_per_item(self.transform))


class _EvalRecord:
    """Local record `k` -> the record at its global position, or record 0 flagged invalid past the end."""

    def __init__(
        self,
        source: Source,
        *,
        global_batch_size: int,
        process_index: int,
        process_count: int,
        transform: Transform | None,
    ):
        self.source = source
        self.global_batch_size = global_batch_size
        self.local_batch_size = _local_batch_size(global_batch_size, process_index, process_count)
        self.process_index = process_index
        self.transform = transform

    def __call__(self, k: int) -> Record:
        step, slot = divmod(k, self.local_batch_size)
        position = step * self.global_batch_size + self.process_index * self.local_batch_size + slot
        valid = position < len(self.source)
        index = position if valid else 0
        record = dict(self.source[index])
        if self.transform is not None:
            record = self.transform(record, np.random.default_rng(index))
        examples = _examples_per_item(self.transform)
        record = _stacked(record, examples)
        shape = (examples,) if examples > 1 else ()
        return {**record, 'valid': np.full(shape, valid), 'index': np.full(shape, index, np.int64)}


def _batched(records: grain.MapDataset, local_batch_size: int, examples_per_item: int) -> grain.IterDataset:
    """Stacks consecutive records into local batches; reading and prefetching are left to `make_loader`."""
    batches = records.batch(local_batch_size, drop_remainder=True)
    if examples_per_item > 1:
        batches = batches.map(_flatten_examples)
    return batches.to_iter_dataset(grain.ReadOptions(num_threads=0, prefetch_buffer_size=0))


def train_dataset(
    source: Source,
    *,
    global_batch_size: int,
    seed: int,
    process_index: int,
    process_count: int,
    transform: Transform | None = None,
    num_epochs: int | None = None,
) -> grain.IterDataset:
    """This process's local training batches of `global_batch_size` examples in all, reshuffled every epoch, for
    `num_epochs` epochs (None: forever)."""
    if num_epochs is not None and num_epochs <= 0:
        raise ValueError(f'num_epochs must be positive or None, got {num_epochs}')
    examples = _examples_per_item(transform)
    fn = _TrainRecord(
        source,
        global_batch_size=records_per_batch(global_batch_size, examples),
        seed=seed,
        process_index=process_index,
        process_count=process_count,
        transform=transform,
    )
    num_steps = sys.maxsize // fn.local_batch_size if num_epochs is None else num_epochs * fn.steps_per_epoch
    return _batched(grain.MapDataset.range(num_steps * fn.local_batch_size).map(fn), fn.local_batch_size, examples)


def eval_dataset(
    source: Source,
    *,
    global_batch_size: int,
    process_index: int,
    process_count: int,
    transform: Transform | None = None,
) -> grain.IterDataset:
    """This process's local evaluation batches: every record once, in order, the last global batch padded.

    Batches carry `valid` (False on padding, which repeats record 0) and `index` (the record index). `transform`
    gets a generator seeded with the record index. The batch sizes count examples, as in `train_dataset`.
    """
    examples = _examples_per_item(transform)
    fn = _EvalRecord(
        source,
        global_batch_size=records_per_batch(global_batch_size, examples),
        process_index=process_index,
        process_count=process_count,
        transform=transform,
    )
    num_steps = -(-len(source) // fn.global_batch_size)
    return _batched(grain.MapDataset.range(num_steps * fn.local_batch_size).map(fn), fn.local_batch_size, examples)


_PARENT_POLL_S = 0.5


def _watch_parent(parent_pid: int):
    """Ends this worker process once its parent is gone (the worker is re-parented, so its parent pid changes).

    Not PR_SET_PDEATHSIG: grain starts a worker from a prefetch thread, which ends (killing the worker) on `set_state`.
    """
    while os.getppid() == parent_pid:
        time.sleep(_PARENT_POLL_S)
    os._exit(1)


def _exit_with_parent(parent_pid: int, worker_index: int, worker_count: int):
    """grain `worker_init_fn`: starts the parent watchdog thread in the worker."""
    del worker_index, worker_count
    threading.Thread(target=_watch_parent, args=(parent_pid,), name='fdx-parent-watchdog', daemon=True).start()


def _close_if_alive(ref: weakref.ReferenceType):
    """atexit hook of a `Loader` that may already be garbage."""
    loader = ref()
    if loader is not None:
        loader.close()


def _unlink_shared_memory(leaf: Any):
    """Unlinks a worker's shared-memory array at once (the mapping stays valid), so no exit path leaks it."""
    if isinstance(leaf, grain.multiprocessing.SharedMemoryArray):
        leaf.shm.unlink()
        leaf._unlink_on_del = False  # grain would unlink it again when the array is freed


class Loader(grain.DatasetIterator):
    """A checkpointable iterator over local batches; `close()` (or leaving a `with` block) stops its workers.

    An open loader closes itself at interpreter exit, before multiprocessing terminates the workers, so that the
    shared-memory batches buffered in this process are unlinked; the batches it returns are unlinked already.
    """

    def __init__(self, iterator: grain.DatasetIterator):
        super().__init__()
        self._iterator = iterator
        self._atexit = functools.partial(_close_if_alive, weakref.ref(self))
        atexit.register(self._atexit)

    def __next__(self) -> Record:
        self._assert_not_closed()
        batch = next(self._iterator)
        for leaf in jax.tree.leaves(batch):
            _unlink_shared_memory(leaf)
        return batch

    def get_state(self) -> dict[str, Any]:
        return self._iterator.get_state()

    def set_state(self, state: dict[str, Any]):
        self._iterator.set_state(state)

    def close(self):
        """Stops prefetching, ends the workers and unlinks the batches they had buffered; idempotent.

        The loader is unusable afterwards; the batches it returned stay valid.
        """
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._atexit)
        self._iterator.close()
        # Free the grain iterators now: they close again when freed, which fails once modules are torn down.
        self._iterator = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info):
        self.close()


def make_loader(dataset: grain.IterDataset, *, workers: int = 0, prefetch_buffer: int = 2) -> Loader:
    """A checkpointable `Loader` over `dataset`, loading in `workers` processes (0: a background thread).

    `prefetch_buffer` batches are read ahead (per worker). The loader's `get_state()`/`set_state()` resume exactly
    and it saves with `grain.checkpoint.CheckpointSave`; restore its state into a loader made with the same number
    of workers. Close it when done.
    """
    if workers > 0:
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()  # worker processes read absl flags
        options = grain.MultiprocessingOptions(num_workers=workers, per_worker_buffer_size=prefetch_buffer)
        dataset = dataset.mp_prefetch(options, worker_init_fn=functools.partial(_exit_with_parent, os.getpid()))
    elif prefetch_buffer > 0:
        dataset = grain.experimental.ThreadPrefetchIterDataset(dataset, prefetch_buffer_size=prefetch_buffer)
    return Loader(iter(dataset))
