"""`fdx prepare DATASET --src RAW_DIR --out DATA_DIR`: raw videos → face-crop records (TFDS, array_record).

DATASET is any layout of `fdx.input.layouts` (FF++, Celeb-DF, DFDM and the cross-dataset sets); `--check` only scans
the layout and prints what it found per split and class and every problem, without decoding a video.

Per video (in parallel, resumable): decode the sampled frames of every quality, detect the largest face (or, with
`--faces all`, every face track: `_detect`) and its 68 landmarks on the best quality, enlarge the box 1.3×, and cut
that same window from every quality and from the manipulation-mask video. Each video's crops go to
`DATA_DIR/_extract/<dataset>/<config>/<video>/` (PNG/JPEG files and a `meta.json`, written atomically), so an
interrupted run continues where it stopped. The TFDS builder of `fdx.input.tfds_builders` then writes the records;
a per-split metadata index and `manifest.json` (every skipped video or frame with its reason, counts per split and
class) complete the output. The exit status is non-zero only when nothing usable was produced."""

import argparse
import dataclasses
import functools
import inspect
import json
import multiprocessing
import os
import shutil
import sys
import time
import typing
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np
from tqdm import tqdm

from fdx import slurm
from fdx.input import faces, layouts, records, video

DATASETS = tuple(layouts.SCANNERS)


@dataclasses.dataclass(frozen=True)
class Options:
    """What is extracted from each video (part of the dataset's identity: it names the TFDS builder config)."""

    sampling: str = 'even'  # even | runs | all (fdx.input.video.sample_indices)
    frames: int = 32  # even: frames per video; runs: number of runs
    run_length: int = 1  # runs: consecutive frames per run
    max_frames: int = 0  # all: cap (0 = none)
    crop_size: int = 320  # stored crops are square, this many pixels
    scale: float = 1.3  # face box enlargement
    image_format: str = 'png'  # png | jpg
    jpeg_quality: int = 95
    faces: str = 'largest'  # largest | all (one record per face track; see `_detect`)
    min_face_ratio: float = 0.5  # all: faces of at least this fraction of the frame's largest face area (SBI)
    min_face_size: int = 0  # all: and box sides of at least this many pixels
    detect_size: int = 0  # search faces on frames shrunk to this longer side (0: full size; faces.DlibDetector)
    detect_every: int = 1  # largest: search every k-th sampled frame, follow the face in between (faces.follow)

    def __post_init__(self):
        if self.detect_every < 1:
            raise ValueError(
                f'--detect-every (detect_every) must be >= 1, got {self.detect_every}: 1 searches every frame'
            )
        if self.detect_size < 0:
            raise ValueError(
                f'--detect-size (detect_size) must be >= 0, got {self.detect_size}: 0 searches at full size'
            )
        if self.detect_every > 1 and self.faces != 'largest':
            raise ValueError(
                '--detect-every > 1 follows one face: it needs --faces largest (new faces appear only on search frames)'
            )

    def name(self) -> str:
        sampling = {
            'even': f'even{self.frames}',
            'runs': f'runs{self.frames}x{self.run_length}',
            'all': f'all{self.max_frames or ""}',
        }[self.sampling]
        scale = f'{self.scale:g}'.replace('.', 'p')
        fmt = self.image_format if self.image_format == 'png' else f'jpg{self.jpeg_quality}'
        name = f'{sampling}-s{self.crop_size}-x{scale}-{fmt}'
        if self.faces == 'all':
            name += f'-faces{self.min_face_ratio:g}'.replace('.', 'p') + (
                f'm{self.min_face_size}' * bool(self.min_face_size)
            )
        if self.detect_size:
            name += f'-det{self.detect_size}'
        if self.detect_every > 1:
            name += f'-every{self.detect_every}'
        return name


def safe_name(video_id: str) -> str:
    """A video's folder name in the extraction cache."""
    return video_id.replace('/', '__')


