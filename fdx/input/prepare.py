"""`fdx prepare {ffpp,celebdf,dfdm} --src RAW_DIR --out DATA_DIR`: raw videos → face-crop records (TFDS, array_record).

Per video (in parallel, resumable): decode the sampled frames of every quality, detect the largest face and its 68
landmarks on the best quality, enlarge the box 1.3×, and cut that same window from every quality and from the
manipulation-mask video. Each video's crops go to `DATA_DIR/_extract/<dataset>/<config>/<video>/` (PNG/JPEG files and
a `meta.json`, written atomically), so an interrupted run continues where it stopped. The TFDS builder of
`fdx.input.tfds_builders` then writes the records; a per-split metadata index and `manifest.json` (every skipped
video or frame with its reason, counts per split and class) complete the output. The exit status is non-zero only
when nothing usable was produced.
"""

import argparse
import dataclasses
import json
import multiprocessing
import os
import shutil
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from fdx.input import faces, layouts, records, video

DATASETS = ('ffpp', 'celebdf', 'dfdm')


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

    def name(self) -> str:
        sampling = {
            'even': f'even{self.frames}',
            'runs': f'runs{self.frames}x{self.run_length}',
            'all': f'all{self.max_frames or ""}',
        }[self.sampling]
        scale = f'{self.scale:g}'.replace('.', 'p')
        fmt = self.image_format if self.image_format == 'png' else f'jpg{self.jpeg_quality}'
        return f'{sampling}-s{self.crop_size}-x{scale}-{fmt}'


def _safe(video_id: str) -> str:
    return video_id.replace('/', '__')


def extract_video(
    job: layouts.VideoJob, qualities: Sequence[str], options: Options, detector: faces.FaceDetector, out: Path
) -> dict[str, Any]:
    """Crops of one video into `out` (created atomically); returns its meta (records, or an `error`)."""
    tmp = out.with_name(out.name + '.tmp')
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    meta = {'video_id': job.video_id, 'records': [], 'dropped': [], 'warnings': []}
    try:
        meta['records'] = _extract(job, qualities, options, detector, tmp, meta)
    except video.VideoError as e:
        meta['error'] = str(e)
    (tmp / 'meta.json').write_text(json.dumps(meta))
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return meta


def _extract(job, qualities, options, detector, tmp: Path, meta: dict) -> list[dict[str, Any]]:
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
    decoded = {q: video.read_frames(job.paths[q], indices).frames for q in qualities}
    masks = {}
    if job.mask is not None:
        try:
            masks = video.read_frames(job.mask, indices).frames
        except video.VideoError as e:
            meta['warnings'].append(f'mask video unusable ({e.reason}); records have no mask')
    reference = qualities[0]
    out = []
    for index in indices:
        if any(index not in decoded[q] for q in qualities):
            meta['dropped'].append([index, 'frame not decoded in every quality (truncated video)'])
            continue
        face = faces.largest_face(detector.detect(decoded[reference][index]))
        if face is None:
            meta['dropped'].append([index, 'no face found'])
            continue
        window = faces.crop_window(face.box, decoded[reference][index].shape, options.scale)
        files = {}
        for q in qualities:
            crop = faces.crop(decoded[q][index], window, options.crop_size)
            files[q] = f'{index:06d}_{q}.{options.image_format}'
            (tmp / files[q]).write_bytes(records.encode_image(crop, options.image_format, options.jpeg_quality))
        if index in masks:
            mask = faces.crop(masks[index].max(axis=-1), window, options.crop_size)
            files['mask'] = f'{index:06d}_mask.png'
            (tmp / files['mask']).write_bytes(records.encode_image(mask, 'png'))
        elif job.mask is not None and masks:
            meta['warnings'].append(f'mask frame {index} not decoded')
        out.append(
            {
                'frame_index': index,
                'files': files,
                'landmarks': faces.landmarks_to_crop(face.landmarks, window, options.crop_size).tolist(),
                'box': [float(v) for v in window],
            }
        )
    if not out:
        reasons = sorted({reason for _, reason in meta['dropped']})
        raise video.VideoError(job.video_id, f'no usable frame among {len(indices)} sampled ({"; ".join(reasons)})')
    return out


