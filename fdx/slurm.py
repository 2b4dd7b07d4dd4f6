"""SLURM job arrays for `fdx grid --backend slurm` and `fdx prepare --backend slurm`.

`render_script` fills `launch/slurm_array.sbatch`: one array task per unit of work (a grid point, a prepare shard),
each running its command with `srun` on every node of its allocation (`--nodes`, one task per node) and appending to
its own log (a point's `<workdir>/slurm.log`). The array is submitted `--requeue` with `--signal=TERM@S`: `fdx
train` saves a checkpoint on SIGTERM and exits with `EXIT_PREEMPTED`; the script then requeues its task,
which resumes from that checkpoint (pre-emption and `scontrol requeue` requeue by themselves). `submit` runs `sbatch
--parsable` and returns the job id; `task_states` asks `squeue`, then `scontrol show job` (finished tasks, for
MinJobAge), then `sacct` where accounting exists.

Resources come from `Resources` (flags of the commands, or a config's `launch` section): nodes, GPUs per node, time,
partition, account and any extra `#SBATCH` lines.
"""

import argparse
import dataclasses
import re
import shlex
import shutil
import string
import subprocess
from pathlib import Path
from typing import Sequence

TEMPLATE = Path(__file__).resolve().parents[1] / 'launch' / 'slurm_array.sbatch'
EXIT_PREEMPTED = 75  # `fdx train` saved and stopped on SIGTERM / SIGUSR1 (sysexits' EX_TEMPFAIL): run it again
FINISHED_STATES = ('COMPLETED',)
FAILED_STATES = ('FAILED', 'CANCELLED', 'TIMEOUT', 'NODE_FAIL', 'OUT_OF_MEMORY', 'BOOT_FAIL', 'DEADLINE', 'PREEMPTED')


@dataclasses.dataclass(frozen=True)
class Resources:
    """What each array task asks for."""

    nodes: int = 1
    gpus_per_node: int = 0
    time: str = ''  # e.g. '1-00:00:00'; '' = the partition's default
    partition: str = ''
    account: str = ''
    sbatch: tuple[str, ...] = ()  # extra lines: '--qos=high', 'qos=high' or '#SBATCH --qos=high'
    signal_seconds: int = 120  # SIGTERM this long before the time limit (checkpoint, exit, requeue)

    def lines(self) -> list[str]:
        lines = [f'--gpus-per-node={self.gpus_per_node}'] if self.gpus_per_node else []
        lines += [f'--{key}={value}' for key in ('time', 'partition', 'account') if (value := getattr(self, key))]
        for line in (line.removeprefix('#SBATCH').strip() for line in self.sbatch):
            lines.append(line if line.startswith('-') else f'--{line}')  # 'qos=high' is '--qos=high'
        return [f'#SBATCH {line}' for line in lines]


def add_resource_flags(parser: argparse.ArgumentParser) -> None:
    """`--nodes`, `--gpus-per-node`, `--time`, `--partition`, `--account`, `--sbatch LINE`, `--signal-seconds`."""
    flags = parser.add_argument_group('SLURM resources')
    flags.add_argument('--nodes', type=int)
    flags.add_argument('--gpus-per-node', type=int)
    flags.add_argument('--time', help='time limit, e.g. 1-00:00:00')
    flags.add_argument('--partition')
    flags.add_argument('--account')
    flags.add_argument(
        '--sbatch', action='append', default=[], metavar='LINE', help="an extra #SBATCH line, e.g. qos=high"
    )
    flags.add_argument('--signal-seconds', type=int, help='SIGTERM this long before the time limit')


