"""Ablation grids: expand a config's ``sweep()`` and run one training per point.

``fdx grid CONFIG_SPEC [--config.key=value …] [--root DIR] [--name NAME] [--dry-run] [--backend local|slurm]
[--only SUBSTRING] [--status]`` (the ``--config.*`` overrides apply to every point). Point ``i`` trains in
``<root>/<name>/<point_id>``; the trainer writes ``done.json`` there when it completes, so re-running the grid
skips finished points and relaunches unfinished ones in place (the trainer resumes from its checkpoints). Per-point
outcomes go to ``<root>/<name>/grid_status.json``.

The local backend runs ``python -m fdx.cli train ...`` for each point in turn. The SLURM backend (``fdx.slurm``)
writes ``<root>/<name>/slurm/array.sbatch``, one array task per unfinished point (task ``i`` = point ``i``, its log
``<workdir>/slurm.log``), submits it with ``sbatch --parsable`` and records the job in ``grid_status.json``;
``--status`` then shows every point pending / running / done / failed (with its log's tail). Resources come from
``--nodes``, ``--gpus-per-node``, ``--time``, ``--partition``, ``--account``, ``--sbatch LINE`` or the config's
``launch`` section (flags win). The TPU backend (``fdx.tpu``) runs point k on TPU VM slice k mod n (``--tpu
a,b --zone Z``) through ``gcloud``. The environment variable ``FDX_GRID_TRAIN_CMD`` (a shell-quoted command prefix,
e.g. ``python fake_train.py``) replaces ``python -m fdx.cli`` (used by tests).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from fdx import slurm, storage, tpu
from fdx.config import apply_overrides, config_from_module, import_config_file, parse_cli, render_value, split_spec

DONE_FILE = "done.json"
STATUS_FILE = "grid_status.json"
SLURM_LOG = "slurm.log"  # a point's log under the SLURM backend, in its workdir
TRAIN_CMD_ENV = "FDX_GRID_TRAIN_CMD"
_MAX_ID_BODY = 60  # characters after the "NNN-" prefix
_STDERR_TAIL_LINES = 20


@dataclasses.dataclass(frozen=True)
class Point:
    """One grid point: a readable, filesystem-safe id and its dotted overrides."""

    point_id: str
    overrides: dict


def _safe(text: str) -> str:
    """Maps ``text`` to ``[A-Za-z0-9._+-]`` characters (runs of others become ``_``)."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("_")


def _point_id(index: int, overrides: dict[str, Any]) -> str:
    """``NNN-leaf=value,...``; a long body is cut and suffixed with a stable hash."""
    body = ",".join(f"{key.rsplit('.', 1)[-1]}={_safe(str(value))}" for key, value in overrides.items())
    if len(body) > _MAX_ID_BODY:
        digest = hashlib.sha1(repr(list(overrides.items())).encode()).hexdigest()[:8]
        body = f"{body[: _MAX_ID_BODY - 9]}-{digest}"
    return f"{index:03d}-{body}" if body else f"{index:03d}"


def expand_sweep(spec: str, shared: Sequence[str] = ()) -> list[Point]:
    """Returns the points of ``sweep(arg)`` in the config file, all validated up front.

    ``shared`` holds ``--config.key=value`` overrides applied to every point (e.g. a data directory); they are part of
    each point's overrides but not of its id.
    """
    module, arg = import_config_file(spec)
    if not hasattr(module, "sweep"):
        raise ValueError(f"config file {module.__file__} defines no sweep(arg=None)")
    config = apply_overrides(config_from_module(module, arg), list(shared))
    shared_values = {}
    for item in shared:
        key = item.partition("=")[0].removeprefix("--config.").removeprefix("config.")
        value = config
        for part in key.split("."):
            value = value[part]
        shared_values[key] = value
    points = []
    for index, overrides in enumerate(module.sweep(arg)):
        point = Point(_point_id(index, overrides), {**shared_values, **overrides})
        try:
            apply_overrides(config, point.overrides)
        except (KeyError, ValueError) as e:
            raise type(e)(f"sweep point {point.point_id} of {module.__file__}: {e.args[0]}") from e
        points.append(point)
    if not points:
        raise ValueError(f"sweep({arg!r}) in {module.__file__} yielded no points")
    return points


def default_name(spec: str) -> str:
    """Grid name from the spec: the config file stem, plus ``-arg`` if given."""
    path, arg = split_spec(spec)
    return _safe(f"{path.stem}-{arg}" if arg else path.stem)