_detector: faces.FaceDetector | None = None  # one per worker process (loading the landmark model takes a second)


def _work(args) -> None:
    global _detector
    if _detector is None:
        _detector = faces.DlibDetector()
    extract_video(*args[:3], _detector, args[3])


def extract_all(
    layout: layouts.Layout, options: Options, cache: Path, workers: int = 1, progress: bool = True
) -> dict[str, dict[str, Any]]:
    """Extracts every job not yet in `cache` (in parallel); returns the metas of all jobs."""
    cache.mkdir(parents=True, exist_ok=True)
    todo = [job for job in layout.jobs if not (cache / _safe(job.video_id) / 'meta.json').is_file()]
    args = [(job, layout.qualities, options, cache / _safe(job.video_id)) for job in todo]
    bar = tqdm(
        total=len(layout.jobs),
        initial=len(layout.jobs) - len(todo),
        unit='video',
        disable=not progress,
        desc=f'extracting {layout.dataset}',
    )
    if workers > 1 and len(args) > 1:
        with multiprocessing.get_context('spawn').Pool(workers) as pool:
            for _ in pool.imap_unordered(_work, args):
                bar.update()
    else:
        for arg in args:
            _work(arg)
            bar.update()
    bar.close()
    return {job.video_id: json.loads((cache / _safe(job.video_id) / 'meta.json').read_text()) for job in layout.jobs}


def load_record(cache: Path, job: layouts.VideoJob, qualities: Sequence[str], item: dict, video_index: int) -> dict:
    """One TFDS example from an extracted frame."""
    folder = cache / _safe(job.video_id)
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
        source_id=job.source_id,
    )
    return example


def main(argv: Sequence[str]) -> int:
    """`fdx prepare {ffpp,celebdf,dfdm} --src RAW_DIR --out DATA_DIR [options]`."""
    from fdx.input import tfds_builders

    parser = argparse.ArgumentParser(prog='fdx prepare', description=__doc__.split('\n\n')[0])
    parser.add_argument('dataset', choices=DATASETS)
    parser.add_argument('--src', required=True, help='the dataset as downloaded (its official layout)')
    parser.add_argument('--out', required=True, help='DATA_DIR for the TFDS records, index and manifest')
    parser.add_argument('--qualities', help='comma-separated (ffpp: raw,c23,c40; dfdm: crf0,crf10,crf23)')
    parser.add_argument('--methods', help='ffpp: comma-separated manipulation methods')
    parser.add_argument('--sampling', choices=video.SAMPLING_MODES, default=Options.sampling)
    parser.add_argument('--frames', type=int, default=Options.frames)
    parser.add_argument('--run-length', type=int, default=Options.run_length)
    parser.add_argument('--max-frames', type=int, default=Options.max_frames)
    parser.add_argument('--crop-size', type=int, default=Options.crop_size)
    parser.add_argument('--scale', type=float, default=Options.scale)
    parser.add_argument('--format', dest='image_format', choices=('png', 'jpg'), default=Options.image_format)
    parser.add_argument('--jpeg-quality', type=int, default=Options.jpeg_quality)
    parser.add_argument('--seed', type=int, default=0, help='dfdm: seed of the 70/30 video split')
    parser.add_argument('--workers', type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args(argv)
    options = Options(
        args.sampling,
        args.frames,
        args.run_length,
        args.max_frames,
        args.crop_size,
        args.scale,
        args.image_format,
        args.jpeg_quality,
    )
    scan_options = {}
    if args.qualities:
        scan_options['qualities'] = tuple(args.qualities.split(','))
    if args.methods:
        scan_options['methods'] = tuple(args.methods.split(','))
    if args.dataset == 'dfdm':
        scan_options['seed'] = args.seed
    start = time.perf_counter()
    summary = tfds_builders.prepare(
        args.dataset, Path(args.src), Path(args.out), options, scan_options, workers=args.workers
    )
    summary['seconds'] = round(time.perf_counter() - start, 1)
    print(tfds_builders.format_summary(summary))
    return 0 if summary['records'] else 1