def extracted(cache: Path, job: layouts.VideoJob) -> bool:
    """Whether `job`'s video is in the extraction cache (its `meta.json` is written last, atomically)."""
    return (cache / safe_name(job.video_id) / 'meta.json').is_file()


def extract_video(
    job: layouts.VideoJob,
    qualities: Sequence[str],
    options: Options,
    detector: faces.FaceDetector,
    out: Path,
    decode_threads: int = 0,
) -> dict[str, Any]:
    """Crops of one video into `out` (created atomically); returns its meta (records, or an `error`).
    `decode_threads`: `video.read_frames`'s."""
    tmp = out.with_name(out.name + '.tmp')
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    meta = {'video_id': job.video_id, 'records': [], 'dropped': [], 'warnings': []}
    try:
        meta['records'] = _extract(job, qualities, options, detector, tmp, meta, decode_threads)
    except video.VideoError as e:
        meta['error'] = str(e)
    (tmp / 'meta.json').write_text(json.dumps(meta))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return meta


def _extract(job, qualities, options, detector, tmp: Path, meta: dict, decode_threads: int) -> list[dict[str, Any]]:
    missing = [q for q in qualities if q not in job.paths]
    if missing:
        raise video.VideoError(job.video_id, f'missing qualities {", ".join(missing)}')
    counts = {q: video.probe(job.paths[q]).frame_count for q in qualities}
    frame_count = min(counts.values())
    if len(set(counts.values())) > 1:
        meta['warnings'].append(f'frame counts differ between qualities {counts}; using the first {frame_count}')
    indices = video.sample_indices(
        frame_count,
        mode=options.sampling,
        count=options.frames,
        run_length=options.run_length,
        max_frames=options.max_frames,
    )
    decoded = {q: video.read_frames(job.paths[q], indices, decode_threads).frames for q in qualities}
    masks = {}
    if job.mask is not None:
        try:
            masks = video.read_frames(job.mask, indices, decode_threads).frames
        except video.VideoError as e:
            meta['warnings'].append(f'mask video unusable ({e.reason}); records have no mask')
    out = []
    for crop in face_crops(decoded, indices, qualities, options, detector, meta):
        index, track, window = crop.frame_index, crop.track, crop.window
        prefix = f'{index:06d}' if options.faces == 'largest' else f'{index:06d}_f{track}'
        files = {}
        for q in qualities:
            files[q] = f'{prefix}_{q}.{options.image_format}'
            (tmp / files[q]).write_bytes(crop.encoded[q])
        if index in masks:
            mask = faces.crop(channel_max(masks[index]), window, options.crop_size)
            files['mask'] = f'{prefix}_mask.png'
            (tmp / files['mask']).write_bytes(records.encode_image(mask, 'png'))
        elif job.mask is not None and masks and track == 0:
            meta['warnings'].append(f'mask frame {index} not decoded')
        out.append(
            {
                'frame_index': index,
                'face': track,
                'files': files,
                'landmarks': crop.landmarks.tolist(),
                'box': [float(v) for v in window],
            }
        )
    if not out:
        reasons = sorted({reason for _, reason in meta['dropped']})
        raise video.VideoError(job.video_id, f'no usable frame among {len(indices)} sampled ({"; ".join(reasons)})')
    return out


def channel_max(frame: np.ndarray) -> np.ndarray:
    """[H, W, C] → [H, W], the maximum over channels (equal to `frame.max(axis=-1)`, ~15× faster: numpy reduces a
    short last axis slowly)."""
    return functools.reduce(np.maximum, (frame[..., c] for c in range(frame.shape[-1])))


class FaceCrop(NamedTuple):
    """One face of one sampled frame as `fdx prepare` stores it: the crop of every quality, encoded in the
    dataset's image format, its landmarks in crop pixels and its window in frame pixels."""

    frame_index: int
    track: int
    window: np.ndarray
    encoded: dict[str, bytes]
    landmarks: np.ndarray


