"""Device mesh, shardings of the train state and batches, multi-host start-up.

The mesh axes come from `config.mesh` (an ordered mapping axis → size, one size may be -1 = the remaining devices);
the default puts every device on `data`. Batches are split over `data`. Parameters (and everything shaped like them in
the optimizer state) are replicated, or with `config.sharding.fsdp` split FSDP-style over `data` (and `model`, if the
mesh has it) along their largest divisible dimension once they hold at least `config.sharding.min_fsdp_size` elements.
"""

import os
from typing import Any, Mapping

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA = 'data'


def initialize_distributed(
    coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None
) -> None:
    """Starts multi-host JAX when asked or when the environment says so; a no-op for a single process.

    Explicit arguments (`fdx train --coordinator HOST:PORT --num-processes N --process-id I`) or the variables
    `FDX_COORDINATOR`, `FDX_NUM_PROCESSES`, `FDX_PROCESS_ID` win. A Cloud TPU VM of a multi-host slice says
    `TPU_WORKER_HOSTNAMES` (comma-separated) and `TPU_WORKER_ID`: process `TPU_WORKER_ID` of as many as there are
    hosts, coordinated by the first host on port `FDX_COORDINATOR_PORT` (8476, JAX's own choice on TPU VMs). A SLURM
    job with several tasks is detected and JAX reads the cluster from SLURM's variables.
    """
    coordinator = coordinator or os.environ.get('FDX_COORDINATOR')
    hosts = [h for h in os.environ.get('TPU_WORKER_HOSTNAMES', '').split(',') if h]
    if coordinator:
        num_processes = num_processes or int(os.environ['FDX_NUM_PROCESSES'])
        process_id = process_id if process_id is not None else int(os.environ['FDX_PROCESS_ID'])
        jax.distributed.initialize(coordinator, num_processes, process_id)
    elif len(hosts) > 1:
        port = os.environ.get('FDX_COORDINATOR_PORT', '8476')
        jax.distributed.initialize(f'{hosts[0]}:{port}', len(hosts), int(os.environ['TPU_WORKER_ID']))
    elif int(os.environ.get('SLURM_NTASKS', '1')) > 1:
        jax.distributed.initialize()


def describe_devices() -> str:
    """One line on what this run computes on: platform, device kind and count, processes."""
    devices = jax.devices()
    kinds = sorted({d.device_kind for d in devices})
    return (
        f'{jax.default_backend()}: {len(devices)} device{"s" * (len(devices) != 1)} ({", ".join(kinds)}) in '
        f'{jax.process_count()} process{"es" * (jax.process_count() != 1)}, {jax.local_device_count()} local'
    )


def make_mesh(axes: Mapping[str, int]) -> Mesh:
    """A mesh over all devices with the given axis sizes (one may be -1); axes are Auto (sharding by propagation)."""
    names, sizes = list(axes), [int(s) for s in axes.values()]
    if DATA not in names:
        raise ValueError(f'config.mesh must have a {DATA!r} axis, got {dict(axes)}')
    count = jax.device_count()
    if sizes.count(-1) > 1:
        raise ValueError(f'config.mesh: at most one axis may be -1, got {dict(axes)}')
    if -1 in sizes:
        known = int(np.prod([s for s in sizes if s != -1]))
        sizes[sizes.index(-1)] = count // known
    if int(np.prod(sizes)) != count:
        raise ValueError(
            f'config.mesh {dict(axes)} needs {int(np.prod(sizes))} devices, this run has {count} '
            f'({describe_devices()}); set config.mesh to fit (one axis may be -1: all devices)'
        )
    devices = np.asarray(jax.devices()).reshape(sizes)
    return Mesh(devices, tuple(names), axis_types=(AxisType.Auto,) * len(names))


def _leaf_spec(shape: tuple[int, ...], mesh: Mesh, fsdp: bool, min_size: int) -> P:
    if not fsdp or int(np.prod(shape, dtype=np.int64)) < min_size:
        return P()
    axes = tuple(a for a in (DATA, 'model') if a in mesh.shape and mesh.shape[a] > 1)
    shards = int(np.prod([mesh.shape[a] for a in axes]))
    for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
        if axes and shape[dim] % shards == 0:
            spec = [None] * len(shape)
            spec[dim] = axes if len(axes) > 1 else axes[0]
            return P(*spec)
    return P()


def state_shardings(abstract_state: Any, mesh: Mesh, fsdp: bool = False, min_size: int = 2**18) -> Any:
    """NamedShardings for every leaf of the (abstract) train state."""
    return jax.tree.map(lambda x: NamedSharding(mesh, _leaf_spec(tuple(x.shape), mesh, fsdp, min_size)), abstract_state)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (example) axis over `data`; the same sharding serves every leaf of a batch dict."""
    return NamedSharding(mesh, P(DATA))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def global_batch(local_batch: Mapping[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Process-local batch → global arrays sharded over `data` (`jax.make_array_from_process_local_data`)."""
    sharding = batch_sharding(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local_batch.items()}
