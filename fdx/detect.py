"""`fdx detect PATH… --workdir W [--step best|latest|N] [--all-faces] [--out DIR] [--annotate DIR] [--frames]`: scores
of new videos and images with a trained workdir; `Detector` is the Python API the command uses.

    detector = fdx.Detector.from_workdir('runs/x')        # the best checkpoint (config.select), else the latest
    result = detector.score_video('clip.mp4')             # .score (or .probs), .tracks, .items, .error

Every input is cut exactly as the workdir's training data was (`<workdir>/preprocessing.json`, written by `fdx train`
from the prepared dataset's manifest): the same frame sampling, the same dlib detector and landmarks, the same face
window and crop size, the crops encoded in the records' image format (`fdx.input.prepare.face_crops`); then the
method's eval view, the eval predict step (`fdx.evaluate.Evaluator.predict`) and `config.eval`'s video aggregation
(`Evaluator.levels`). So a video's score means what the test metrics mean: a prepared test video scores as `fdx eval`
scores its records.

Faces: the largest face of each sampled frame, or with `--all-faces` every face of at least `min_face_ratio` of the
largest, linked into tracks; each track is scored and the video by `config.eval.face_aggregation`.

Outputs in DIR (default `<workdir>/detect`): `detections.json` (per input: status, reason, the score or class
probabilities, every track, every scored frame or clip with its face window), `videos.csv`, `frames.csv`, and a
table on stdout (`--frames`: every scored frame's too). `--annotate OUT`: per video an H.264 copy with every frame
(face windows, the running score, the method's first heat map — or a reconstruction's error — over the face on scored
frames) and a PNG strip of scored crops with every map (a method's `label_maps`, ground truth, are left out); per
image an annotated PNG. A bad input (unreadable, truncated, no face, shorter than the method's clip, unsupported
extension) gets a one-line reason and the run goes on; the exit code is 1 only if nothing could be scored.
"""

import argparse
import csv
import dataclasses
import io
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import cv2
import jax
import numpy as np
from tqdm import tqdm

from fdx import config as config_lib
from fdx import evaluate, metrics, storage, writers
from fdx import input as input_lib
from fdx.input import faces, prepare, records, video
from fdx.input.records import SplitIndex

VIDEO_SUFFIXES = ('.mp4', '.avi', '.mov', '.mkv', '.webm', '.m4v', '.mpg', '.mpeg', '.wmv', '.flv', '.ts')
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp', '.webp', '.tif', '.tiff')
INPUT = 'input'  # the one "quality" of a new video
STRIP_ITEMS = 8


@dataclasses.dataclass
class Result:
    """What `Detector` found in one input. `score` (binary: P(fake)) or `probs` (attribution: class → probability)
    is the video's (or image's); `tracks` holds each face track's, `items` each scored frame's (or clip's: then
    `frame_index` lists its frames) with its `track` and face `window` (x0, y0, x1, y1 in frame pixels)."""

    path: str
    kind: str  # video | image
    error: str | None = None
    score: float | None = None
    probs: dict[str, float] | None = None
    prediction: str | None = None
    frame_count: int = 0
    fps: float = 0.0
    tracks: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    items: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    dropped: list[tuple[int, str]] = dataclasses.field(default_factory=list)  # sampled frames not scored, why
    warnings: list[str] = dataclasses.field(default_factory=list)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)  # decode, faces (detect + crop), predict
    annotations: list[str] = dataclasses.field(default_factory=list)  # files `--annotate` wrote
    crops: dict[tuple[int, int], bytes] = dataclasses.field(default_factory=dict, repr=False)  # (frame, track)
    maps: dict[str, np.ndarray] = dataclasses.field(default_factory=dict, repr=False)  # name → [items, …]

    @property
    def ok(self) -> bool:
        return self.error is None

    def failed(self, reason: str) -> 'Result':
        self.error = reason
        return self

    def to_json(self) -> dict[str, Any]:
        skip = ('crops', 'maps')
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}


