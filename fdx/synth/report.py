"""Face-detection report of an `fdx synth` output: how often `fdx prepare`'s detector finds a face in its videos.

For each tree present under the output (`dfdm`, `ffpp`, `celebdf`), the tree is scanned as `fdx prepare` scans it
(`fdx.input.layouts`) with every quality its layout supports that exists on disk (and, for FF++, every manipulation
method folder present, in `layouts.FFPP_METHODS` order). Every video of every quality gets `frames` evenly spaced
frames (`sample_indices(mode='even')`, as `prepare`), decoded and passed to dlib's detector (`DlibDetector`, as
`prepare`); a frame counts as found when it has a face. The counts are aggregated per (tree, class, quality) into
rows with the rate of frames with a face; the report passes when every row's rate reaches the threshold.

A video (quality) that cannot be decoded is a problem `(tree, video id, quality, reason)` and is left out of its row;
a truncated video counts the frames it decoded and is a problem too. What the scanners report (`Layout.problems`)
and trees that cannot be scanned are kept apart as `layout_problems`. Videos are processed in parallel by a spawn
`multiprocessing` pool, one detector per worker; the report's order does not depend on the scheduling.
"""

import json
import multiprocessing
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fdx.input import faces, layouts, video

TREES = ('dfdm', 'ffpp', 'celebdf')


def _tree_options(tree: str, root: Path) -> dict[str, Any]:
    """Scanner options of a tree: the layout's qualities present on disk (for FF++: present for the reals and every
    method folder present, in `FFPP_METHODS` order); FF++ masks are not needed."""
    if tree == 'dfdm':
        qualities = tuple(q for q in layouts.DFDM_QUALITIES if (root / f'DFDM_{q}').is_dir() or (root / q).is_dir())
        return {'qualities': qualities}
    if tree == 'ffpp':
        manipulated = root / 'manipulated_sequences'
        methods = tuple(m for m in layouts.FFPP_METHODS if (manipulated / m).is_dir())
        bases = [root / 'original_sequences' / 'youtube'] + [manipulated / m for m in methods]
        qualities = tuple(q for q in layouts.FFPP_QUALITIES if all((base / q / 'videos').is_dir() for base in bases))
        return {'qualities': qualities, 'methods': methods, 'masks': False}
    return {'qualities': ('raw',)}


_detector: faces.FaceDetector | None = None  # one per worker process (loading the landmark model takes a second)


def _count_faces(task: tuple[dict[str, str], int]) -> dict[str, Any]:
    """One video: per quality, the frames sampled and decoded, those with a face, or the reason it failed; and the
    seconds it took (without loading the detector)."""
    global _detector
    if _detector is None:
        _detector = faces.DlibDetector()
        _detector.load()  # outside the video's time
    start = time.perf_counter()
    paths, frames = task
    results = []
    for quality, path in paths.items():
        result = {'quality': quality, 'frames': 0, 'faces': 0, 'error': None, 'warning': None}
        try:
            indices = video.sample_indices(video.probe(path).frame_count, mode='even', count=frames)
            decoded = video.read_frames(path, indices)
        except video.VideoError as error:
            result['error'] = error.reason
        else:
            if decoded.truncated:
                result['warning'] = f'truncated: decoded {len(decoded.frames)} of {decoded.wanted} sampled frames'
            result['frames'] = len(decoded.frames)
            result['faces'] = sum(
                faces.largest_face(_detector.detect(rgb)) is not None for rgb in decoded.frames.values()
            )
        results.append(result)
    return {'qualities': results, 'seconds': time.perf_counter() - start}