def point_command(spec: str, point: Point, root: str | os.PathLike, name: str) -> list[str]:
    """The ``fdx train`` argv that trains ``point`` in ``<root>/<name>/<point_id>``."""
    overrides = [f"--config.{key}={render_value(value)}" for key, value in point.overrides.items()]
    return ["fdx", "train", "--config", spec, *overrides, "--workdir", storage.join(root, name, point.point_id)]


def train_command(spec: str, point: Point, root: str | os.PathLike, name: str) -> list[str]:
    """``point_command`` with ``fdx`` replaced by ``$FDX_GRID_TRAIN_CMD`` or ``python -m fdx.cli``."""
    prefix = os.environ.get(TRAIN_CMD_ENV)
    executable = shlex.split(prefix) if prefix else [sys.executable, "-m", "fdx.cli"]
    return executable + point_command(spec, point, root, name)[1:]


def _run_point(spec: str, point: Point, root: str, name: str) -> dict[str, Any]:
    """Runs (or skips) one point; returns its status record."""
    workdir = Path(root, name, point.point_id)
    record = {
        "point_id": point.point_id,
        "status": "finished",
        "launch": None,
        "exit_code": None,
        "wall_s": None,
        "workdir": str(workdir),
    }
    if (workdir / DONE_FILE).exists():
        return record
    launch = "resumed" if workdir.exists() else "started"
    command = train_command(spec, point, root, name)
    print(f"[grid] {launch} {point.point_id}: {shlex.join(command)}", flush=True)
    tail: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL_LINES)
    start = time.monotonic()
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True, errors="replace") as proc:
        for line in proc.stderr:  # tee: show the trainer's stderr, keep its tail
            sys.stderr.write(line)
            tail.append(line)
    ok = proc.returncode == 0 and (workdir / DONE_FILE).exists()
    record.update(
        status=launch if ok else "failed",
        launch=launch,
        exit_code=proc.returncode,
        wall_s=round(time.monotonic() - start, 3),
    )
    if not ok:
        record["stderr_tail"] = "".join(tail)
    return record


def _write_status(path: Path, spec: str, records: list[dict[str, Any]], **fields: Any) -> None:
    """Atomically writes the grid status file (``fields``: the backend's own entries)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"config": spec, **fields, "points": records}, indent=2) + "\n")
    os.replace(tmp, path)


def _summary(records: list[dict[str, Any]]) -> str:
    """A fixed-width table: point id, status, exit code, wall time."""
    rows = [("point_id", "status", "exit", "wall_s")] + [
        (
            r["point_id"],
            r["status"],
            "-" if r["exit_code"] is None else str(r["exit_code"]),
            "-" if r["wall_s"] is None else f"{r['wall_s']:.1f}",
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def run_local(spec: str, points: list[Point], root: str, name: str) -> int:
    """Runs the points one after another; returns 0 iff all are finished."""
    status_path = Path(root, name, STATUS_FILE)
    records = []
    for point in points:
        records.append(_run_point(spec, point, root, name))
        _write_status(status_path, spec, records)
    print(_summary(records))
    print(f"[grid] status: {status_path}")
    return 0 if all(r["status"] != "failed" for r in records) else 1


def launch_resources(spec: str, shared: Sequence[str], args: argparse.Namespace) -> slurm.Resources:
    """The array's resources: the config's ``launch`` section overridden by the command's flags."""
    module, arg = import_config_file(spec)
    config = apply_overrides(config_from_module(module, arg), list(shared))
    return slurm.resources_from(args, dict(config.get("launch") or {}))