def input_files(paths: Sequence[str | Path]) -> tuple[list[Path], int]:
    """The files to score: each named path, and every video or image under a named folder (recursively, sorted);
    with the number of other files those folders hold (left out)."""
    files, others = [], 0
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob('*') if p.is_file())
            files += [p for p in found if p.suffix.lower() in VIDEO_SUFFIXES + IMAGE_SUFFIXES]
            others += sum(p.suffix.lower() not in VIDEO_SUFFIXES + IMAGE_SUFFIXES for p in found)
        else:
            files.append(path)
    return files, others


def read_preprocessing(workdir: Path, config) -> dict[str, Any]:
    """The face preprocessing of the workdir's training data: its `preprocessing.json`, else the prepared dataset's
    manifest (workdirs trained before fdx recorded it)."""
    path = workdir / input_lib.PREPROCESSING_FILE
    if path.is_file():
        description = json.loads(path.read_text())
    else:
        try:
            description = input_lib.preprocessing(config.data)
        except ValueError as error:
            raise ValueError(
                f'{path}: missing, and the training data it would be read from is not there ({error}); pass '
                '--config.data.dir=<the prepared data> or retrain with this fdx'
            ) from error
    if description.get('faces') is None:
        raise ValueError(
            f'{path}: the workdir was trained on {description.get("dataset")!r} data without a face-crop manifest '
            '(synthetic, or records not made by `fdx prepare`): there is no face preprocessing to apply to videos'
        )
    return description


