"""Raw dataset layouts → video jobs: one job per video with its files per quality, labels, split, mask and source.

The scanners read folder trees and official split lists only (no video is opened). Whatever cannot be used (a video
missing on disk or from every split, a missing quality or mask, an unparsable name, an empty folder) is kept in
`Layout.problems` as `(path or video id, reason)`; a job is never dropped without a problem entry. Listings are
sorted, so a layout does not depend on the file system's listing order.

Video ids are `<group>/<file stem>`, unique within a dataset: the group is the method (FF++ fakes), `original` (FF++
reals), the folder (Celeb-DF: `Celeb-real`, `YouTube-real`, `Celeb-synthesis`) or the model (DFDM), e.g.
'Deepfakes/000_003', 'original/000', 'Celeb-synthesis/id0_id1_0000', 'Dfaker/id01_id02_0003_Dfaker'. DFDM ids spell
the model as its class name whatever the file's case, so one video's files in the quality folders form one job.
`source_id` is a bare stem shared by a real video and the fakes made from it ('000' for 'original/000' and
'Deepfakes/000_003').

FaceForensics++ (`scan_ffpp`):
    original_sequences/youtube/<quality>/videos/AAA.mp4
    manipulated_sequences/<method>/<quality>/videos/AAA_BBB.mp4   (target AAA, face of BBB; source_id 'AAA')
    manipulated_sequences/<method>/masks/videos/AAA_BBB.mp4
    splits/{train,val,test}.json   lists of ["AAA", "BBB"] pairs, as in the FaceForensics GitHub repository
                                   (dataset/splits/*.json); copy them to <root>/splits or pass `splits_dir`.
    A pair puts the reals AAA, BBB and the fakes AAA_BBB, BBB_AAA of every method in that split.

Celeb-DF v2 (`scan_celebdf`):
    Celeb-real/idA_NNNN.mp4, YouTube-real/NNNNN.mp4 (real), Celeb-synthesis/idA_idB_NNNN.mp4 (fake)
    List_of_testing_videos.txt   lines `<label> <folder>/<name>.mp4`, label 1 = real, 0 = fake (inverted w.r.t. ours)
    Listed videos are `test`, all others `train`. A fake idA_idB_NNNN is Celeb-real/idA_NNNN with idB's face
    (source_id 'idA_NNNN'): the official test list puts each listed real idA_NNNN next to its fakes idA_id*_NNNN.

DFDM (`scan_dfdm`):
    DFDM_<quality>/ (or <quality>/), quality crf0 | crf10 | crf23, holding (in any sub-folder)
    idA_idB_<scene>_<model>.mp4, model one of MODELS (case, '-' and '_' ignored). All videos are fake; class_id is
    the model's index. source_id is 'idA_idB_<scene>', the input shared by the five models (the names do not say
    which identity's video was converted). Split: 70/30 train/test by video, stratified by model (see `scan_dfdm`).
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FFPP_QUALITIES = ('raw', 'c23', 'c40')
FFPP_METHODS = ('Deepfakes', 'Face2Face', 'FaceSwap', 'NeuralTextures', 'FaceShifter')
FFPP_SPLITS = ('train', 'val', 'test')
FFPP_DEFAULT_QUALITIES = ('c23', 'c40')  # HQ and LQ, the papers' settings
FFPP_DEFAULT_METHODS = ('Deepfakes', 'Face2Face', 'FaceSwap', 'NeuralTextures')
CELEBDF_FOLDERS = {'Celeb-real': 0, 'YouTube-real': 0, 'Celeb-synthesis': 1}  # folder -> label
CELEBDF_TEST_LIST = 'List_of_testing_videos.txt'
DFDM_QUALITIES = ('crf0', 'crf10', 'crf23')
# DFDM's models in the order of the DMA-STA paper's columns FS, LW, IAE, Dfaker, DFL.
MODELS = ('Faceswap', 'Lightweight', 'IAE', 'Dfaker', 'DFL-H128')

_FFPP_REAL = re.compile(r'\d+')
_FFPP_FAKE = re.compile(r'\d+_\d+')
_CELEBDF_FAKE = re.compile(r'(id\d+)_id\d+_(\d+)')
_CELEBDF_LINE = re.compile(r'([01])\s+([^/\s]+)/([^/\s]+)\.mp4')
_DFDM_NAME = re.compile(r'(?P<input>id\d+_id\d+_[^_]+)_(?P<model>.+)')


@dataclass(frozen=True)
class VideoJob:
    """One video to preprocess: its file per quality and its metadata."""

    video_id: str
    paths: dict[str, Path]
    mask: Path | None
    label: int
    class_id: int
    split: str
    source_id: str


@dataclass
class Layout:
    """A scanned dataset: its jobs (every requested quality present in each) and the problems found."""

    dataset: str
    class_names: tuple[str, ...]
    qualities: tuple[str, ...]
    jobs: list[VideoJob]
    problems: list[tuple[str, str]]


def _existing_root(root: str | Path) -> Path:
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f'dataset root {root} does not exist')
    return root


def _check_choices(kind: str, chosen: tuple[str, ...], valid: tuple[str, ...]):
    """Raises ValueError unless `chosen` is a non-empty selection without repeats from `valid`."""
    unknown = [c for c in chosen if c not in valid]
    if not chosen or unknown or len(set(chosen)) != len(chosen):
        raise ValueError(f'{kind} must be distinct values from {", ".join(valid)}; got {", ".join(chosen) or "none"}')


def _videos(folder: Path, recursive: bool = False) -> list[Path]:
    """The sorted .mp4 files in `folder` (and its sub-folders if `recursive`)."""
    found = []
    for path in folder.iterdir():
        if path.is_dir():
            if recursive:
                found.extend(_videos(path, recursive))
        elif path.suffix.lower() == '.mp4':
            found.append(path)
    return sorted(found)


def _ffpp_splits(splits_dir: Path, problems: list[tuple[str, str]]) -> dict[str, set[str]]:
    """Video stem → the splits listing it (reals AAA, BBB and fakes AAA_BBB, BBB_AAA of each pair)."""
    files = {split: splits_dir / f'{split}.json' for split in FFPP_SPLITS}
    if not any(path.is_file() for path in files.values()):
        raise ValueError(f'no FF++ split file found: expected {", ".join(map(str, files.values()))}')
    splits_of: dict[str, set[str]] = {}
    for split, path in files.items():
        if not path.is_file():
            problems.append((str(path), 'missing split file'))
            continue
        try:
            pairs = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f'split file {path} is not valid JSON: {error}') from error
        if not isinstance(pairs, list) or not all(
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, str) for v in pair) for pair in pairs
        ):
            raise ValueError(f'split file {path} is not a list of ["AAA", "BBB"] pairs')
        for a, b in pairs:
            for stem in (a, b, f'{a}_{b}', f'{b}_{a}'):
                splits_of.setdefault(stem, set()).add(split)
    return splits_of


def scan_ffpp(
    root: str | Path,
    *,
    qualities: tuple[str, ...] = FFPP_DEFAULT_QUALITIES,
    methods: tuple[str, ...] = FFPP_DEFAULT_METHODS,
    masks: bool = True,
    splits_dir: str | Path | None = None,
) -> Layout:
    """FaceForensics++: class 0 real, class i the i-th of `methods`; splits from `splits_dir` (default root/splits).

    Raises ValueError when a requested quality folder is missing or no split file exists. A missing split file is
    a problem, and so is each video it would have assigned ('not in any split'). A video missing one of `qualities`
    is skipped (request fewer qualities to keep it); a fake whose mask video is missing keeps `mask=None`.
    """
    root = _existing_root(root)
    qualities, methods = tuple(qualities), tuple(methods)
    _check_choices('qualities', qualities, FFPP_QUALITIES)
    if methods:
        _check_choices('methods', methods, FFPP_METHODS)
    problems: list[tuple[str, str]] = []
    splits_of = _ffpp_splits(Path(splits_dir) if splits_dir is not None else root / 'splits', problems)
    groups = [('original', root / 'original_sequences' / 'youtube')]
    groups += [(method, root / 'manipulated_sequences' / method) for method in methods]
    jobs = []
    for class_id, (group, base) in enumerate(groups):
        pattern = _FFPP_FAKE if class_id else _FFPP_REAL
        found: dict[str, dict[str, Path]] = {}
        for quality in qualities:
            folder = base / quality / 'videos'
            if not folder.is_dir():
                raise ValueError(f'missing FF++ quality folder {folder}')
            videos = _videos(folder)
            if not videos:
                problems.append((str(folder), 'empty folder'))
            for path in videos:
                found.setdefault(path.stem, {})[quality] = path
        mask_dir = base / 'masks' / 'videos'
        with_masks = masks and class_id > 0
        if with_masks and not mask_dir.is_dir():
            problems.append((str(mask_dir), 'missing mask folder: no masks for this method'))
            with_masks = False
        for stem, paths in sorted(found.items()):
            video_id = f'{group}/{stem}'
            if not pattern.fullmatch(stem):
                problems.extend((str(path), 'unparsable file name') for path in paths.values())
                continue
            missing = [q for q in qualities if q not in paths]
            if missing:
                problems.append((video_id, f'missing quality {", ".join(missing)}'))
                continue
            splits = splits_of.get(stem, set())
            if len(splits) != 1:
                problems.append(
                    (video_id, f'in several splits: {", ".join(sorted(splits))}' if splits else 'not in any split')
                )
                continue
            mask = None
            if with_masks:
                mask = mask_dir / f'{stem}.mp4'
                if not mask.is_file():
                    problems.append((video_id, f'missing mask video {mask}'))
                    mask = None
            source_id = stem.split('_')[0]
            split = next(iter(splits))
            jobs.append(VideoJob(video_id, paths, mask, int(class_id > 0), class_id, split, source_id))
        for stem, splits in sorted(splits_of.items()):
            if pattern.fullmatch(stem) and stem not in found:
                problems.append(
                    (f'{group}/{stem}', f'listed in the {"/".join(sorted(splits))} split but missing on disk')
                )
    return Layout('ffpp', ('real', *methods), qualities, jobs, sorted(problems))


def scan_celebdf(root: str | Path, *, qualities: tuple[str, ...] = ('raw',)) -> Layout:
    """Celeb-DF v2: classes real (Celeb-real, YouTube-real) and fake (Celeb-synthesis); the test list gives `test`.

    Celeb-DF has one quality, `raw`; `qualities` exists so that every scanner takes the same option.

    Raises ValueError when the test list or one of the three folders is missing. A listed video keeps its folder's
    label and `test` split when the list's label disagrees (a problem); listed videos missing on disk are problems.
    """
    root = _existing_root(root)
    _check_choices('qualities', tuple(qualities), ('raw',))
    test_list = root / CELEBDF_TEST_LIST
    if not test_list.is_file():
        raise ValueError(f'missing Celeb-DF test list {test_list}')
    problems: list[tuple[str, str]] = []
    listed: dict[str, int] = {}  # video id → label (ours: 1 fake)
    for number, line in enumerate(test_list.read_text().splitlines(), 1):
        if not line.strip():
            continue
        match = _CELEBDF_LINE.fullmatch(line.strip())
        if not match:
            problems.append((f'{test_list}:{number}', f'unparsable test-list line {line.strip()!r}'))
            continue
        video_id = f'{match[2]}/{match[3]}'
        if video_id in listed:
            problems.append((f'{test_list}:{number}', f'{video_id} listed twice'))
            continue
        listed[video_id] = 1 - int(match[1])
    jobs, on_disk = [], set()
    for folder, label in CELEBDF_FOLDERS.items():
        if not (root / folder).is_dir():
            raise ValueError(f'missing Celeb-DF folder {root / folder}')
        videos = _videos(root / folder)
        if not videos:
            problems.append((str(root / folder), 'empty folder'))
        for path in videos:
            video_id = f'{folder}/{path.stem}'
            on_disk.add(video_id)
            source_id = path.stem
            if label:
                match = _CELEBDF_FAKE.fullmatch(path.stem)
                if not match:
                    problems.append((str(path), 'unparsable file name'))
                    continue
                source_id = f'{match[1]}_{match[2]}'
            if video_id in listed and listed[video_id] != label:
                names = ('real', 'fake')
                problems.append((video_id, f'test list says {names[listed[video_id]]}, folder says {names[label]}'))
            split = 'test' if video_id in listed else 'train'
            jobs.append(VideoJob(video_id, {'raw': path}, None, label, label, split, source_id))
    problems.extend((video_id, 'in the test list but missing on disk') for video_id in sorted(listed.keys() - on_disk))
    return Layout('celebdf', ('real', 'fake'), ('raw',), jobs, sorted(problems))


def _dfdm_folder(root: Path, quality: str) -> Path:
    """`DFDM_<quality>` or `<quality>` under root; ValueError when neither or both exist."""
    candidates = [path for path in (root / f'DFDM_{quality}', root / quality) if path.is_dir()]
    if len(candidates) != 1:
        state = 'both' if candidates else 'neither'
        raise ValueError(
            f'DFDM quality {quality}: expected one of {root / f"DFDM_{quality}"}, {root / quality}; found {state}'
        )
    return candidates[0]


def _model_key(name: str) -> str:
    return name.lower().replace('-', '').replace('_', '')


def scan_dfdm(
    root: str | Path,
    *,
    qualities: tuple[str, ...] = DFDM_QUALITIES,
    train_fraction: float = 0.7,
    seed: int = 0,
) -> Layout:
    """DFDM: five model classes (`MODELS`), all fake, split into `train`/`test` by video.

    For each model in `MODELS` order, one `np.random.default_rng(seed)` permutes its sorted video ids and the first
    `round(train_fraction * n)` go to train (the paper's random 70/30 split; never by frame). The split is drawn over
    every parsed video of the requested quality folders before incomplete ones are skipped, so a file missing from
    one folder does not move other videos between splits. Raises ValueError when a quality folder is missing.
    """
    root = _existing_root(root)
    qualities = tuple(qualities)
    _check_choices('qualities', qualities, DFDM_QUALITIES)
    if not 0 < train_fraction < 1:
        raise ValueError(f'train_fraction must be in (0, 1), got {train_fraction}')
    models = {_model_key(model): class_id for class_id, model in enumerate(MODELS)}
    problems: list[tuple[str, str]] = []
    found: dict[str, tuple[int, str, dict[str, Path]]] = {}  # video id → (class id, source id, paths)
    for quality in qualities:
        folder = _dfdm_folder(root, quality)
        videos = _videos(folder, recursive=True)
        if not videos:
            problems.append((str(folder), 'empty folder'))
        for path in videos:
            match = _DFDM_NAME.fullmatch(path.stem)
            if not match:
                problems.append((str(path), 'unparsable file name'))
                continue
            class_id = models.get(_model_key(match['model']))
            if class_id is None:
                problems.append((str(path), f'unknown model name {match["model"]!r}'))
                continue
            model = MODELS[class_id]
            paths = found.setdefault(f'{model}/{match["input"]}_{model}', (class_id, match['input'], {}))[2]
            if quality in paths:
                problems.append((str(path), f'duplicate of {paths[quality]}'))
                continue
            paths[quality] = path
    rng = np.random.default_rng(seed)
    train = set()
    for class_id in range(len(MODELS)):
        ids = sorted(video_id for video_id, (c, _, _) in found.items() if c == class_id)
        order = rng.permutation(len(ids))
        train.update(ids[i] for i in order[: round(train_fraction * len(ids))])
    jobs = []
    for video_id, (class_id, source_id, paths) in sorted(found.items(), key=lambda item: (item[1][0], item[0])):
        missing = [q for q in qualities if q not in paths]
        if missing:
            problems.append((video_id, f'missing quality {", ".join(missing)}'))
            continue
        split = 'train' if video_id in train else 'test'
        jobs.append(VideoJob(video_id, {q: paths[q] for q in qualities}, None, 1, class_id, split, source_id))
    return Layout('dfdm', MODELS, qualities, jobs, sorted(problems))


SCANNERS = {'ffpp': scan_ffpp, 'celebdf': scan_celebdf, 'dfdm': scan_dfdm}


def scan(dataset: str, root: str | Path, **options) -> Layout:
    """Scans `root` with the layout of `dataset` ('ffpp', 'celebdf' or 'dfdm'); options go to its scanner."""
    if dataset not in SCANNERS:
        raise ValueError(f'unknown dataset {dataset!r}; valid: {", ".join(SCANNERS)}')
    return SCANNERS[dataset](root, **options)
