"""Where runs live: a workdir is a local folder or a Google Cloud Storage URL (`gs://bucket/runs/x`), read and written
through `etils.epath` (what orbax uses). Local paths are made absolute (orbax needs absolute paths).

Cloud workdirs need the `gcs` extra (`pip install -e '.[gcs]'`: gcsfs for files, google-cloud-storage for TensorBoard
events; orbax's TensorStore speaks GCS itself) and the machine's Google credentials (on a TPU VM: its service account).
Object stores cannot append: `MetricWriter` rewrites `metrics.jsonl` whole at each flush there. gcsfs's listings cache
is turned off: a process that lists a folder (a checkpoint manager, `fdx eval`) must see what other processes wrote
since.
"""

import io
import os

from etils import epath

CLOUD_SCHEMES = ('gs://',)


def is_cloud(location: str | os.PathLike) -> bool:
    """True for a `gs://` URL."""
    return os.fspath(location).startswith(CLOUD_SCHEMES)


def path(location: str | os.PathLike) -> epath.Path:
    """The `epath.Path` of a workdir or a file in one: a cloud URL as it is, a local path made absolute.

    Never pass a cloud URL through `pathlib.Path` first: it folds `gs://b/x` into `gs:/b/x`."""
    if is_cloud(location):
        import fsspec.config  # with the gcs extra

        fsspec.config.conf.setdefault('gs', {}).setdefault('use_listings_cache', False)  # before gcsfs is made
        return epath.Path(location)
    if isinstance(location, epath.Path):
        return location
    return epath.Path(os.path.abspath(os.fspath(location)))


def join(root: str | os.PathLike, *parts: str) -> str:
    """`root/part/...` as a string, a cloud URL kept as one (`pathlib` would fold `gs://` into `gs:/`)."""
    if is_cloud(root):
        return '/'.join([os.fspath(root).rstrip('/'), *parts])
    return os.path.join(root, *parts)


def save_figure(fig, location: str | os.PathLike, **savefig_kwargs) -> None:
    """Writes a matplotlib figure as PNG to a local path or a cloud URL, creating parent folders."""
    target = path(location)
    target.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, format='png', **savefig_kwargs)
    target.write_bytes(buffer.getvalue())


def save_npz(location: str | os.PathLike, **arrays) -> None:
    """`np.savez` to a local path or a cloud URL."""
    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    path(location).write_bytes(buffer.getvalue())
