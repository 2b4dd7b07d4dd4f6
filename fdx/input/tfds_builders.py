"""TFDS builders of the prepared face-crop datasets (array_record, readable without TensorFlow).

They follow TFDS conventions: manual download (the raw dataset is `--manual_dir`), versions, builder configs naming
the extraction options, so `tfds build fdx/input/tfds_builders.py --manual_dir RAW --data_dir DATA` works as well as
`fdx prepare`, which runs the extraction in parallel first. The record schema is documented in `fdx.input.records`.
"""

import collections
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from fdx.input import layouts, records
from fdx.input.prepare import Options, extract_all, extracted, load_record, scanner_defaults

DATA_VERSION = '1.1.0'


@dataclasses.dataclass(eq=False)
class FaceCropsConfig(tfds.core.BuilderConfig):
    """Extraction options and layout options (qualities, FF++ methods, DFDM split seed)."""

    options: Options = Options()
    scan_options: dict = dataclasses.field(default_factory=dict)


class _FaceCrops(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Common builder: one record per sampled frame with the crops of every quality (see fdx.input.records)."""

    VERSION = tfds.core.Version(DATA_VERSION)
    RELEASE_NOTES = {
        '1.0.0': 'Face crops, 68 landmarks, masks, per-frame metadata.',
        DATA_VERSION: (
            '`face_index` (face track within the video; `fdx prepare --faces all`), one video_index per track.'
        ),
    }
    BUILDER_CONFIG_CLASS = FaceCropsConfig
    dataset: str
    class_names: tuple[str, ...]
    qualities: tuple[str, ...]

    def __init__(self, *, workers: int = 1, **kwargs):
        kwargs.setdefault('file_format', 'array_record')  # random access, no TensorFlow needed to read
        super().__init__(**kwargs)
        self.workers = workers

    @classmethod
    def make_config(cls, options: Options = Options(), scan_options: dict | None = None) -> FaceCropsConfig:
        scan_options = dict(scan_options or {})
        qualities = tuple(scan_options.setdefault('qualities', cls.qualities))
        name = f'{"_".join(qualities)}-{options.name()}'
        if 'methods' in scan_options:
            name += '-' + '_'.join(m.lower() for m in scan_options['methods'])
        if scan_options.get('seed'):
            name += f'-seed{scan_options["seed"]}'
        defaults = scanner_defaults(cls.dataset)
        for key, value in sorted(scan_options.items()):  # other layout options that differ from their defaults
            if key not in ('qualities', 'methods', 'seed') and value != defaults.get(key):
                value = '_'.join(map(str, value)) if isinstance(value, tuple) else value
                name += f'-{key}{value}'.replace('.', 'p').replace('/', '_')
        return FaceCropsConfig(
            name=name,
            version=DATA_VERSION,
            options=options,
            scan_options=scan_options,
            description=f'{cls.dataset} face crops: {name}',
        )

    def _class_names(self) -> tuple[str, ...]:
        if 'methods' in self.builder_config.scan_options:
            return ('real', *self.builder_config.scan_options['methods'])
        return self.class_names

    def _info(self) -> tfds.core.DatasetInfo:
        qualities = self.builder_config.scan_options['qualities']
        features = {records.image_key(q): tfds.features.Tensor(shape=(), dtype=np.object_) for q in qualities}
        features.update(
            mask=tfds.features.Tensor(shape=(), dtype=np.object_),
            landmarks=tfds.features.Tensor(shape=(records.NUM_LANDMARKS, 2), dtype=np.float32),
            box=tfds.features.Tensor(shape=(4,), dtype=np.float32),
            label=tfds.features.ClassLabel(names=['real', 'fake']),
            class_id=tfds.features.ClassLabel(names=list(self._class_names())),
            video_id=tfds.features.Text(),
            video_index=tfds.features.Scalar(dtype=np.int64),
            frame_index=tfds.features.Scalar(dtype=np.int64),
            face_index=tfds.features.Scalar(dtype=np.int64),
            source_id=tfds.features.Text(),
        )
        return tfds.core.DatasetInfo(
            builder=self, features=tfds.features.FeaturesDict(features), description=self.__doc__
        )

    def extraction_cache(self) -> Path:
        return Path(self._data_dir_root) / '_extract' / self.dataset / self.builder_config.name

    def _split_generators(self, dl_manager):
        layout = layouts.scan(self.dataset, Path(dl_manager.manual_dir), **self.builder_config.scan_options)
        metas = extract_all(layout, self.builder_config.options, self.extraction_cache(), self.workers)
        video_index = track_indices(metas)
        by_split = collections.defaultdict(list)
        for job in layout.jobs:
            if metas[job.video_id].get('records'):
                by_split[job.split].append(job)
        return {
            split: self._generate_examples(jobs, metas, video_index, layout.qualities)
            for split, jobs in sorted(by_split.items())
        }

    def _generate_examples(self, jobs, metas, video_index, qualities):
        cache = self.extraction_cache()
        per_face = self.builder_config.options.faces != 'largest'
        for job in jobs:
            for item in metas[job.video_id]['records']:
                face = item.get('face', 0)
                key = f'{job.video_id}/{item["frame_index"]}' + (f'/{face}' if per_face else '')
                yield key, load_record(cache, job, qualities, item, video_index[job.video_id, face])


def track_indices(metas: dict[str, dict]) -> dict[tuple[str, int], int]:
    """(video id, face track) → its dense `video_index`, over every usable track in sorted order.

    A video's tracks 0..n-1 get consecutive indices, so `video_index - face_index` is the same for all of them:
    evaluation groups a video's tracks by it (`fdx.evaluate`). With one face per video this is the video's rank.
    """
    units = sorted(
        {(video_id, item.get('face', 0)) for video_id, meta in metas.items() for item in meta.get('records', [])}
    )
    return {unit: i for i, unit in enumerate(units)}


class Ffpp(_FaceCrops):
    """FaceForensics++ (original youtube + manipulated sequences, raw/c23/c40, masks, official pair splits)."""

    name = 'ffpp'
    dataset = 'ffpp'
    class_names = ('real', *layouts.FFPP_DEFAULT_METHODS)
    qualities = layouts.FFPP_DEFAULT_QUALITIES
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        'Download FaceForensics++ with its official script (original_sequences/youtube and manipulated_sequences/'
        '<method> at the qualities you need, plus masks) and put the split files train.json/val.json/test.json in '
        '<manual_dir>/splits/. Pass that folder as --manual_dir (or `fdx prepare ffpp --src`).'
    )


class CelebDf(_FaceCrops):
    """Celeb-DF v2 (Celeb-real, YouTube-real, Celeb-synthesis; the official test list)."""

    name = 'celebdf'
    dataset = 'celebdf'
    class_names = ('real', 'fake')
    qualities = ('raw',)
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        'Request Celeb-DF v2 from its authors and extract it so that <manual_dir> holds Celeb-real/, YouTube-real/, '
        'Celeb-synthesis/ and List_of_testing_videos.txt.'
    )


class Dfdm(_FaceCrops):
    """DFDM: videos of five autoencoder face-swap models at H.264 CRF 0/10/23 (model attribution)."""

    name = 'dfdm'
    dataset = 'dfdm'
    class_names = layouts.MODELS
    qualities = layouts.DFDM_QUALITIES
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        'Request DFDM from its authors and extract it so that <manual_dir> holds DFDM_crf0/, DFDM_crf10/ and '
        'DFDM_crf23/ with files id**_id**_<scene>_<model>.mp4.'
    )


class Dfd(_FaceCrops):
    """FF++'s DeepFakeDetection (DFD): actors' reals and their Google/Jigsaw fakes, raw/c23/c40, masks."""

    name = 'dfd'
    dataset = 'dfd'
    class_names = layouts.DFD_CLASSES
    qualities = ('c23',)
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        'Download original_sequences/actors and manipulated_sequences/DeepFakeDetection (and its masks) with the '
        'FaceForensics++ script into the FF++ root; pass that root as --manual_dir.'
    )


class Dfdc(_FaceCrops):
    """DFDC: the 50 training parts (metadata.json), the public validation and test sets (labels.csv)."""

    name = 'dfdc'
    dataset = 'dfdc'
    class_names = ('real', 'fake')
    qualities = ('raw',)
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        'Extract the DFDC training parts (dfdc_train_part_<N>/ with metadata.json, under <manual_dir> or '
        '<manual_dir>/train) and the public test set (test/labels.csv, test/videos/) into <manual_dir>.'
    )


class Dfdcp(_FaceCrops):
    """DFDC Preview: original_videos, method_A, method_B and dataset.json (label, set)."""

    name = 'dfdcp'
    dataset = 'dfdcp'
    class_names = layouts.DFDCP_CLASSES
    qualities = ('raw',)
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        'Extract the DFDC Preview so that <manual_dir> holds dataset.json, original_videos/, method_A/, method_B/.'
    )


class Ffiw(_FaceCrops):
    """FFIW-10K: source (real) and target (fake) videos per split, several faces per video."""

    name = 'ffiw'
    dataset = 'ffiw'
    class_names = ('real', 'fake')
    qualities = ('raw',)
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        'Extract FFIW10K-v1-release (source/, target/ with train/ and val/) as <manual_dir>; the test release '
        '(FFIW10K-v1-release-test) is read with `--option test_root=DIR`.'
    )


class DeeperForensics(_FaceCrops):
    """DeeperForensics-1.0: end-to-end fakes and their perturbed variants (qualities), FF++'s reals, split lists."""

    name = 'deeperforensics'
    dataset = 'deeperforensics'
    class_names = ('real', 'fake')
    qualities = ('raw',)
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        'Extract DeeperForensics-1.0 (manipulated_videos/<variant>/, lists/splits/) as <manual_dir>; its reals are '
        "FF++'s youtube c23 videos (`--option ffpp_root=FFPP`) or `--option reals=source` (source_videos/)."
    )


