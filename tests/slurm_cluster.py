"""A real one-node SLURM cluster on the test machine (Debian's slurmctld, slurmd and munge), for tests/test_slurm.py.

`start()` installs the packages when `sbatch` is missing (root and apt-get needed), writes a slurm.conf for this
host (one setting per line; `config_overrides` so the node's CPUs are taken as written; `cred_expire=10` so a
requeued task reruns after ≈ 11 s instead of 121 s; KillWait=30 so a signalled trainer has time to save), starts
munged, slurmctld and slurmd unless a node is already idle, and waits for it. A machine may hold what an earlier
session left: a munge socket whose munged is dead, pid files of dead daemons, live daemons whose node is down, job
state of old runs. So munged is (re)started unless `munge -n | unmunge` works, both SLURM daemons are stopped before
they start, and slurmctld starts with `-c` (old jobs cleared). `unavailable()` says why SLURM cannot be had here (not
root, no apt-get), or None. Daemons are left running for the session (`stop()` ends them).
"""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ('slurmctld', 'slurmd', 'slurm-client', 'munge')
SLURMD_PID, SLURMCTLD_PID, MUNGE_PID = Path('/run/slurmd.pid'), Path('/run/slurmctld.pid'), Path('/run/munge/munged.pid')


def unavailable() -> str | None:
    if shutil.which('sbatch') and shutil.which('slurmctld'):
        return None
    if os.geteuid() != 0:
        return 'SLURM is not installed and installing it needs root'
    if not shutil.which('apt-get'):
        return 'SLURM is not installed and there is no apt-get to install it'
    return None


def _run(*command: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=True, capture_output=True, text=True, **kwargs)


def _idle() -> bool:
    if not shutil.which('sinfo'):
        return False
    result = subprocess.run(['sinfo', '-h', '-o', '%T'], capture_output=True, text=True, check=False)
    return result.returncode == 0 and 'idle' in result.stdout


def _config() -> str:
    host = socket.gethostname().split('.')[0]
    memory = int(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**20)
    settings = [
        'ClusterName=fdxtest',
        f'SlurmctldHost={host}(127.0.0.1)',
        'SlurmUser=slurm',
        'AuthType=auth/munge',
        'AuthInfo=cred_expire=10',
        'MpiDefault=none',
        'ProctrackType=proctrack/linuxproc',
        'TaskPlugin=task/none',
        'JobAcctGatherType=jobacct_gather/none',
        'SelectType=select/cons_tres',
        'SelectTypeParameters=CR_Core',
        'SlurmdParameters=config_overrides',
        'ReturnToService=2',
        'SchedulerType=sched/backfill',
        'SchedulerParameters=sched_interval=1,bf_interval=1',
        'MinJobAge=600',
        'KillWait=30',
        'MailProg=/bin/true',
        'AccountingStorageType=accounting_storage/none',
        'JobCompType=jobcomp/filetxt',
        'JobCompLoc=/var/log/slurm/jobcomp.log',
        'SlurmctldPidFile=/run/slurmctld.pid',
        'SlurmdPidFile=/run/slurmd.pid',
        'StateSaveLocation=/var/lib/slurm/slurmctld',
        'SlurmdSpoolDir=/var/lib/slurm/slurmd',
        'SlurmctldLogFile=/var/log/slurm/slurmctld.log',
        'SlurmdLogFile=/var/log/slurm/slurmd.log',
        f'NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={memory} State=UNKNOWN',
        'PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP',
    ]
    return '\n'.join(settings) + '\n'


def start(timeout: float = 120) -> None:
    """Installs (if needed) and starts the cluster; returns once its node is idle. Raises RuntimeError otherwise."""
    if _idle():
        return
    if not (shutil.which('sbatch') and shutil.which('slurmctld')):
        env = {**os.environ, 'DEBIAN_FRONTEND': 'noninteractive'}
        _run('apt-get', 'update', '-q', env=env)
        _run('apt-get', 'install', '-y', '-q', '--no-install-recommends', *PACKAGES, env=env)
    key = Path('/etc/munge/munge.key')
    if not key.is_file() or key.stat().st_size == 0:
        _run('mungekey', '--create', f'--keyfile={key}')
    if not _munge_works():
        _stop_daemon('munged', MUNGE_PID)
        _run('install', '-d', '-o', 'munge', '-g', 'munge', '-m', '0755', '/run/munge')
        _run('runuser', '-u', 'munge', '--', '/usr/sbin/munged', '--force')  # --force: replace a stale socket
        wait_for(_munge_works, 20, 0.2, 'munged to answer')
    _run('install', '-d', '-o', 'slurm', '-g', 'slurm', '/var/lib/slurm/slurmctld', '/var/log/slurm')
    _run('install', '-d', '/var/lib/slurm/slurmd')
    Path('/etc/slurm/slurm.conf').write_text(_config())
    _stop_daemon('slurmd', SLURMD_PID)
    _stop_daemon('slurmctld', SLURMCTLD_PID)
    _run('/usr/sbin/slurmctld', '-c')  # -c: start without the jobs of earlier sessions
    _run('/usr/sbin/slurmd')
    deadline = time.monotonic() + timeout
    while not _idle():
        if time.monotonic() > deadline:
            log = Path('/var/log/slurm/slurmctld.log')
            tail = log.read_text(errors='replace')[-2000:] if log.is_file() else ''
            raise RuntimeError(f'the SLURM node did not become idle within {timeout} s; slurmctld.log:\n{tail}')
        time.sleep(0.5)


def _munge_works() -> bool:
    if not shutil.which('munge'):
        return False
    encoded = subprocess.run(['munge', '-n'], capture_output=True, check=False)
    if encoded.returncode != 0:
        return False
    return subprocess.run(['unmunge'], input=encoded.stdout, capture_output=True, check=False).returncode == 0


def _pids(name: str) -> list[int]:
    """Live processes whose command name is `name` (zombies left by a PID 1 that does not reap are not counted)."""
    pids = []
    for stat in Path('/proc').glob('[0-9]*/stat'):
        try:
            text = stat.read_text()
        except OSError:
            continue
        command, state = text[text.index('(') + 1 : text.rindex(')')], text[text.rindex(')') + 2]
        if command == name and state not in 'ZX':
            pids.append(int(stat.parent.name))
    return pids


def _stop_daemon(name: str, pid_file: Path, timeout: float = 30) -> None:
    """Ends every live process named `name` (the one in `pid_file` and any other) and waits until they are gone."""
    for sig in (15, 9):
        for pid in _pids(name):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + (timeout if sig == 15 else 10)
        while _pids(name) and time.monotonic() < deadline:
            time.sleep(0.2)
    if _pids(name):
        raise RuntimeError(f'{name} did not stop: pids {_pids(name)}')
    pid_file.unlink(missing_ok=True)


def stop() -> None:
    """Stops slurmd, slurmctld and munged (in that order)."""
    for name, pid_file in (('slurmd', SLURMD_PID), ('slurmctld', SLURMCTLD_PID), ('munged', MUNGE_PID)):
        _stop_daemon(name, pid_file)


def wait_for(predicate, timeout: float, interval: float = 1.0, what: str = 'condition'):
    """Polls `predicate()` until it returns something truthy (returned) or `timeout` s pass (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f'timed out after {timeout} s waiting for {what}')
        time.sleep(interval)