def face_crops(decoded: dict, indices, qualities, options: Options, detector: faces.FaceDetector, meta: dict):
    """The `FaceCrop`s of decoded frames ({quality: {frame index: RGB frame}}), in frame order; frames without a
    face (or not in every quality) go to `meta['dropped']` with their reason. `fdx detect` crops new videos with
    this too, so its inputs are the records' pixels."""
    reference = qualities[0]
    for index, face, track in _detect(decoded, indices, qualities, options, detector, meta):
        window = faces.crop_window(face.box, decoded[reference][index].shape, options.scale)
        encoded = {
            q: records.encode_image(
                faces.crop(decoded[q][index], window, options.crop_size), options.image_format, options.jpeg_quality
            )
            for q in qualities
        }
        landmarks = faces.landmarks_to_crop(face.landmarks, window, options.crop_size)
        yield FaceCrop(int(index), int(track), window, encoded, landmarks)


def _detect(decoded: dict, indices, qualities, options: Options, detector: faces.FaceDetector, meta: dict):
    """(frame index, face, track number) of every face to crop, in frame order.

    `options.faces` 'largest': the largest face of each frame, track 0 (a single-face dataset's subject).
    'all': every face of at least `min_face_ratio` × the frame's largest area and `min_face_size` pixels, linked
    into tracks across the sampled frames by box overlap (`faces.track_faces`): multi-face videos (DFDC, FFIW) give
    one record per face and frame, and evaluation scores each track and the video by the maximum over its tracks
    (`fdx.evaluate`, `eval.face_aggregation`). Frames that are not in every quality or have no face are dropped
    with their reason.

    `options.detect_every` k > 1 searches the 1st, (k+1)-th, … sampled frame and follows the face into the k - 1
    sampled frames after each (`_search_and_follow`).
    """
    usable = []
    for index in indices:
        if any(index not in decoded[q] for q in qualities):
            meta['dropped'].append([index, 'frame not decoded in every quality (truncated video)'])
        else:
            usable.append(index)
    references = [decoded[qualities[0]][index] for index in usable]
    if options.detect_every == 1:
        found_per_frame = detector.detect_frames(references)
    else:
        found_per_frame = _search_and_follow(detector, references, options.detect_every)
    frames, chosen = [], []
    for index, found in zip(usable, found_per_frame):
        if options.faces == 'largest':
            found = [faces.largest_face(found)] if found else []
        else:
            found = faces.large_faces(found, options.min_face_ratio, options.min_face_size)
        if not found:
            meta['dropped'].append([index, 'no face found'])
            continue
        frames.append(index)
        chosen.append(found)
    tracks = faces.track_faces(chosen) if options.faces == 'all' else [[0] for _ in chosen]
    for index, found, numbers in zip(frames, chosen, tracks):
        yield from ((index, face, track) for face, track in zip(found, numbers))


def _search_and_follow(detector: faces.FaceDetector, frames: list[np.ndarray], every: int) -> list[list[faces.Face]]:
    """The faces of each frame: searched on the 1st, (every+1)-th, … frame, the largest followed into the frames
    between (`faces.follow`); a frame whose face cannot be followed, or after a frame without a face, is searched."""
    found: list[list[faces.Face]] = []
    since_search = 0
    for frame in frames:
        followed = None
        if since_search % every and found and found[-1]:
            followed = faces.follow(detector, frame, faces.largest_face(found[-1]))
        if followed is None:
            since_search = 0
        found.append([followed] if followed is not None else detector.detect(frame))
        since_search += 1
    return found


_detector: faces.FaceDetector | None = None  # one per worker process (loading the landmark model takes a second)


def _work(args) -> None:
    global _detector
    if _detector is None or _detector.detect_size != args[2].detect_size:
        _detector = faces.DlibDetector(detect_size=args[2].detect_size)
    extract_video(*args[:3], _detector, *args[3:])