def face_report(
    out: Path,
    frames: int = 8,
    workers: int = 2,
    threshold: float = 0.95,
    progress: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """The face-detection report of the synth output `out` (see the module doc); also written to `out/report.json`.

    Keys: `frames_per_video`, `threshold`, `trees` (tree → root, classes, qualities, methods, videos scanned),
    `rows` (tree, class, quality, videos, frames, faces, rate: faces / frames, None without frames) in tree, class
    and quality order, `failing` (the rows whose rate is below `threshold` or None), `passes`, `problems` (tree,
    video_id, quality, reason), `layout_problems` (tree, item, reason), `seconds` (all of it), `seconds_per_video`
    (wall time of the detection phase, pool start included, per video) and `worker_seconds_per_video` (one worker's
    time on a video, all its qualities, without the pool start or the detector's loading).
    """
    out = Path(out)
    if not out.is_dir():
        raise FileNotFoundError(f'synth output {out} does not exist')
    if frames < 1 or workers < 1:
        raise ValueError(f'frames and workers must be >= 1 (got {frames}, {workers})')
    start = time.perf_counter()
    scanned: list[tuple[str, layouts.Layout]] = []
    trees: dict[str, dict[str, Any]] = {}
    layout_problems: list[dict[str, str]] = []
    for tree in TREES:
        root = out / tree
        if not root.is_dir():
            continue
        options = _tree_options(tree, root)
        try:
            if not options['qualities']:
                raise ValueError(f'no quality folder of the {tree} layout under {root}')
            layout = layouts.scan(tree, root, **options)
        except ValueError as error:
            layout_problems.append({'tree': tree, 'item': str(root), 'reason': str(error)})
            progress(f'face report: {tree} not scanned: {error}')
            continue
        layout_problems.extend({'tree': tree, 'item': item, 'reason': reason} for item, reason in layout.problems)
        scanned.append((tree, layout))
        trees[tree] = {
            'root': str(root),
            'classes': list(layout.class_names),
            'qualities': list(layout.qualities),
            'methods': list(options.get('methods', ())),
            'videos': len(layout.jobs),
        }
    units = [(tree, job) for tree, layout in scanned for job in layout.jobs]
    tasks = [
        ({q: str(job.paths[q]) for q in layout.qualities}, frames) for tree, layout in scanned for job in layout.jobs
    ]
    per_tree = ', '.join(f'{tree} {info["videos"]}' for tree, info in trees.items()) or 'no tree'
    progress(f'face report: {len(tasks)} videos ({per_tree}), {frames} frames each, {workers} workers')
    detect_start = time.perf_counter()
    if workers > 1 and len(tasks) > 1:
        with multiprocessing.get_context('spawn').Pool(min(workers, len(tasks))) as pool:
            results = pool.map(_count_faces, tasks, chunksize=1)  # in task order
    else:
        results = [_count_faces(task) for task in tasks]
    detect_seconds = time.perf_counter() - detect_start

    counts: dict[tuple[str, int, str], list[int]] = {}  # (tree, class id, quality) → videos, frames, faces
    problems: list[dict[str, Any]] = []
    for (tree, job), per_video in zip(units, results):
        for result in per_video['qualities']:
            if result['error'] is not None or result['warning'] is not None:
                reason = result['error'] or result['warning']
                problems.append(
                    {'tree': tree, 'video_id': job.video_id, 'quality': result['quality'], 'reason': reason}
                )
            if result['error'] is not None:
                continue
            row = counts.setdefault((tree, job.class_id, result['quality']), [0, 0, 0])
            row[0] += 1
            row[1] += result['frames']
            row[2] += result['faces']
    rows = []
    for tree, layout in scanned:
        for class_id, name in enumerate(layout.class_names):
            for quality in layout.qualities:
                videos, sampled, found = counts.get((tree, class_id, quality), (0, 0, 0))
                rate = found / sampled if sampled else None
                rows.append(
                    {
                        'tree': tree,
                        'class': name,
                        'quality': quality,
                        'videos': videos,
                        'frames': sampled,
                        'faces': found,
                        'rate': rate,
                    }
                )
    failing = [row for row in rows if row['rate'] is None or row['rate'] < threshold]
    seconds = time.perf_counter() - start
    report = {
        'frames_per_video': frames,
        'threshold': threshold,
        'trees': trees,
        'rows': rows,
        'failing': failing,
        'passes': bool(rows) and not failing,
        'problems': problems,
        'layout_problems': layout_problems,
        'workers': workers,
        'seconds': round(seconds, 2),
        'seconds_per_video': round(detect_seconds / len(tasks), 4) if tasks else None,
        'worker_seconds_per_video': round(sum(r['seconds'] for r in results) / len(tasks), 4) if tasks else None,
    }
    (out / 'report.json').write_text(json.dumps(report, indent=2))
    progress(
        f'face report: {"PASS" if report["passes"] else "FAIL"}, {len(failing)} of {len(rows)} rows below '
        f'{threshold:.0%}, {len(problems)} problems ({seconds:.1f} s; per video {report["seconds_per_video"]} s, '
        f'{report["worker_seconds_per_video"]} s in a worker)'
    )
    return report


def _percent(rate: float | None) -> str:
    return '—' if rate is None else f'{100 * rate:.1f}'


def format_report(report: dict[str, Any]) -> str:
    """The report as a markdown table (one line per row, in the report's order) and a PASS/FAIL line."""
    lines = ['| tree | class | quality | videos | frames | faces found % |', '|---|---|---|---:|---:|---:|']
    lines += [
        f'| {r["tree"]} | {r["class"]} | {r["quality"]} | {r["videos"]} | {r["frames"]} | {_percent(r["rate"])} |'
        for r in report['rows']
    ]
    threshold = f'{100 * report["threshold"]:g}%'
    if report['passes']:
        lines.append(f'PASS: faces found in at least {threshold} of the sampled frames of every row.')
    elif not report['rows']:
        lines.append('FAIL: no tree to report on.')
    else:
        failing = ', '.join(
            f'{r["tree"]}/{r["class"]}/{r["quality"]} ({_percent(r["rate"])}%)' for r in report['failing']
        )
        lines.append(f'FAIL: {len(report["failing"])} of {len(report["rows"])} rows below {threshold}: {failing}.')
    if report['problems']:
        listed = '; '.join(f'{p["tree"]} {p["video_id"]} ({p["quality"]}): {p["reason"]}' for p in report['problems'])
        count = len(report['problems'])
        lines.append(f'{count} video{"s" if count > 1 else ""} not fully decoded: {listed}.')
    return '\n'.join(lines)