class Detector:
    """A workdir's checkpoint with its training preprocessing, scoring videos and images (see the module doc)."""

    def __init__(self, restored: evaluate.Restored, preprocessing: dict[str, Any], all_faces: bool = False):
        self.restored, self.preprocessing = restored, preprocessing
        config, method = restored.config, restored.method
        face_options = dict(preprocessing['faces'])
        detector = face_options.pop('detector')
        if detector.get('name') != input_lib.FACE_DETECTOR['name']:
            raise ValueError(f'preprocessing.json: unknown face detector {detector}; fdx has {input_lib.FACE_DETECTOR}')
        self.options = prepare.Options(**face_options)
        if all_faces:
            self.options = dataclasses.replace(self.options, faces='all')
        self.face_detector = faces.DlibDetector(detector.get('upsample', 0), self.options.detect_size)
        self.transform = input_lib.build_transform(config.data, 'test')
        self.view = self.transform.view
        self.evaluator = evaluate.Evaluator(config, method, restored.mesh)
        self.binary = self.evaluator.binary
        self.class_names = tuple(config.data.class_names) if self.binary else tuple(method.class_names)
        self.with_maps = False  # predict the method's maps too (`Annotator`)
        self.maps = {n: kind for n, kind in method.maps.items() if n not in method.label_maps}  # no ground truth here
        self.workdir: Path | None = None

    @classmethod
    def from_workdir(
        cls, workdir: str | Path, step: str | int | None = None, all_faces: bool = False, overrides: Sequence[str] = ()
    ) -> 'Detector':
        """`step`: a number, 'best', 'latest', or None: the best checkpoint when the run selected one, else the
        latest. `overrides`: `config.KEY=VALUE` strings applied to the saved config."""
        workdir = storage.path(workdir)  # local or gs://
        step = evaluate.serving_step(workdir, step)
        restored = evaluate.restore(workdir, step, ['data.workers=0', *overrides])  # one video at a time
        detector = cls(restored, read_preprocessing(workdir, restored.config), all_faces)
        detector.workdir = workdir
        return detector

    @property
    def step(self) -> int:
        return self.restored.step

    def score(self, path: str | Path) -> Result:
        """A video or an image by its extension; an unsupported one is a failed `Result`."""
        suffix = Path(path).suffix.lower()
        if suffix in VIDEO_SUFFIXES:
            return self.score_video(path)
        if suffix in IMAGE_SUFFIXES:
            return self.score_image(path)
        known = ' '.join(VIDEO_SUFFIXES + IMAGE_SUFFIXES)
        reason = f'unsupported extension {suffix or "(none)"!r} (videos and images: {known})'
        return Result(str(path), 'file').failed(reason)

    def score_video(self, path: str | Path) -> Result:
        """The frames the training data sampled from each video (`prepare.Options`), scored."""
        result, options = Result(str(path), 'video'), self.options
        start = time.perf_counter()
        try:
            info = video.probe(path)
            indices = video.sample_indices(
                info.frame_count,
                mode=options.sampling,
                count=options.frames,
                run_length=options.run_length,
                max_frames=options.max_frames,
            )
            decoded = video.read_frames(path, indices)
        except video.VideoError as error:
            return result.failed(error.reason)
        result.frame_count, result.fps = info.frame_count, info.fps
        result.seconds['decode'] = time.perf_counter() - start
        return self._score(result, decoded.frames, indices)

    def score_image(self, path: str | Path) -> Result:
        result, start = Result(str(path), 'image'), time.perf_counter()
        if not Path(path).is_file():
            return result.failed('no such file')
        try:
            image = records.decode_image(Path(path).read_bytes())
        except ValueError:
            return result.failed('cannot decode the image')
        result.frame_count = 1
        result.seconds['decode'] = time.perf_counter() - start
        return self._score(result, {0: image}, np.zeros(1, np.int64))

    def _score(self, result: Result, decoded: dict[int, np.ndarray], indices: np.ndarray) -> Result:
        meta, start = {'dropped': []}, time.perf_counter()
        crops = list(prepare.face_crops({INPUT: decoded}, indices, (INPUT,), self.options, self.face_detector, meta))
        result.seconds['faces'] = time.perf_counter() - start
        result.dropped = [(int(i), reason) for i, reason in meta['dropped']]
        if not crops:
            reasons = '; '.join(sorted({reason for _, reason in result.dropped})) or 'nothing decoded'
            return result.failed(f'no usable frame among {len(indices)} sampled ({reasons})')
        frames = self._records(crops, result.path)
        index = SplitIndex.from_records(frames)
        shortfall = self._shortfall(index)
        if shortfall:
            return result.failed(shortfall)
        try:
            items = self.view.source(frames, index)
        except ValueError as error:
            return result.failed(f'too short for the method: {error}')
        if not len(items):
            return result.failed("too short for the method's clip")
        start = time.perf_counter()
        with jax.set_mesh(self.restored.mesh):
            predictions = self.evaluator.predict(self.restored.variables, items, self.transform, self.with_maps)
        result.seconds['predict'] = time.perf_counter() - start  # the view's decode and resize, then the model
        self._summarise(result, predictions, {(c.frame_index, c.track): c for c in crops})
        return result

    def _records(self, crops: list[prepare.FaceCrop], path: str) -> list[dict[str, Any]]:
        """Records as `fdx prepare` writes them (every quality the view reads holds the input's crop)."""
        return [
            {
                **{records.image_key(q): crop.encoded[INPUT] for q in self.view.qualities()},
                'mask': b'',
                'landmarks': np.asarray(crop.landmarks, np.float32),
                'box': np.asarray(crop.window, np.float32),
                'label': 0,
                'class_id': 0,
                'video_id': path.encode(),
                'video_index': crop.track,  # one video: its tracks are numbered 0, 1, … (`SplitIndex`)
                'frame_index': crop.frame_index,
                'face_index': crop.track,
                'source_id': b'',
            }
            for crop in crops
        ]

    def _shortfall(self, index: SplitIndex) -> str | None:
        """Why a clip view cannot read these frames fully (it would repeat the last one), or None."""
        needed = getattr(self.view, 'frames', None)
        if not isinstance(needed, int):
            return None
        have = min(len(rows) for rows in index.videos().values())
        if have >= needed:
            return None
        return f"shorter than the method's clip: {have} frames with a face, the clip needs {needed}"

    def _summarise(self, result: Result, predictions: dict[str, np.ndarray], crops: dict) -> None:
        key, names = self.evaluator.key, self.class_names
        values, tracks = predictions[key], predictions['video_index']

        def described(value) -> dict[str, Any]:
            if self.binary:
                return {'score': float(value)}
            return {'probs': {n: float(p) for n, p in zip(names, value)}, 'prediction': names[int(np.argmax(value))]}

        for value, frame, track in zip(values, predictions['frame_index'], tracks):
            first = int(np.ravel(frame)[0])
            window = [float(v) for v in crops[(first, int(track))].window]
            frame = frame.tolist() if np.ndim(frame) else int(frame)
            result.items.append({'frame_index': frame, 'track': int(track), 'window': window, **described(value)})
        aggregation = self.evaluator.eval_config.video_aggregation
        aggregate = metrics.video_level if self.binary else metrics.video_level_multiclass
        _, track_values, track_ids = aggregate(predictions['label'], values, tracks, aggregation)
        for track, value in zip(track_ids, track_values):
            result.tracks.append({'track': int(track), 'items': int((tracks == track).sum()), **described(value)})
        video_value = self.evaluator.levels(predictions)['video'][1][0]
        summary = described(video_value)
        result.score, result.probs = summary.get('score'), summary.get('probs')
        if self.binary:
            result.prediction = names[int(result.score >= self.evaluator.eval_config.threshold)]
        else:
            result.prediction = summary['prediction']
        result.crops = {k: c.encoded[INPUT] for k, c in crops.items()}
        result.maps = {name: np.asarray(predictions[name]) for name in self.maps if name in predictions}


