"""Cloud TPU VM pod slices for `fdx grid --backend tpu`: one grid point per named slice, run with `gcloud`.

Per slice (`--tpu NAME[,NAME…]`, points assigned in order, a slice running its points one after another):

1. optionally `gcloud compute tpus queued-resources create` (`--queued-resource` with `--accelerator-type` and
   `--runtime-version`) and waiting until it is ACTIVE;
2. code sync: `git archive` of HEAD (committed code only: what ran is what is in git) copied to every worker with
   `gcloud compute tpus tpu-vm scp --worker=all`, unpacked in `--remote-dir`;
3. environment setup on every worker: a venv with `pip install -e '.[tpu]'` (with the `gcs` extra; skipped when it
   exists);
4. `gcloud compute tpus tpu-vm ssh NAME --zone Z --worker=all --command 'cd DIR && .venv/bin/fdx train …'`: every
   worker runs one process of the same training; `fdx.sharding.initialize_distributed` joins them (JAX reads the
   slice from the TPU VM's environment).

The workdirs live under `--root`: a `gs://` URL (`fdx.storage`; the VMs' service account needs write access to the
bucket) or a filesystem every worker mounts at the same path (Filestore, NFS).
`commands()` builds every command as an argv list; `--dry-run` prints them; `run()` runs each slice's commands in
order (the slices in parallel), writing `<root>/<name>/grid_status.json`. Nothing here reaches a TPU: the tests run
the commands against a test double for `gcloud` that records its arguments.
"""

import dataclasses
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Sequence


@dataclasses.dataclass(frozen=True)
class Slice:
    """Where and how to reach the TPU VMs."""

    names: tuple[str, ...]
    zone: str
    project: str = ''
    remote_dir: str = '~/fdx'
    queued_resource: bool = False
    accelerator_type: str = ''
    runtime_version: str = ''

    def __post_init__(self):
        if not self.names or not self.zone:
            raise ValueError('--backend tpu needs --tpu NAME[,NAME…] and --zone ZONE')
        if self.queued_resource and not (self.accelerator_type and self.runtime_version):
            raise ValueError('--queued-resource needs --accelerator-type (e.g. v4-32) and --runtime-version')

    def flags(self) -> list[str]:
        return [f'--zone={self.zone}', *([f'--project={self.project}'] if self.project else [])]


def _ssh(slice_: Slice, name: str, command: str) -> list[str]:
    return ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh', name, *slice_.flags(), '--worker=all', f'--command={command}']


def slice_commands(
    slice_: Slice, name: str, archive: Path, trainings: Sequence[Sequence[str]]
) -> list[tuple[str, list[str]]]:
    """(kind, argv) of every command for slice `name`, in order: 'queue' (the queued resource), 'sync', 'setup',
    and one 'train' per training."""
    out = []
    if slice_.queued_resource:
        out.append(
            (
                'queue',
                [
                    'gcloud',
                    'compute',
                    'tpus',
                    'queued-resources',
                    'create',
                    f'{name}-qr',
                    f'--node-id={name}',
                    f'--accelerator-type={slice_.accelerator_type}',
                    f'--runtime-version={slice_.runtime_version}',
                    *slice_.flags(),
                ],
            )
        )
    remote = slice_.remote_dir
    scp = ['gcloud', 'compute', 'tpus', 'tpu-vm', 'scp', str(archive), f'{name}:fdx-src.tar.gz', *slice_.flags()]
    out.append(('sync', [*scp, '--worker=all']))
    setup = (
        f'mkdir -p {remote} && tar -xzf ~/fdx-src.tar.gz -C {remote} && cd {remote} && '
        "{ [ -x .venv/bin/fdx ] || { python3 -m venv .venv && .venv/bin/pip install -q -e '.[tpu]'; }; }"
    )
    out.append(('setup', _ssh(slice_, name, setup)))
    out += [('train', _ssh(slice_, name, f'cd {remote} && .venv/bin/{shlex.join(t)}')) for t in trainings]
    return out


def archive_command(archive: Path) -> list[str]:
    """`git archive` of HEAD into `archive` (tar.gz)."""
    return ['git', 'archive', '--format=tar.gz', '-o', str(archive), 'HEAD']


def _require_gcloud() -> None:
    if shutil.which('gcloud') is None:
        raise FileNotFoundError('gcloud not found on PATH: the TPU backend needs the Google Cloud CLI')


def wait_active(slice_: Slice, name: str, timeout: float = 3600, interval: float = 30) -> None:
    """Polls the queued resource of `name` until its state is ACTIVE (ValueError on FAILED or timeout)."""
    describe = ['gcloud', 'compute', 'tpus', 'queued-resources', 'describe', f'{name}-qr', *slice_.flags()]
    deadline = time.monotonic() + timeout
    while True:
        result = subprocess.run([*describe, '--format=value(state.state)'], capture_output=True, text=True, check=False)
        state = result.stdout.strip()
        if state == 'ACTIVE':
            return
        if state in ('FAILED', 'SUSPENDED') or time.monotonic() > deadline:
            raise ValueError(f'queued resource {name}-qr is {state or "unknown"}: {result.stderr.strip()}')
        time.sleep(interval)


def run_slice(slice_: Slice, name: str, commands: list[tuple[str, list[str]]], log: Path) -> list[int]:
    """Runs a slice's commands in order, appending their output to `log`; returns the exit code of each training (a
    failed queued resource, sync or setup stops the slice: its trainings count as failed with that code)."""
    _require_gcloud()
    codes, trainings = [], sum(kind == 'train' for kind, _ in commands)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open('a') as out:
        for kind, command in commands:
            out.write(f'$ {shlex.join(command)}\n')
            out.flush()
            code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
            if kind == 'queue' and code == 0:
                wait_active(slice_, name)
            if kind == 'train':
                codes.append(code)
            elif code != 0:
                return codes + [code] * (trainings - len(codes))
    return codes