def extract_all(
    layout: layouts.Layout, options: Options, cache: Path, workers: int = 1, progress: bool = True
) -> dict[str, dict[str, Any]]:
    """Extracts every job not yet in `cache` (in parallel); returns the metas of all jobs."""
    cache.mkdir(parents=True, exist_ok=True)
    todo = [job for job in layout.jobs if not extracted(cache, job)]
    parallel = workers > 1 and len(todo) > 1
    # each worker process decodes on a core of its own: one decoder thread (OpenCV's default is one per core)
    args = [(job, layout.qualities, options, cache / safe_name(job.video_id), int(parallel)) for job in todo]
    bar = tqdm(
        total=len(layout.jobs),
        initial=len(layout.jobs) - len(todo),
        unit='video',
        disable=not progress,
        desc=f'extracting {layout.dataset}',
    )
    if parallel:
        with multiprocessing.get_context('spawn').Pool(workers) as pool:
            for _ in pool.imap_unordered(_work, args):
                bar.update()
    else:
        for arg in args:
            _work(arg)
            bar.update()
    bar.close()
    return {
        job.video_id: json.loads((cache / safe_name(job.video_id) / 'meta.json').read_text()) for job in layout.jobs
    }


def load_record(cache: Path, job: layouts.VideoJob, qualities: Sequence[str], item: dict, video_index: int) -> dict:
    """One TFDS example from an extracted frame."""
    folder = cache / safe_name(job.video_id)
    example = {records.image_key(q): (folder / item['files'][q]).read_bytes() for q in qualities}
    example.update(
        mask=(folder / item['files']['mask']).read_bytes() if 'mask' in item['files'] else b'',
        landmarks=np.asarray(item['landmarks'], np.float32),
        box=np.asarray(item['box'], np.float32),
        label=job.label,
        class_id=job.class_id,
        video_id=job.video_id,
        video_index=video_index,
        frame_index=item['frame_index'],
        face_index=item.get('face', 0),
        source_id=job.source_id,
    )
    return example