# --------------------------------------------------------------------------- #
# Annotation
# --------------------------------------------------------------------------- #
def _label(result_value: dict[str, Any], binary: bool) -> str:
    if binary:
        return f'P(fake) {result_value["score"]:.3f}'
    probs = result_value['probs']
    name = max(probs, key=probs.get)
    return f'{name} {probs[name]:.3f}'


def _draw(frame: np.ndarray, window, text: str, colour=(255, 64, 64)) -> None:
    x0, y0, x1, y1 = (int(round(v)) for v in window)
    cv2.rectangle(frame, (x0, y0), (x1 - 1, y1 - 1), colour, 2)
    cv2.putText(frame, text, (max(x0, 2), max(y0 - 6, 14)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, colour, 1, cv2.LINE_AA)


def _overlay(frame: np.ndarray, window, heat: np.ndarray) -> None:
    """Blends a heat map (over the face crop) into the frame's part of the crop window."""
    x0, y0, x1, y1 = (int(round(v)) for v in window)
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x1, frame.shape[1]), min(y1, frame.shape[0])
    if fx1 <= fx0 or fy1 <= fy0:
        return
    full = evaluate.heat_overlay(np.zeros((y1 - y0, x1 - x0, 3), np.uint8), heat, alpha=1.0)
    region = frame[fy0:fy1, fx0:fx1].astype(np.float32)
    colours = full[fy0 - y0 : fy1 - y0, fx0 - x0 : fx1 - x0].astype(np.float32)
    frame[fy0:fy1, fx0:fx1] = np.rint(0.6 * region + 0.4 * colours).astype(np.uint8)


