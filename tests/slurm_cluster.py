"""A real one-node SLURM cluster on the test machine (Debian's slurmctld, slurmd and munge), for tests/test_slurm.py.

`start()` installs the packages when `sbatch` is missing (root and apt-get needed), writes a slurm.conf for this
host (one setting per line; `config_overrides` so the node's CPUs are taken as written; `cred_expire=10` so a
requeued task reruns after ≈ 11 s instead of 121 s; KillWait=30 so a signalled trainer has time to save), starts
munged, slurmctld and slurmd unless a node is already idle, and waits for it. `unavailable()` says why SLURM cannot
be had here (not root, no apt-get), or None. Daemons are left running for the session (`stop()` ends them).
"""

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ('slurmctld', 'slurmd', 'slurm-client', 'munge')
PID_FILES = (Path('/run/slurmd.pid'), Path('/run/slurmctld.pid'), Path('/run/munge/munged.pid'))


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


def start(timeout: float = 60) -> None:
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
    _run('install', '-d', '-o', 'munge', '-g', 'munge', '-m', '0755', '/run/munge')
    if not Path('/run/munge/munge.socket.2').exists():
        _run('runuser', '-u', 'munge', '--', '/usr/sbin/munged')
    _run('install', '-d', '-o', 'slurm', '-g', 'slurm', '/var/lib/slurm/slurmctld', '/var/log/slurm')
    _run('install', '-d', '/var/lib/slurm/slurmd')
    Path('/etc/slurm/slurm.conf').write_text(_config())
    for pid_file in PID_FILES[:2]:
        pid_file.unlink(missing_ok=True)
    _run('/usr/sbin/slurmctld')
    _run('/usr/sbin/slurmd')
    deadline = time.monotonic() + timeout
    while not _idle():
        if time.monotonic() > deadline:
            log = Path('/var/log/slurm/slurmctld.log')
            tail = log.read_text(errors='replace')[-2000:] if log.is_file() else ''
            raise RuntimeError(f'the SLURM node did not become idle within {timeout} s; slurmctld.log:\n{tail}')
        time.sleep(0.5)


def stop() -> None:
    """Stops slurmd, slurmctld and munged (in that order)."""
    for pid_file in PID_FILES:
        if pid_file.is_file():
            try:
                os.kill(int(pid_file.read_text().split()[0]), 15)
            except (ProcessLookupError, ValueError):
                pass
            pid_file.unlink(missing_ok=True)


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