def scanner_defaults(dataset: str) -> dict[str, Any]:
    """The keyword options of `dataset`'s scanner (`fdx.input.layouts.SCANNERS`) and their defaults."""
    parameters = inspect.signature(layouts.SCANNERS[dataset]).parameters.values()
    return {p.name: p.default for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _parse_option(hint, text: str):
    """`text` as a value of the annotated type: tuples comma-separated, bools true/false/1/0, paths as strings."""
    if typing.get_origin(hint) is tuple:
        return tuple(_parse_option(typing.get_args(hint)[0], v) for v in text.split(',') if v)
    if hint is bool:
        if text.lower() not in ('true', 'false', '1', '0'):
            raise ValueError(text)
        return text.lower() in ('true', '1')
    return hint(text) if hint in (int, float) else text


def layout_options(dataset: str, pairs: Sequence[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings (`fdx prepare --option`) → keyword options of `dataset`'s scanner, typed by its
    annotations. Raises ValueError naming an unknown key (with the valid ones) or a value of the wrong type."""
    defaults = scanner_defaults(dataset)
    hints = typing.get_type_hints(layouts.SCANNERS[dataset])
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition('=')
        if not sep or key not in defaults:
            raise ValueError(
                f'--option {pair!r}: expected KEY=VALUE with KEY one of {", ".join(defaults)} ({dataset} layout)'
            )
        try:
            options[key] = _parse_option(hints[key], value)
        except ValueError:
            raise ValueError(f'--option {pair!r}: {key} takes a value like {defaults[key]!r}') from None
    return options


def check(dataset: str, src: Path, scan_options: dict[str, Any]) -> int:
    """`fdx prepare DATASET --src DIR --check`: scans the layout (no video is opened) and prints the videos found
    per split and class and every problem; exit status 1 when no video would be prepared."""
    layout = layouts.scan(dataset, src, **scan_options)
    counts: dict[str, dict[str, int]] = {}
    for job in layout.jobs:
        by_class = counts.setdefault(job.split, {})
        by_class[layout.class_names[job.class_id]] = by_class.get(layout.class_names[job.class_id], 0) + 1
    print(f'{dataset} layout at {src}: {len(layout.jobs)} videos, qualities {", ".join(layout.qualities)}')
    for split, by_class in sorted(counts.items()):
        print(f'  {split}: ' + ', '.join(f'{name}={by_class.get(name, 0)}' for name in layout.class_names))
    print(f'  problems: {len(layout.problems)}')
    for item, reason in layout.problems:
        print(f'    {item}: {reason}')
    return 0 if layout.jobs else 1


def main(argv: Sequence[str]) -> int:
    """`fdx prepare DATASET --src RAW_DIR --out DATA_DIR [options]` or `fdx prepare DATASET --src RAW_DIR --check`."""
    from fdx.input import tfds_builders

    parser = argparse.ArgumentParser(prog='fdx prepare', description=__doc__.split('\n\n')[0])
    parser.add_argument('dataset', choices=DATASETS)
    parser.add_argument('--src', required=True, help='the dataset as downloaded (its official layout)')
    parser.add_argument('--out', help='DATA_DIR for the TFDS records, index and manifest')
    parser.add_argument('--check', action='store_true', help='only scan the layout and print what was found')
    parser.add_argument('--qualities', help='comma-separated (ffpp: raw,c23,c40; dfdm: crf0,crf10,crf23; ...)')
    parser.add_argument('--methods', help='ffpp: comma-separated manipulation methods')
    parser.add_argument(
        '--option',
        action='append',
        default=[],
        metavar='KEY=VALUE',
        help="the dataset layout's options (fdx.input.layouts), e.g. split=actors for dfd",
    )
    parser.add_argument('--sampling', choices=video.SAMPLING_MODES, default=Options.sampling)
    parser.add_argument('--frames', type=int, default=Options.frames)
    parser.add_argument('--run-length', type=int, default=Options.run_length)
    parser.add_argument('--max-frames', type=int, default=Options.max_frames)
    parser.add_argument('--crop-size', type=int, default=Options.crop_size)
    parser.add_argument('--scale', type=float, default=Options.scale)
    parser.add_argument('--format', dest='image_format', choices=('png', 'jpg'), default=Options.image_format)
    parser.add_argument('--jpeg-quality', type=int, default=Options.jpeg_quality)
    parser.add_argument(
        '--faces', choices=('largest', 'all'), default=Options.faces, help='all: one record per face track'
    )
    parser.add_argument('--min-face-ratio', type=float, default=Options.min_face_ratio)
    parser.add_argument('--min-face-size', type=int, default=Options.min_face_size)
    parser.add_argument(
        '--detect-size',
        type=int,
        default=Options.detect_size,
        help='search faces on frames shrunk to this longer side, landmarks at full size (0: full size)',
    )
    parser.add_argument(
        '--detect-every',
        type=int,
        default=Options.detect_every,
        help='search every k-th sampled frame and follow the face in between (--faces largest)',
    )
    parser.add_argument('--seed', type=int, default=0, help='dfdm: seed of the 70/30 video split')
    parser.add_argument('--workers', type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument('--shard', metavar='I/N', help='only extract the I-th of N shards of the videos (0-based)')
    parser.add_argument('--merge', action='store_true', help='build the records of the extracted shards')
    parser.add_argument('--backend', choices=('local', 'slurm'), default='local')
    parser.add_argument('--shards', type=int, help='slurm: a job array of this many shards, then the merge')
    slurm.add_resource_flags(parser)
    args = parser.parse_args(argv)
    scan_options = layout_options(args.dataset, args.option)
    if args.qualities:
        scan_options['qualities'] = tuple(args.qualities.split(','))
    if args.methods:
        scan_options['methods'] = tuple(args.methods.split(','))
    if args.dataset == 'dfdm':
        scan_options['seed'] = args.seed
    if args.check:
        return check(args.dataset, Path(args.src), scan_options)
    if not args.out:
        raise ValueError('fdx prepare: --out DATA_DIR is required (or --check to only scan the layout)')
    options = Options(
        args.sampling,
        args.frames,
        args.run_length,
        args.max_frames,
        args.crop_size,
        args.scale,
        args.image_format,
        args.jpeg_quality,
        args.faces,
        args.min_face_ratio,
        args.min_face_size,
        args.detect_size,
        args.detect_every,
    )
    if args.backend == 'slurm':
        return submit_shards(argv, args)
    shard = parse_shard(args.shard) if args.shard else None
    start = time.perf_counter()
    summary = tfds_builders.prepare(
        args.dataset, Path(args.src), Path(args.out), options, scan_options, args.workers, shard, args.merge
    )
    summary['seconds'] = round(time.perf_counter() - start, 1)
    if shard is not None:
        print(
            f'{args.dataset} shard {summary["shard"]}: {summary["usable_videos"]} of {summary["videos"]} videos '
            'usable, '
            f'{len(summary["problems"])} problems, {summary["seconds"]} s (then `--merge`)'
        )
        return 0  # a shard's unusable videos are problems of the dataset, reported by the merge, not failures
    print(tfds_builders.format_summary(summary))
    return 0 if summary['records'] else 1


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' → (I, N) with 0 <= I < N; ValueError otherwise."""
    index, _, count = text.partition('/')
    if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise ValueError(f'--shard {text!r}: expected I/N with 0 <= I < N, e.g. 0/8')
    return int(index), int(count)


def _without(argv: Sequence[str], *options: str) -> list[str]:
    """`argv` without the given options and their values (`--opt V` and `--opt=V`)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in options:
            skip = True
        elif not arg.startswith(tuple(f'{o}=' for o in options)):
            out.append(arg)
    return out


def submit_shards(argv: Sequence[str], args: argparse.Namespace) -> int:
    """`--backend slurm --shards N`: a job array of `--shard i/N` extractions and a merge job that starts when all
    succeeded (`--dependency=afterok`); scripts and logs in `<out>/_slurm/`."""
    if not args.shards or args.shards < 1 or args.shard or args.merge:
        raise ValueError('fdx prepare --backend slurm needs --shards N (N >= 1) and neither --shard nor --merge')
    flags = ('--backend', '--shards', '--nodes', '--gpus-per-node', '--time', '--partition', '--account', '--sbatch')
    base = [sys.executable, '-m', 'fdx.cli', 'prepare', *_without(argv, *flags, '--signal-seconds')]
    folder = Path(args.out).absolute() / '_slurm'
    folder.mkdir(parents=True, exist_ok=True)
    resources = slurm.resources_from(args)
    shards = [
        slurm.Task(i, [*base, '--shard', f'{i}/{args.shards}'], folder / f'shard_{i}.log') for i in range(args.shards)
    ]
    merge = [slurm.Task(0, [*base, '--merge'], folder / 'merge.log')]
    ids = []
    for name, tasks in (('shards', shards), ('merge', merge)):
        script = folder / f'{name}.sbatch'
        script.write_text(
            slurm.render_script(f'fdx-prepare-{name}', tasks, resources, folder / f'{name}_%a.out', Path.cwd())
        )
        ids.append(slurm.submit(script, *([f'--dependency=afterok:{ids[0]}'] if ids else [])))
    (folder / 'jobs.json').write_text(json.dumps({'shards': ids[0], 'merge': ids[1], 'count': args.shards}, indent=2))
    print(f'fdx prepare: {args.shards} shards as job array {ids[0]}, merge job {ids[1]} after them; logs in {folder}')
    return 0