class Annotator:
    """`--annotate OUT`: annotated copies of the inputs a `Detector` scored (see the module doc)."""

    def __init__(self, detector: Detector, out: Path):
        self.detector, self.out = detector, out
        self.heat_maps = [name for name, kind in detector.maps.items() if kind == 'heat']
        self.image_maps = [name for name, kind in detector.maps.items() if kind == 'image']
        self.stems: set[str] = set()
        out.mkdir(parents=True, exist_ok=True)

    def _stem(self, path: str) -> Path:
        """OUT/<the input's name>, numbered when inputs of different folders share a name."""
        stem, number = Path(path).stem, 1
        while stem in self.stems:
            number += 1
            stem = f'{Path(path).stem}_{number}'
        self.stems.add(stem)
        return self.out / stem

    def _crop(self, result: Result, item: int) -> np.ndarray:
        entry = result.items[item]
        return records.decode_image(result.crops[(int(np.ravel(entry['frame_index'])[0]), entry['track'])])

    def _image(self, result: Result, name: str, item: int) -> np.ndarray:
        """An image map (a reconstruction) of an item as uint8 RGB."""
        view = self.detector.view
        return view.display({view.display_key: result.maps[name][item]})

    def _error(self, result: Result, name: str, item: int) -> np.ndarray:
        """|crop − image map| per pixel (mean over channels) at the map's size, over its maximum: where a
        reconstruction fails."""
        image = self._image(result, name, item).astype(np.float32)
        crop = cv2.resize(self._crop(result, item), image.shape[1::-1], interpolation=cv2.INTER_AREA)
        error = np.abs(crop.astype(np.float32) - image).mean(-1)
        return error / max(float(error.max()), 1e-6)

    def _heat(self, result: Result, item: int) -> np.ndarray | None:
        """What the video shows over the face: the first heat map of an item ([h, w], or [h, w, C]: its maximum over
        channels), else the first image map's error."""
        if self.heat_maps:
            return np.asarray(result.maps[self.heat_maps[0]][item], np.float32)
        return self._error(result, self.image_maps[0], item) if self.image_maps else None

    def _by_frame(self, result: Result) -> dict[int, list[int]]:
        """Frame index → the items that score it."""
        out: dict[int, list[int]] = {}
        for i, item in enumerate(result.items):
            for frame in np.ravel(item['frame_index']):
                out.setdefault(int(frame), []).append(i)
        return out

    def annotate(self, result: Result) -> list[Path]:
        """Writes the annotated copy and the strip of a scored input (listed in `result.annotations`)."""
        if not result.ok:
            return []
        stem = self._stem(result.path)
        if result.kind == 'image':
            frame = records.decode_image(Path(result.path).read_bytes())
            self._annotate_frame(frame, result, self._by_frame(result).get(0, []), result.items)
            written = stem.with_name(stem.name + '_annotated.png')
            written.write_bytes(records.encode_image(frame, 'png'))
        else:
            written = self._video(result, stem.with_name(stem.name + '.mp4'))
        paths = [written, self._strip(result, stem.with_name(stem.name + '_strip.png'))]
        result.annotations = [str(p) for p in paths]
        return paths

    def _annotate_frame(self, frame: np.ndarray, result: Result, scoring: list[int], seen: list[dict]) -> None:
        binary = self.detector.binary
        for i in scoring:
            heat = self._heat(result, i)
            if heat is not None:
                _overlay(frame, result.items[i]['window'], heat)
        latest: dict[int, dict] = {}
        for item in seen:
            latest[item['track']] = item
        for track, item in latest.items():
            values = [s for s in seen if s['track'] == track]
            running = self._running(values)
            _draw(frame, item['window'], f'face {track}: {_label(running, binary)}')

    def _running(self, items: list[dict]) -> dict[str, Any]:
        """The aggregation (`config.eval.video_aggregation`) of the items scored so far."""
        aggregation = self.detector.evaluator.eval_config.video_aggregation
        zeros = np.zeros(len(items))
        if self.detector.binary:
            _, value, _ = metrics.video_level(zeros, [s['score'] for s in items], zeros, aggregation)
            return {'score': float(value[0])}
        probs = [list(s['probs'].values()) for s in items]
        _, value, _ = metrics.video_level_multiclass(zeros, probs, zeros, aggregation)
        return {'probs': dict(zip(items[0]['probs'], map(float, value[0])))}

    def _video(self, result: Result, path: Path) -> Path:
        by_frame, capture = self._by_frame(result), cv2.VideoCapture(result.path)
        order = sorted(range(len(result.items)), key=lambda i: int(np.ravel(result.items[i]['frame_index'])[-1]))
        writer, seen, pending, number = None, [], list(order), 0
        try:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                if writer is None:
                    writer = video.H264Writer(path, frame.shape[1], frame.shape[0], result.fps)
                while pending and int(np.ravel(result.items[pending[0]]['frame_index'])[-1]) <= number:
                    seen.append(result.items[pending.pop(0)])
                self._annotate_frame(frame, result, by_frame.get(number, []), seen)
                writer.write(frame)
                number += 1
        finally:
            capture.release()
            if writer is not None:
                writer.close()
        return path

    def _strip(self, result: Result, path: Path) -> Path:
        """Up to `STRIP_ITEMS` scored crops, spread over the input, with each heat map over them and each image map
        (a reconstruction) with its error."""
        picks = np.unique(np.linspace(0, len(result.items) - 1, min(STRIP_ITEMS, len(result.items))).astype(int))
        crops = [self._crop(result, i) for i in picks]
        rows = {'face': np.stack(crops)}
        for name in self.heat_maps:
            rows[name] = np.stack(
                [evaluate.heat_overlay(c, np.asarray(result.maps[name][i], np.float32)) for c, i in zip(crops, picks)]
            )
        for name in self.image_maps:
            rows[name] = np.stack(
                [cv2.resize(self._image(result, name, i), c.shape[1::-1]) for c, i in zip(crops, picks)]
            )
            rows[f'{name} error'] = np.stack(
                [evaluate.heat_overlay(c, self._error(result, name, i)) for c, i in zip(crops, picks)]
            )
        titles = [
            f'f{np.ravel(result.items[i]["frame_index"])[0]} {_label(result.items[i], self.detector.binary)}'
            for i in picks
        ]
        metrics.save_image_grid_png(rows, path, titles, title=f'{Path(result.path).name}: {result.prediction}')
        return path