def _load_status(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def array_script(
    spec: str, points: list[tuple[int, Point]], grid_dir: Path, name: str, resources: slurm.Resources
) -> str:
    """The sbatch script of ``points``: task ``i`` trains point ``i``, logging to its workdir's ``slurm.log``."""
    tasks = [
        slurm.Task(i, train_command(spec, p, grid_dir.parent, name), grid_dir / p.point_id / SLURM_LOG)
        for i, p in points
    ]
    return slurm.render_script(f"fdx-{name}", tasks, resources, grid_dir / "slurm" / "%A_%a.out", Path.cwd())


def run_slurm(spec: str, points: list[tuple[int, Point]], root: str, name: str, resources: slurm.Resources) -> int:
    """Submits the unfinished points of ``points`` ((index in the grid, point)) as one job array; returns 0."""
    grid_dir = Path(root, name).absolute()
    status_path = grid_dir / STATUS_FILE
    todo = [(i, p) for i, p in points if not (grid_dir / p.point_id / DONE_FILE).exists()]
    if not todo:
        print(f"[grid] every selected point of {grid_dir} is finished; nothing to submit")
        return 0
    script = grid_dir / "slurm" / "array.sbatch"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(array_script(spec, todo, grid_dir, name, resources))
    job_id = slurm.submit(script)
    status = _load_status(status_path)
    records = {r["point_id"]: r for r in status.get("points", []) if status.get("backend") == "slurm"}
    for i, point in points:
        record = records.setdefault(point.point_id, {"point_id": point.point_id, "index": i})
        record["workdir"] = str(grid_dir / point.point_id)
    for i, point in todo:
        records[point.point_id].update(job=job_id, submitted=time.strftime("%Y-%m-%dT%H:%M:%S"))
    ordered = sorted(records.values(), key=lambda r: r["index"])
    _write_status(status_path, spec, ordered, backend="slurm", script=str(script))
    print(f"[grid] submitted job array {job_id} ({slurm.array_spec([i for i, _ in todo])}) from {script}")
    print(f"[grid] fdx grid {spec} --root {root} --name {name} --status   # shows each point")
    return 0


def slurm_log_exit(log: Path) -> tuple[int, str] | None:
    """(exit code, last line of the task's own output) of the last run in a point's ``slurm.log``, or None while it
    runs (or never ran)."""
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    starts = [i for i, line in enumerate(lines) if line.startswith("[fdx] array task ")]
    for i in range(len(lines) - 1, starts[-1] if starts else -1, -1):
        match = re.match(r"\[fdx\] exit (\d+)", lines[i])
        if match:
            output = [line for line in lines[:i] if line.strip() and not line.startswith("[fdx]")]
            return int(match[1]), output[-1].strip() if output else ""
    return None


def point_states(root: str, name: str) -> list[dict[str, Any]]:
    """Every point of a SLURM grid: ``state`` pending | running | done | failed | unknown, its SLURM task state, and
    for failed points the tail of its log."""
    status_path = Path(root, name, STATUS_FILE)
    status = _load_status(status_path)
    if status.get("backend") != "slurm":
        raise ValueError(f"{status_path}: no SLURM grid here (submit it with --backend slurm first)")
    states: dict[str, dict[int, str]] = {}
    out = []
    for record in status["points"]:
        workdir, job = Path(record["workdir"]), record.get("job")
        if job is not None and job not in states:
            states[job] = slurm.task_states(job)
        task_state = states.get(job, {}).get(record["index"]) if job else None
        log = workdir / SLURM_LOG
        if (workdir / DONE_FILE).exists():
            state = "done"
        elif job is None:
            state = "not submitted"
        elif task_state is None:  # SLURM has forgotten the task: its log tells how it ended
            ended = slurm_log_exit(log)
            state = "failed" if ended and ended[0] not in (0, slurm.EXIT_PREEMPTED) else "unknown"
        elif task_state in slurm.FAILED_STATES or task_state in slurm.FINISHED_STATES:
            state = "failed"  # a completed task without done.json failed too
        elif task_state.startswith("RUNNING") or task_state == "COMPLETING":
            state = "running"
        else:
            state = "pending"
        row = {"point_id": record["point_id"], "state": state, "job": f"{job}_{record['index']}" if job else "-"}
        row["slurm"] = task_state or "-"
        if state == "failed":
            row["log_tail"] = slurm.log_tail(log)
        out.append(row)
    return out


def print_states(rows: list[dict[str, Any]]) -> int:
    """Prints the ``point_states`` table (and failed points' log tails); 1 if any point failed."""
    table = [("point_id", "state", "job", "slurm")] + [(r["point_id"], r["state"], r["job"], r["slurm"]) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    print("\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table))
    for row in rows:
        if row["state"] == "failed":
            print(f"\n[{row['point_id']}] {row['job']} failed; log tail:\n{row['log_tail'] or '(no log)'}")
    return 1 if any(r["state"] == "failed" for r in rows) else 0


def run_tpu(
    spec: str, points: list[tuple[int, Point]], root: str, name: str, slice_: tpu.Slice, local_root: str, dry_run: bool
) -> int:
    """Runs the points on the TPU VM slices of ``slice_`` (``fdx.tpu``), point k on slice k mod n, each slice's
    points one after another and the slices in parallel; returns 0 iff every training exited 0."""
    import concurrent.futures
    import tempfile

    if not root.startswith("/") and not storage.is_cloud(root):
        raise ValueError(
            f"--backend tpu: --root {root!r} must be a gs:// URL or an absolute path that every TPU VM worker mounts"
        )
    local = Path(local_root, name).absolute()
    archive = Path(tempfile.gettempdir()) / f"fdx-src-{name}.tar.gz"
    assigned = {slice_name: [] for slice_name in slice_.names}
    for k, (_, point) in enumerate(points):
        assigned[slice_.names[k % len(slice_.names)]].append(point)
    commands = {
        slice_name: tpu.slice_commands(
            slice_, slice_name, archive, [point_command(spec, p, root, name) for p in assigned[slice_name]]
        )
        for slice_name in slice_.names
        if assigned[slice_name]
    }
    if dry_run:
        print(shlex.join(tpu.archive_command(archive)))
        for slice_name, slice_commands in commands.items():
            print(f"# slice {slice_name}: {', '.join(p.point_id for p in assigned[slice_name])}")
            print("\n".join(shlex.join(argv) for _, argv in slice_commands))
        return 0
    subprocess.run(tpu.archive_command(archive), check=True)
    with concurrent.futures.ThreadPoolExecutor(len(commands)) as pool:
        futures = {n: pool.submit(tpu.run_slice, slice_, n, c, local / "tpu" / f"{n}.log") for n, c in commands.items()}
        codes = {n: future.result() for n, future in futures.items()}
    records = []
    for slice_name, slice_points in assigned.items():
        for point, code in zip(slice_points, codes.get(slice_name, [])):
            records.append(
                {
                    "point_id": point.point_id,
                    "status": "finished" if code == 0 else "failed",
                    "exit_code": code,
                    "slice": slice_name,
                    "workdir": storage.join(root, name, point.point_id),
                    "log": str(local / "tpu" / f"{slice_name}.log"),
                }
            )
    records.sort(key=lambda r: r["point_id"])
    _write_status(local / STATUS_FILE, spec, records, backend="tpu")
    print(_summary([{**r, "wall_s": None} for r in records]))
    return 0 if all(r["exit_code"] == 0 for r in records) else 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``fdx grid``; ``argv`` holds the arguments after ``grid``."""
    parser = argparse.ArgumentParser(prog="fdx grid", description=__doc__.split("\n\n")[0])
    parser.add_argument("config", metavar="CONFIG_SPEC", help="path/to/config.py[:arg] defining sweep()")
    parser.add_argument("--root", default="runs", help="runs root directory (default: ./runs)")
    parser.add_argument("--name", help="grid name (default: config file stem, plus -arg)")
    parser.add_argument("--dry-run", action="store_true", help="print one command per point (or the sbatch script)")
    parser.add_argument(
        "--backend",
        choices=["local", "slurm", "tpu"],
        default="local",
        help="local: points one after another here; slurm: one job array (fdx.slurm); tpu: TPU VM slices (fdx.tpu)",
    )
    parser.add_argument("--only", metavar="POINT_ID_SUBSTRING", help="run only points whose id contains this")
    parser.add_argument("--status", action="store_true", help="show the state of each point of a SLURM grid")
    slurm.add_resource_flags(parser)
    tpu_flags = parser.add_argument_group("TPU VM slices (--backend tpu)")
    tpu_flags.add_argument("--tpu", help="comma-separated TPU VM (slice) names; point k runs on slice k mod n")
    tpu_flags.add_argument("--zone")
    tpu_flags.add_argument("--project", default="")
    tpu_flags.add_argument("--remote-dir", default="~/fdx", help="where the code goes on every worker")
    tpu_flags.add_argument("--queued-resource", action="store_true", help="create each slice as a queued resource")
    tpu_flags.add_argument("--accelerator-type", default="", help="with --queued-resource, e.g. v4-32")
    tpu_flags.add_argument("--runtime-version", default="", help="with --queued-resource, e.g. tpu-ubuntu2204-base")
    tpu_flags.add_argument("--local-root", default="runs", help="this host's grid status and slice logs")
    _, shared, rest = parse_cli(argv or [])
    args = parser.parse_args(rest)
    name = args.name or default_name(args.config)
    if args.status:
        return print_states(point_states(args.root, name))
    indexed = list(enumerate(expand_sweep(args.config, shared)))
    points = [(i, p) for i, p in indexed if args.only is None or args.only in p.point_id]
    if not points:
        raise ValueError(f"--only {args.only!r}: no point id contains it (--dry-run lists them)")
    if args.backend == "slurm":
        resources = launch_resources(args.config, shared, args)
        if args.dry_run:
            print(array_script(args.config, points, Path(args.root, name).absolute(), name, resources))
            return 0
        return run_slurm(args.config, points, args.root, name, resources)
    if args.backend == "tpu":
        slice_ = tpu.Slice(
            tuple(n for n in (args.tpu or "").split(",") if n),
            args.zone or "",
            args.project,
            args.remote_dir,
            args.queued_resource,
            args.accelerator_type,
            args.runtime_version,
        )
        return run_tpu(args.config, points, args.root, name, slice_, args.local_root, args.dry_run)
    if args.dry_run:
        for _, point in points:
            print(shlex.join(point_command(args.config, point, args.root, name)))
        return 0
    return run_local(args.config, [p for _, p in points], args.root, name)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