def resources_from(args: argparse.Namespace, defaults: dict | None = None) -> Resources:
    """`Resources` from `defaults` (e.g. a config's `launch` section) overridden by the flags given."""
    values = dict(defaults or {})
    fields = {f.name for f in dataclasses.fields(Resources)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise KeyError(f'config.launch: unknown keys {", ".join(unknown)} (valid: {", ".join(sorted(fields))})')
    for field in fields:
        value = getattr(args, field, None)
        if value not in (None, [], ()):
            values[field] = value
    values['sbatch'] = tuple(values.get('sbatch', ()))
    return Resources(**values)


@dataclasses.dataclass(frozen=True)
class Task:
    """One array task: its index, the command (argv) and its log file."""

    index: int
    command: Sequence[str]
    log: Path


def array_spec(indices: Sequence[int]) -> str:
    """`--array` value: sorted indices with runs compressed ('0-2,5')."""
    indices, parts, start = sorted(set(indices)), [], None
    for i, index in enumerate(indices):
        start = index if start is None else start
        if i + 1 == len(indices) or indices[i + 1] != index + 1:
            parts.append(str(start) if start == index else f'{start}-{index}')
            start = None
    return ','.join(parts)


def render_script(
    job_name: str, tasks: Sequence[Task], resources: Resources, script_log: Path, submit_dir: Path
) -> str:
    """The sbatch script of `tasks` (see `launch/slurm_array.sbatch`)."""
    if not tasks:
        raise ValueError('a SLURM array needs at least one task')
    if resources.nodes < 1:
        raise ValueError(f'--nodes must be >= 1, got {resources.nodes}')
    cases = '\n'.join(
        f'  {task.index}) log={shlex.quote(str(task.log))}; command=({shlex.join(map(str, task.command))}) ;;'
        for task in tasks
    )
    return string.Template(TEMPLATE.read_text()).substitute(
        job_name=job_name,
        array=array_spec([task.index for task in tasks]),
        nodes=resources.nodes,
        script_log=script_log,
        signal_seconds=resources.signal_seconds,
        sbatch_lines='\n'.join(resources.lines()),
        submit_dir=shlex.quote(str(submit_dir)),
        cases=cases,
        preempted_code=EXIT_PREEMPTED,
    )


def _require(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        raise FileNotFoundError(f'{program} not found on PATH: the SLURM backend needs the SLURM client commands')
    return path


def submit(script: Path, *extra: str) -> str:
    """`sbatch --parsable [extra] script` → the job id (ValueError with sbatch's message when it refuses)."""
    result = subprocess.run(
        [_require('sbatch'), '--parsable', *extra, str(script)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ValueError(f'sbatch {script} failed: {(result.stderr or result.stdout).strip()}')
    return result.stdout.strip().split(';')[0]


def _squeue(job_id: str) -> dict[int, str]:
    result = subprocess.run(
        [_require('squeue'), '-h', '-r', '-j', job_id, '-o', '%i|%T'], capture_output=True, text=True, check=False
    )
    states = {}
    for line in result.stdout.splitlines() if result.returncode == 0 else []:
        task_id, _, state = line.partition('|')
        match = re.fullmatch(rf'{re.escape(job_id)}_(\d+)', task_id.strip())
        if match:
            states[int(match[1])] = state.strip()
    return states


def _scontrol(job_id: str) -> dict[int, str]:
    result = subprocess.run(
        [_require('scontrol'), '-o', 'show', 'job', job_id], capture_output=True, text=True, check=False
    )
    states = {}
    for line in result.stdout.splitlines() if result.returncode == 0 else []:
        fields = dict(re.findall(r'(\w+)=(\S*)', line))
        if fields.get('ArrayJobId') == job_id and fields.get('ArrayTaskId', '').isdigit():
            states[int(fields['ArrayTaskId'])] = fields.get('JobState', 'UNKNOWN')
    return states


def _sacct(job_id: str) -> dict[int, str]:
    if shutil.which('sacct') is None:
        return {}
    result = subprocess.run(
        ['sacct', '-j', job_id, '-X', '-n', '-P', '-o', 'JobID,State'], capture_output=True, text=True, check=False
    )
    states = {}
    for line in result.stdout.splitlines() if result.returncode == 0 else []:
        task_id, _, state = line.partition('|')
        match = re.fullmatch(rf'{re.escape(job_id)}_(\d+)', task_id.strip())
        if match:
            states[int(match[1])] = state.split()[0] if state.strip() else 'UNKNOWN'
    return states


def task_states(job_id: str) -> dict[int, str]:
    """Array task index → SLURM state (PENDING, RUNNING, COMPLETED, FAILED, …) of every task SLURM still knows."""
    states = _sacct(job_id)
    states.update(_scontrol(job_id))
    states.update(_squeue(job_id))
    return states


def log_tail(path: Path, lines: int = 8) -> str:
    """The last `lines` lines of a log file ('' if there is none)."""
    try:
        return '\n'.join(path.read_text(errors='replace').splitlines()[-lines:])
    except OSError:
        return ''