# --------------------------------------------------------------------------- #
# Command
# --------------------------------------------------------------------------- #
def _value_text(result: Result) -> str:
    if not result.ok:
        return '-'
    if result.score is not None:
        return f'{result.score:.4f}'
    return f'{result.probs[result.prediction]:.4f}'


def _fixed_width(rows: list[tuple[str, ...]]) -> str:
    """Rows as left-aligned columns (the last one unpadded)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return '\n'.join('  '.join(c.ljust(w) for c, w in zip(row, widths)) + '  ' + row[-1] for row in rows).rstrip()


def table(results: Sequence[Result]) -> str:
    """Per input: prediction, score (P(fake), or the predicted class's probability), face tracks and scored items, or
    the reason it was not scored."""
    rows = [('input', 'prediction', 'score', 'tracks', 'items', 'reason')]
    for r in results:
        rows.append(
            (r.path, r.prediction or 'not scored', _value_text(r), str(len(r.tracks)), str(len(r.items)), r.error or '')
        )
    return _fixed_width(rows)


def frames_table(results: Sequence[Result], binary: bool) -> str:
    """Per scored frame (or clip): input, frame(s), face track, and its score or most probable class."""
    rows = [('input', 'frames', 'track', 'score')]
    for r in results:
        for item in r.items:
            frames = ' '.join(map(str, np.ravel(item['frame_index'])))
            rows.append((r.path, frames, str(item['track']), _label(item, binary)))
    return _fixed_width(rows)


def write_outputs(results: Sequence[Result], detector: Detector, out: Path) -> None:
    """`detections.json`, `videos.csv` (one row per input) and `frames.csv` (one row per scored item) in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    header = {
        'workdir': str(detector.workdir),
        'checkpoint': detector.restored.checkpoint,
        'method': detector.restored.config.method,
        'class_names': list(detector.class_names),
        'task': detector.restored.method.task,
        'video_aggregation': detector.evaluator.eval_config.video_aggregation,
        'preprocessing': {
            **detector.preprocessing,
            'faces': {'detector': detector.preprocessing['faces']['detector'], **dataclasses.asdict(detector.options)},
        },
    }
    document = {**header, 'inputs': [r.to_json() for r in results]}
    (out / 'detections.json').write_text(json.dumps(document, indent=2, default=float))
    value_columns = ['score'] if detector.binary else [f'p_{n}' for n in detector.class_names]

    def values(entry: dict[str, Any]) -> list[Any]:
        if detector.binary:
            return [entry.get('score')]
        probs = entry.get('probs') or {}
        return [probs.get(n) for n in detector.class_names]

    video_rows = [['path', 'kind', 'status', 'prediction', *value_columns, 'tracks', 'items', 'reason']]
    frame_rows = [['path', 'frame_index', 'track', *value_columns, 'x0', 'y0', 'x1', 'y1']]
    for r in results:
        status = 'ok' if r.ok else 'error'
        scores = values({'score': r.score, 'probs': r.probs})
        video_rows.append([r.path, r.kind, status, r.prediction, *scores, len(r.tracks), len(r.items), r.error])
        for item in r.items:
            frames = ' '.join(map(str, np.ravel(item['frame_index'])))
            frame_rows.append([r.path, frames, item['track'], *values(item), *item['window']])
    for name, rows in (('videos.csv', video_rows), ('frames.csv', frame_rows)):
        text = io.StringIO()  # written whole: `out` may be a gs:// URL
        csv.writer(text).writerows(rows)
        (out / name).write_text(text.getvalue())


def main(argv: Sequence[str]) -> int:
    """`fdx detect PATH… --workdir W [--step best|latest|N] [--all-faces] [--out DIR] [--annotate DIR] [--frames]`."""
    _, overrides, rest = config_lib.parse_cli(argv)
    parser = argparse.ArgumentParser(prog='fdx detect', description=__doc__.split('\n\n')[0])
    parser.add_argument('paths', nargs='+', metavar='PATH', help='videos, images, or folders of them (recursively)')
    parser.add_argument('--workdir', required=True)
    parser.add_argument('--step', help="a checkpoint step, 'best' or 'latest' (default: best if selected, else latest)")
    parser.add_argument('--all-faces', action='store_true', help='score every face track, not only the largest face')
    parser.add_argument('--out', help='where detections.json and the CSV files go (default: <workdir>/detect)')
    parser.add_argument('--annotate', metavar='DIR', help='write annotated videos / images and PNG strips here')
    parser.add_argument('--frames', action='store_true', help='also print the score of every frame (or clip)')
    args = parser.parse_args(rest)
    if args.step not in (None, 'best', 'latest') and not args.step.isdigit():
        parser.error(f"--step: a step number, 'best' or 'latest', got {args.step!r}")
    workdir = storage.path(args.workdir)
    files, others = input_files(args.paths)
    if not files:
        raise ValueError(f'no video or image in {", ".join(args.paths)} ({others} other files)')
    detector = Detector.from_workdir(workdir, args.step, args.all_faces, overrides)
    annotator = Annotator(detector, Path(args.annotate)) if args.annotate else None
    detector.with_maps = annotator is not None and bool(detector.maps)
    writers.log(
        f'fdx detect: {len(files)} inputs, {detector.restored.config.method} step {detector.step}'
        + (f' ({others} files of other types left out)' if others else '')
    )
    results = []
    for path in tqdm(files, desc='detect', unit='input', file=sys.stderr):
        result = detector.score(path)
        if annotator is not None:
            try:
                annotator.annotate(result)
            except video.VideoError as error:
                result.warnings.append(f'annotation failed: {error.reason}')
        results.append(result)
    out = storage.path(args.out) if args.out else workdir / 'detect'
    write_outputs(results, detector, out)
    if args.frames:
        print(frames_table(results, detector.binary) + '\n')
    print(table(results))
    scored = sum(r.ok for r in results)
    writers.log(f'{scored} of {len(results)} inputs scored; wrote {out}/detections.json, videos.csv, frames.csv')
    return 0 if scored else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