BUILDERS = {cls.dataset: cls for cls in (Ffpp, CelebDf, Dfdm, Dfd, Dfdc, Dfdcp, Ffiw, DeeperForensics)}
for _cls in BUILDERS.values():
    _cls.BUILDER_CONFIGS = [_cls.make_config()]


def _video_problems(layout: layouts.Layout, metas: dict[str, dict]) -> list[dict[str, str]]:
    """Each unusable video, dropped frame and warning of the extraction, as manifest problems."""
    problems = []
    for job in layout.jobs:
        meta = metas[job.video_id]
        if 'error' in meta:
            problems.append({'item': job.video_id, 'reason': meta['error']})
        problems += [{'item': f'{job.video_id}#{index}', 'reason': reason} for index, reason in meta['dropped']]
        problems += [{'item': job.video_id, 'reason': warning} for warning in meta['warnings']]
    return problems


def prepare(
    dataset: str,
    src: Path,
    out: Path,
    options: Options,
    scan_options: dict[str, Any],
    workers: int = 1,
    shard: tuple[int, int] | None = None,
    merge: bool = False,
) -> dict[str, Any]:
    """Extracts (parallel, resumable), builds the TFDS records, writes the split indices and the manifest.

    `shard=(i, n)` only extracts the i-th of n deterministic shards of the video list (every n-th job of the sorted
    layout, from the i-th) into the shared extraction cache and returns that shard's summary; `merge` then builds
    the records and one manifest from the cache, refusing (ValueError naming them) while videos are missing from it.
    Extraction is per video and deterministic, so the records equal those of an unsharded run.
    """
    if not src.is_dir():
        raise FileNotFoundError(f'{src}: no such dataset folder')
    cls = BUILDERS[dataset]
    config = cls.make_config(options, scan_options)
    predefined = {c.name for c in cls.BUILDER_CONFIGS}  # TFDS refuses a custom config named like a predefined one
    builder = cls(config=config.name if config.name in predefined else config, data_dir=str(out), workers=workers)
    layout = layouts.scan(dataset, src, **builder.builder_config.scan_options)
    cache = builder.extraction_cache()
    if shard is not None:
        index, count = shard
        part = dataclasses.replace(layout, jobs=layout.jobs[index::count], problems=[])
        metas = extract_all(part, options, cache, workers)
        usable = sum(bool(meta.get('records')) for meta in metas.values())
        return {
            'dataset': dataset,
            'config': builder.builder_config.name,
            'shard': f'{index}/{count}',
            'videos': len(part.jobs),
            'usable_videos': usable,
            'problems': _video_problems(part, metas),
        }
    if merge:
        missing = [job.video_id for job in layout.jobs if not extracted(cache, job)]
        if missing:
            raise ValueError(
                f'fdx prepare --merge: {len(missing)} of {len(layout.jobs)} videos are not extracted in {cache} '
                f'(first: {missing[0]}); run the missing shards (fdx prepare ... --shard I/N) first'
            )
    metas = extract_all(layout, options, cache, workers)
    problems = [{'item': item, 'reason': reason} for item, reason in layout.problems] + _video_problems(layout, metas)
    counts = collections.defaultdict(lambda: collections.Counter())
    class_names = builder._class_names()
    for job in layout.jobs:
        items = metas[job.video_id].get('records', [])
        if items:
            counts[job.split][f'videos/{class_names[job.class_id]}'] += 1
            counts[job.split][f'records/{class_names[job.class_id]}'] += len(items)
            if options.faces != 'largest':
                counts[job.split][f'tracks/{class_names[job.class_id]}'] += len({item.get('face', 0) for item in items})
    total = sum(v for split in counts.values() for k, v in split.items() if k.startswith('records/'))
    if total:
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(src)))
        for split in counts:
            write_index(builder, split)
    directory = Path(builder.data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    summary = {
        'dataset': dataset,
        'config': builder.builder_config.name,
        'directory': str(directory),
        'options': dataclasses.asdict(options),
        'scan_options': {
            k: list(v) if isinstance(v, tuple) else v for k, v in builder.builder_config.scan_options.items()
        },
        'class_names': list(class_names),
        'videos': len(layout.jobs),
        'records': total,
        'splits': {split: dict(sorted(c.items())) for split, c in sorted(counts.items())},
        'problems': problems,
    }
    (directory / 'manifest.json').write_text(json.dumps(summary, indent=2))
    return summary


def write_index(builder: tfds.core.DatasetBuilder, split: str):
    """`index_<split>.npz` beside the records: video_index, frame_index, label, class_id, face_index per record.

    Returns the index; when the dataset folder is read-only the index is only returned.
    """
    from fdx.input.records import SplitIndex

    source = builder.as_data_source(split=split)
    keys = ('video_index', 'frame_index', 'label', 'class_id', 'face_index')
    columns = {k: np.empty(len(source), np.int64) for k in keys}
    for i in range(len(source)):
        record = source[i]
        for k in keys:
            columns[k][i] = record.get(k, 0) if k == 'face_index' else record[k]  # 1.0.0 records have none
    index = SplitIndex(**columns)
    try:
        index.save(Path(builder.data_dir) / f'index_{split}.npz')
    except OSError:
        pass
    return index


def load_index(builder: tfds.core.DatasetBuilder, split: str):
    """The split's index, computed (and saved) on first use when the records were built by `tfds build`."""
    from fdx.input.records import SplitIndex

    path = Path(builder.data_dir) / f'index_{split}.npz'
    return SplitIndex.load(path) if path.is_file() else write_index(builder, split)


def format_summary(summary: dict[str, Any]) -> str:
    """A readable end-of-run summary: counts per split and class, problems grouped by reason."""
    lines = [
        f'{summary["dataset"]} ({summary["config"]}): {summary["records"]} records from '
        f'{summary["videos"]} videos in {summary.get("seconds", "?")} s → {summary["directory"]}'
    ]
    for split, counts in summary['splits'].items():
        lines.append(f'  {split}: ' + ', '.join(f'{k}={v}' for k, v in counts.items()))
    reasons = collections.Counter(p['reason'].split(':')[-1].strip() for p in summary['problems'])
    lines.append(f'  problems: {len(summary["problems"])} (details in manifest.json)')
    lines += [f'    {count} × {reason}' for reason, count in reasons.most_common(12)]
    return '\n'.join(lines)
