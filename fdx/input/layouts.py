"""Raw dataset layouts → video jobs: one job per video with its files per quality, labels, split, mask and source.

The scanners read folder trees and official split lists only (no video is opened). Whatever cannot be used (a video
missing on disk or from every split, a missing quality or mask, an unparsable name, an empty folder) is kept in
`Layout.problems` as `(path or video id, reason)`; a job is never dropped without a problem entry. Listings are
sorted, so a layout does not depend on the file system's listing order.

Video ids are `<group>/<file stem>`, unique within a dataset: the group is the method (FF++ fakes), `original` (FF++
reals), the folder (Celeb-DF: `Celeb-real`, `YouTube-real`, `Celeb-synthesis`) or the model (DFDM), e.g.
'Deepfakes/000_003', 'original/000', 'Celeb-synthesis/id0_id1_0000', 'Dfaker/id01_id02_0003_Dfaker'. DFDM ids spell
the model as its class name whatever the file's case, so one video's files in the quality folders form one job.
The cross-dataset sets follow suit: 'actors/01__exit_phone_room' and
'DeepFakeDetection/01_02__exit_phone_room__YVGY8LOK' (DFD), 'dfdc_train_part_10/hsypgwsufp' and 'test/<stem>'
(DFDC: the part or evaluation folder), 'method_A/<stem>' (DFDC Preview: the top folder), 'source/<stem>' and
'target/<stem>' (FFIW), 'manipulated_videos/000_M101', 'original/000' and 'source_videos/<stem>'
(DeeperForensics-1.0); where stems repeat within a group (DFDC Preview sub-folders, FFIW splits) the id is the path
relative to the root without `.mp4` (FFIW: '<kind>/<split>/<stem>').
`source_id` is a bare stem shared by a real video and the fakes made from it ('000' for 'original/000' and
'Deepfakes/000_003') where the dataset tells it, else the video's own stem.

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

The cross-dataset benchmark (sources of every path and name are cited in comments above each scanner):

FaceShifter: a method of `scan_ffpp` (methods=('FaceShifter',)), named and split like the other FF++ fakes. It has
    no masks (the download script refuses them), so masks=True gives one 'missing mask folder' problem.

FF++'s DeepFakeDetection (`scan_dfd`, root = the FF++ root):
    original_sequences/actors/<quality>/videos/<actor>__<scene>.mp4            e.g. 01__exit_phone_room (real)
    manipulated_sequences/DeepFakeDetection/<quality>/videos/<target>_<source>__<scene>__<8-char id>.mp4
    manipulated_sequences/DeepFakeDetection/masks/videos/<same stem>.mp4
    Qualities raw | c23 | c40. No official split: all `test`, or split='actors' draws whole actors (a fake's actor
    is its target actor) into train/val/test by `fractions`. A fake's source_id is its real, '<target>__<scene>'.

DFDC (`scan_dfdc`):
    [train/]dfdc_train_part_<N>/metadata.json   {"<name>.mp4": {"label": "REAL"|"FAKE", "original": "<name>.mp4"}}
    [train/]dfdc_train_part_<N>/<name>.mp4
    validation/labels.csv, test/labels.csv      columns filename,label (1 = fake); videos in videos/ or beside it
    Parts are `train` (`val_parts`, `test_parts` move parts), validation/ is `val`, test/ is `test`. Classes real,
    fake; a fake's source_id is the stem of its "original".

DFDC Preview (`scan_dfdcp`):
    dataset.json   {"<folder>/.../<name>.mp4": {"label": "real"|"fake", "set": "train"|"test", ...}}
    original_videos/<a>/<name>.mp4, method_A/<a>/<b>/<name>.mp4, method_B/<a>/<b>/<name>.mp4 (or with videos/
    after the top folder, as SBI keeps them). Classes real, method_A, method_B (label 1 for both); split = "set",
    optionally a seeded `val_fraction` of train moved to `val`.

FFIW-10K (`scan_ffiw`, root = FFIW10K-v1-release, `test_root` = FFIW10K-v1-release-test):
    source/<split>/[videos/]<name>.mp4 (real), target/<split>/[videos/]<name>.mp4 (fake), target_mask/<split>/
    The split is the folder (train, val; test in the test release). Videos show several faces, some manipulated.

DeeperForensics-1.0 (`scan_deeperforensics`):
    manipulated_videos/<variant>/<target id>_<actor id>.mp4   e.g. 000_M101; quality 'raw' = end_to_end, the other
                                                               qualities are the variant folders (`DF_QUALITIES`)
    lists/splits/{train,val,test}.txt                         one fake's file name a line
    Reals (no variants; one file under every quality): FF++'s target videos
    <ffpp_root>/original_sequences/youtube/c23/videos/<target id>.mp4 (the dataset's instruction, default) or the
    source videos source_videos/<actor id>/.../*.mp4 (DeepfakeBench's choice). A fake's source_id is its target id.
"""

import csv
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

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


def _check_fractions(fractions: tuple[float, ...]) -> tuple[float, ...]:
    """Raises ValueError unless `fractions` is (train, val, test), each >= 0, train > 0, summing to 1."""
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) < 0 or fractions[0] <= 0 or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f'fractions must be (train, val, test) >= 0 with train > 0, summing to 1; got {fractions}')
    return fractions


def _assign_groups(keys: set[str], fractions: tuple[float, ...], names: tuple[str, ...], seed: int) -> dict[str, str]:
    """Key → split: `np.random.default_rng(seed)` permutes the sorted keys; the first `round(fractions[0] * n)` get
    names[0], the next `round(fractions[1] * n)` names[1], and so on, the last name taking the rest."""
    ordered = sorted(keys)
    bounds = np.cumsum([round(f * len(ordered)) for f in fractions[:-1]])
    order = np.random.default_rng(seed).permutation(len(ordered))
    return {ordered[index]: names[int(np.searchsorted(bounds, rank, side='right'))] for rank, index in enumerate(order)}


def _quality_files(
    base: Path, qualities: tuple[str, ...], problems: list[tuple[str, str]], what: str, folder_of=None
) -> dict[str, dict[str, Path]]:
    """Stem → {quality: path} over `base/<quality>/videos` (or `folder_of(quality)`); ValueError if one is missing."""
    found: dict[str, dict[str, Path]] = {}
    for quality in qualities:
        folder = folder_of(quality) if folder_of else base / quality / 'videos'
        if not folder.is_dir():
            raise ValueError(f'missing {what} quality folder {folder}')
        videos = _videos(folder)
        if not videos:
            problems.append((str(folder), 'empty folder'))
        for path in videos:
            found.setdefault(path.stem, {})[quality] = path
    return found


def _missing_qualities(video_id: str, paths: dict, qualities: tuple[str, ...], problems: list) -> bool:
    missing = [q for q in qualities if q not in paths]
    if missing:
        problems.append((video_id, f'missing quality {", ".join(missing)}'))
    return bool(missing)


def _sorted_jobs(jobs: list[VideoJob]) -> list[VideoJob]:
    return sorted(jobs, key=lambda job: (job.class_id, job.video_id))


# FF++'s DeepFakeDetection (DFD). Paths: the download script's DATASETS entries 'DeepFakeDetection_original':
# 'original_sequences/actors' and 'DeepFakeDetection': 'manipulated_sequences/DeepFakeDetection', videos saved to
# <dataset path>/<compression>/videos/ and masks to <dataset path>/masks/videos/, compressions raw, c23, c40
# (download-FaceForensics.py, a copy in Gnonymous/FFPP-Plus: download-FaceForensics.py; the same folders in
# mapooon/SelfBlendedImages: src/inference/datasets.py init_dfd and SCLBD/DeepfakeBench: preprocessing/rearrange.py).
# Names, from ondyari/FaceForensics: dataset/README.md ("Original sequence filenames", "Manipulated sequence
# filenames"): reals `<actor number>__<scene name>`, fakes
# `<target actor>_<source actor>__<sequence name>__<8 charactor long experiment id>`.
DFD_CLASSES = ('real', 'DeepFakeDetection')
DFD_SPLITS = ('test', 'actors')
_DFD_REAL = re.compile(r'(?P<actor>\d+)__(?P<scene>.+)')
_DFD_FAKE = re.compile(r'(?P<target>\d+)_(?P<source>\d+)__(?P<scene>.+)__(?P<experiment>[A-Za-z0-9]{8})')


def scan_dfd(
    root: str | Path,
    *,
    qualities: tuple[str, ...] = ('c23',),
    masks: bool = True,
    split: str = 'test',
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> Layout:
    """FF++'s DeepFakeDetection: class 0 real (`original_sequences/actors`), class 1 DeepFakeDetection fakes.

    `root` is the FF++ root (the one `scan_ffpp` reads). DFD has no official split: `split='test'` (default) puts
    every video in `test`, the cross-dataset use. `split='actors'` splits by actor: the actor of a real is its
    leading number, that of a fake its target actor (the first number: the README names fakes
    `<target actor>_<source actor>__...`, and the target actor's footage is what the fake shows, with the source
    actor's face). `np.random.default_rng(seed)` permutes the sorted actor ids of every parsed video of the
    requested qualities (before incomplete ones are skipped, as in `scan_dfdm`); `fractions` (train, val, test) of
    them, rounded in that order, go to each split, the test split taking the rest. The source actor of a fake may be
    in another split (a face seen in training may reappear swapped into a test actor's video).

    A fake's source_id is the real it was made from, `<target actor>__<scene>` (both names spell the same scene
    and the target actor's video; a fake whose real is not on disk keeps it, with a problem). Raises ValueError when
    a requested quality folder is missing; a missing mask folder or mask video is a problem (`mask=None`).
    """
    root = _existing_root(root)
    qualities = tuple(qualities)
    _check_choices('qualities', qualities, FFPP_QUALITIES)
    if split not in DFD_SPLITS:
        raise ValueError(f'split must be one of {", ".join(DFD_SPLITS)}; got {split!r}')
    fractions = _check_fractions(fractions)
    problems: list[tuple[str, str]] = []
    real_base = root / 'original_sequences' / 'actors'
    fake_base = root / 'manipulated_sequences' / 'DeepFakeDetection'
    parsed = []  # (class id, video id, actor, source id, paths)
    for class_id, (group, base, pattern) in enumerate(
        [('actors', real_base, _DFD_REAL), ('DeepFakeDetection', fake_base, _DFD_FAKE)]
    ):
        for stem, paths in sorted(_quality_files(base, qualities, problems, 'DFD').items()):
            match = pattern.fullmatch(stem)
            if not match:
                problems.extend((str(path), 'unparsable file name') for path in paths.values())
                continue
            if class_id:
                actor, source_id = match['target'], f'{match["target"]}__{match["scene"]}'
            else:
                actor, source_id = match['actor'], stem
            parsed.append((class_id, f'{group}/{stem}', actor, source_id, paths))
    real_stems = {source_id for class_id, _, _, source_id, _ in parsed if class_id == 0}
    split_of = {}
    if split == 'actors':
        split_of = _assign_groups({actor for _, _, actor, _, _ in parsed}, fractions, FFPP_SPLITS, seed)
    mask_dir = fake_base / 'masks' / 'videos'
    with_masks = masks
    if masks and not mask_dir.is_dir():
        problems.append((str(mask_dir), 'missing mask folder: no masks for DeepFakeDetection'))
        with_masks = False
    jobs = []
    for class_id, video_id, actor, source_id, paths in parsed:
        if _missing_qualities(video_id, paths, qualities, problems):
            continue
        mask = None
        if class_id:
            if source_id not in real_stems:
                problems.append((video_id, f'its real actors/{source_id} is not on disk (kept)'))
            if with_masks:
                mask = mask_dir / f'{video_id.split("/", 1)[1]}.mp4'
                if not mask.is_file():
                    problems.append((video_id, f'missing mask video {mask}'))
                    mask = None
        job_split = split_of.get(actor, 'test')
        jobs.append(VideoJob(video_id, paths, mask, class_id, class_id, job_split, source_id))
    return Layout('dfd', DFD_CLASSES, qualities, _sorted_jobs(jobs), sorted(problems))


# DFDC (full). Training parts: `dfdc_train_part_<N>` (N = 0..49, no zero padding) holding metadata.json and the
# videos beside it (SCLBD/DeepfakeBench: preprocessing/preprocess.py builds "dfdc_train_part_" + str(i) for i in
# range(0, 50) under DFDC/train/; polimi-ispl/icpr2020dfdc: index_dfdc.py indexes every metadata.json under the
# source dir, test/data/dfdc/dfdc_train_part_0/ holds metadata.json and the .mp4 files). metadata.json maps a file
# name to {"label": "REAL"|"FAKE", "split": "train", "original": <file name>}: Kaggle's data page
# (https://www.kaggle.com/c/deepfake-detection-challenge/data, quoted in
# ynr0007/VIDEO-FORGERY-DETECTION-USING-HYBRID-ARCHITECTURE: readme.md): "original - in the case that a train set
# video is FAKE, the original video is listed here", "split - this is always equal to "train""; REAL entries carry
# no "original" key (polimi-ispl/icpr2020dfdc: test/data/dfdc/dfdc_train_part_10/metadata.json).
# Test set: test/labels.csv, columns filename,label, 1 = fake (SCLBD/DeepfakeBench: preprocessing/rearrange.py reads
# DFDC/test/labels.csv with labels ['DFDC_Real', 'DFDC_Fake'][row['label']]; markobrodaric/HCSI-Net: test.py reads
# root/test/labels.csv and videos from root/test/videos/<filename>; mapooon/SelfBlendedImages:
# src/inference/datasets.py init_dfdc reads data/DFDC/labels.csv and data/DFDC/videos/<filename>, i.e. the test
# folder's content moved to the root). mever-team/DeepFakeChain: code/inputs/sources.py reads the test labels from
# DFDC/test/metadata.json ({name: {"is_fake": 0|1}}) and the validation set (the DFDC paper's 4,000-video public
# validation set, Kaggle's public leaderboard) from DFDC/validation/labels.csv, as mever-team/dimodif's README
# copies DFDC/validation/labels.csv and DFDC/test/labels.csv. Both label files are read here, labels.csv first.
DFDC_LABELS = {'REAL': 0, 'FAKE': 1}
DFDC_EVAL_SETS = (('validation', 'val'), ('test', 'test'))  # folder → split
_DFDC_PART = re.compile(r'dfdc_train_part_(\d+)')


def _dfdc_eval_labels(folder: Path, problems: list[tuple[str, str]]) -> tuple[Path, dict[str, int]]:
    """(label file, file name → label, 1 fake) from `folder/labels.csv`, else `folder/metadata.json` ("is_fake")."""
    csv_path, json_path = folder / 'labels.csv', folder / 'metadata.json'
    labels: dict[str, int] = {}
    if csv_path.is_file():
        with csv_path.open(newline='') as file:
            reader = csv.DictReader(file)
            if not {'filename', 'label'} <= set(reader.fieldnames or ()):
                raise ValueError(f'DFDC label file {csv_path} lacks the columns filename,label')
            for number, row in enumerate(reader, 2):
                name, label = (row['filename'] or '').strip(), (row['label'] or '').strip()
                if label not in ('0', '1') or not name:
                    problems.append((f'{csv_path}:{number}', f'bad label entry {name!r}: {label!r}'))
                elif name in labels:
                    problems.append((f'{csv_path}:{number}', f'{name} listed twice'))
                else:
                    labels[name] = int(label)
        return csv_path, labels
    if json_path.is_file():
        try:
            metadata = json.loads(json_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise ValueError(f'DFDC label file {json_path} is not valid JSON: {error}') from error
        if not isinstance(metadata, dict):
            raise ValueError(f'DFDC label file {json_path} is not a {{file name: {{"is_fake": 0|1}}}} object')
        for name, info in sorted(metadata.items()):
            label = info.get('is_fake') if isinstance(info, dict) else None
            if label not in (0, 1) or isinstance(label, bool):
                problems.append((f'{folder.name}/{Path(name).stem}', f'bad label entry in {json_path}: {label!r}'))
            else:
                labels[name] = label
        return json_path, labels
    raise ValueError(f'missing DFDC label file: expected {csv_path} (or {json_path})')


def _dfdc_eval_videos(folder: Path, problems: list[tuple[str, str]]) -> dict[str, Path]:
    """File name → path over `folder/videos/*.mp4` and `folder/*.mp4`."""
    found: dict[str, Path] = {}
    for videos in (folder / 'videos', folder):
        for path in _videos(videos) if videos.is_dir() else []:
            if path.name in found:
                problems.append((str(path), f'duplicate of {found[path.name]}'))
            else:
                found[path.name] = path
    return found


def scan_dfdc(
    root: str | Path,
    *,
    qualities: tuple[str, ...] = ('raw',),
    val_parts: tuple[int, ...] = (),
    test_parts: tuple[int, ...] = (),
) -> Layout:
    """DFDC: classes real and fake; training parts are `train`, `validation/` is `val` and `test/` is `test`.

    Training parts `dfdc_train_part_<N>` are read from `root` and `root/train`; the parts numbered in `val_parts`
    (`test_parts`) become `val` (`test`), e.g. `val_parts=tuple(range(35, 40)), test_parts=tuple(range(40, 50))` is
    the 35/5/10 part split of polimi-ispl/icpr2020dfdc (isplutils/split.py, 'dfdc-35-5-10'). The evaluation sets are
    folders `validation/` (Kaggle's public leaderboard set) and `test/` (the released test set) with `labels.csv`
    (or `metadata.json`) and their videos in `videos/` or beside the label file; without `test/`, a `root` that
    itself holds `labels.csv` (SBI's layout) is read as the test set. The private test set was not released, so it
    has no layout.

    A fake's source_id is the stem of its `original` (kept, with a problem, when that real is in no scanned part); a
    fake without `original` and every evaluation-set video keep their own stem. A part without a readable
    metadata.json is one problem and is skipped; the other parts go on. Raises ValueError when nothing of DFDC is
    under `root`, a part number is found twice, an evaluation folder has no label file, or part options overlap.
    """
    root = _existing_root(root)
    _check_choices('qualities', tuple(qualities), ('raw',))
    val_parts, test_parts = tuple(int(n) for n in val_parts), tuple(int(n) for n in test_parts)
    if set(val_parts) & set(test_parts):
        raise ValueError(f'val_parts and test_parts overlap: {sorted(set(val_parts) & set(test_parts))}')
    problems: list[tuple[str, str]] = []
    parts: dict[int, Path] = {}
    for base in (root, root / 'train'):
        for folder in sorted(path for path in base.iterdir() if path.is_dir()) if base.is_dir() else []:
            match = _DFDC_PART.fullmatch(folder.name)
            if match:
                number = int(match[1])
                if number in parts:
                    raise ValueError(f'DFDC training part {number} found twice: {parts[number]} and {folder}')
                parts[number] = folder
    eval_sets = [(name, split, root / name) for name, split in DFDC_EVAL_SETS if (root / name).is_dir()]
    if not (root / 'test').is_dir() and (root / 'labels.csv').is_file():
        eval_sets.append(('test', 'test', root))
    if not parts and not eval_sets:
        raise ValueError(
            f'no DFDC data under {root}: expected dfdc_train_part_<N>/ folders (in it or in {root / "train"}), '
            f'test/ or validation/ with labels.csv'
        )
    for number in sorted(set(val_parts + test_parts) - parts.keys()):
        problems.append((f'dfdc_train_part_{number}', 'requested in val_parts/test_parts but not found'))
    entries = []  # (class id, video id, path, split, original stem or None)
    for number, folder in sorted(parts.items()):
        split = 'val' if number in val_parts else 'test' if number in test_parts else 'train'
        meta_path = folder / 'metadata.json'
        try:
            metadata = json.loads(meta_path.read_text())
        except FileNotFoundError:
            problems.append((str(folder), 'missing metadata.json: part skipped'))
            continue
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            problems.append((str(meta_path), f'unparsable metadata: {error}; part skipped'))
            continue
        if not isinstance(metadata, dict):
            problems.append((str(meta_path), 'metadata is not a {file name: {...}} object; part skipped'))
            continue
        on_disk = {path.name: path for path in _videos(folder)}
        for name, info in sorted(metadata.items()):
            video_id = f'{folder.name}/{Path(name).stem}'
            label = info.get('label') if isinstance(info, dict) else None
            label = DFDC_LABELS.get(label) if isinstance(label, str) else None
            if label is None:
                problems.append((video_id, f'bad label entry in {meta_path}: {info!r}'))
                continue
            if name not in on_disk:
                problems.append((video_id, f'in {meta_path} but missing on disk'))
                continue
            original = info.get('original') if label else None
            if label and not (isinstance(original, str) and original):
                problems.append((video_id, 'fake without an original (kept; its own stem is its source_id)'))
                original = None
            entries.append((label, video_id, on_disk[name], split, Path(original).stem if original else None))
        problems.extend((str(on_disk[name]), f'not in {meta_path}') for name in sorted(on_disk.keys() - metadata))
    for name, split, folder in eval_sets:
        label_path, labels = _dfdc_eval_labels(folder, problems)
        on_disk = _dfdc_eval_videos(folder, problems)
        for file_name, label in sorted(labels.items()):
            video_id = f'{name}/{Path(file_name).stem}'
            if file_name not in on_disk:
                problems.append((video_id, f'in {label_path} but missing on disk'))
                continue
            entries.append((label, video_id, on_disk[file_name], split, None))
        problems.extend((str(on_disk[file]), f'not in {label_path}') for file in sorted(on_disk.keys() - labels))
    real_stems = {video_id.split('/', 1)[1] for label, video_id, _, _, _ in entries if label == 0}
    jobs = []
    for label, video_id, path, split, original in entries:
        if original is not None and original not in real_stems:
            problems.append((video_id, f'its original {original} is not in the dataset (kept)'))
        source_id = original or video_id.split('/', 1)[1]
        jobs.append(VideoJob(video_id, {'raw': path}, None, label, label, split, source_id))
    return Layout('dfdc', ('real', 'fake'), ('raw',), _sorted_jobs(jobs), sorted(problems))


# DFDC Preview. dataset.json at the root maps each video's path relative to the root to {"label": "real"|"fake",
# "set": "train"|"test", "target_id", "swapped_id", "augmentations", ...} (SCLBD/DeepfakeBench:
# preprocessing/rearrange.py reads DFDCP/dataset.json, the top folder key.split('/')[0] is method_A or method_B for
# fakes, 'set' is the split; preprocessing/preprocess.py lists the folders 'original_videos', 'method_A',
# 'method_B'; mapooon/SelfBlendedImages: src/inference/datasets.py init_dfdcp reads data/DFDCP/dataset.json,
# label == 'fake', set == 'train'|'test'; mever-team/DeepFakeChain: code/inputs/sources.py reads
# dfdc_preview_set/dataset.json with "target_id" and "swapped_id"). Nesting: fakes method_*/<a>/<b>/<name>.mp4, reals
# original_videos/<a>/<name>.mp4 (markobrodaric/HCSI-Net: test.py globs method_*/*/*/*.mp4 and
# original_videos/*/*.mp4); SBI's copy inserts a `videos` level (method_*/videos/*/*/*.mp4,
# original_videos/videos/*/*.mp4): both are read.
DFDCP_FOLDERS = ('original_videos', 'method_A', 'method_B')  # class ids 0, 1, 2
DFDCP_CLASSES = ('real', 'method_A', 'method_B')
DFDCP_LABELS = {'real': 0, 'fake': 1}


def scan_dfdcp(
    root: str | Path, *, qualities: tuple[str, ...] = ('raw',), val_fraction: float = 0.0, seed: int = 0
) -> Layout:
    """DFDC Preview: classes real (`original_videos`), method_A and method_B; splits from dataset.json's "set".

    The class is the top folder, the label 0 real / 1 fake; an entry whose "label" disagrees with its folder keeps
    the folder's (a problem), one with a label or set outside real/fake and train/val/test is skipped (a problem).
    `val_fraction` > 0 moves that fraction of the train set's source ids (`np.random.default_rng(seed)` permuting
    the sorted ids of every valid train entry, as in `_assign_groups`) to `val`. Video ids are
    `<top folder>/<stem>`, or the relative path without `.mp4` for stems that repeat within a top folder.

    source_id: a video's own stem. The naming does not say which real a fake came from; a fake whose entry has a
    "source_video" naming (by stem) a listed real takes that real's stem. That field is seen in third-party code
    reading dataset.json, its format unverified, so it is only used when it matches. Raises ValueError when
    dataset.json or one of the three folders is missing or dataset.json is not a JSON object.
    """
    root = _existing_root(root)
    _check_choices('qualities', tuple(qualities), ('raw',))
    if not 0 <= val_fraction < 1:
        raise ValueError(f'val_fraction must be in [0, 1), got {val_fraction}')
    index_path = root / 'dataset.json'
    if not index_path.is_file():
        raise ValueError(f'missing DFDCP index {index_path}')
    try:
        index = json.loads(index_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f'DFDCP index {index_path} is not valid JSON: {error}') from error
    if not isinstance(index, dict):
        raise ValueError(f'DFDCP index {index_path} is not a {{relative path: {{...}}}} object')  # noqa: TRY004
    problems: list[tuple[str, str]] = []
    on_disk: dict[str, Path] = {}  # relative path as dataset.json spells it → file
    for folder in DFDCP_FOLDERS:
        if not (root / folder).is_dir():
            raise ValueError(f'missing DFDCP folder {root / folder}')
        for path in _videos(root / folder, recursive=True):
            parts = path.relative_to(root).parts
            key = '/'.join(parts[:1] + parts[2:] if len(parts) > 2 and parts[1] == 'videos' else parts)
            if key in on_disk:
                problems.append((str(path), f'duplicate of {on_disk[key]}'))
            else:
                on_disk[key] = path
    entries = []  # (key, class id, split, info)
    for key, info in sorted(index.items()):
        parts = key.split('/')
        if len(parts) < 2 or parts[0] not in DFDCP_FOLDERS or not key.lower().endswith('.mp4') or '' in parts:
            problems.append((key, 'unexpected path in dataset.json'))
            continue
        label = info.get('label') if isinstance(info, dict) else None
        label = DFDCP_LABELS.get(label) if isinstance(label, str) else None
        split = info.get('set') if isinstance(info, dict) else None
        if label is None or split not in FFPP_SPLITS:
            problems.append((key, f'bad label entry in {index_path}: {info!r}'))
            continue
        class_id = DFDCP_FOLDERS.index(parts[0])
        if label != int(class_id > 0):
            problems.append((key, f'dataset.json says {info["label"]}, folder {parts[0]} says otherwise (kept)'))
        entries.append((key, class_id, split, info))
    stems = [(key.split('/')[0], PurePosixPath(key).stem) for key, _, _, _ in entries]
    repeated = {stem for stem, count in Counter(stems).items() if count > 1}
    real_stems = {stem for (top, stem) in stems if top == DFDCP_FOLDERS[0]}
    parsed = []  # (video id, class id, split, source id, key)
    for (key, class_id, split, info), (top, stem) in zip(entries, stems):
        video_id = key[: -len('.mp4')] if (top, stem) in repeated else f'{top}/{stem}'
        source = info.get('source_video')
        source_stem = PurePosixPath(source).stem if class_id and isinstance(source, str) else None
        parsed.append((video_id, class_id, split, source_stem if source_stem in real_stems else stem, key))
    if val_fraction > 0:
        train = {source_id for _, _, split, source_id, _ in parsed if split == 'train'}
        moved = _assign_groups(train, (1 - val_fraction, val_fraction), ('train', 'val'), seed)
        parsed = [(v, c, moved.get(s, split) if split == 'train' else split, s, k) for v, c, split, s, k in parsed]
    jobs = []
    for video_id, class_id, split, source_id, key in parsed:
        if key not in on_disk:
            problems.append((key, 'in dataset.json but missing on disk'))
            continue
        jobs.append(VideoJob(video_id, {'raw': on_disk[key]}, None, int(class_id > 0), class_id, split, source_id))
    problems.extend((str(on_disk[key]), 'not in dataset.json') for key in sorted(on_disk.keys() - index.keys()))
    return Layout('dfdcp', DFDCP_CLASSES, ('raw',), _sorted_jobs(jobs), sorted(problems))


# FFIW-10K. tfzhou/FFIW: README.md ("Dataset Structure"): FFIW10K/{source,target,target_mask}/{train,val}; the masks
# are of the target videos, so target = manipulated (fake), source = real; mapooon/SelfBlendedImages:
# src/inference/datasets.py init_ffiw reads FFIW10K-v1-release/source/val/videos/*.mp4 as label 0 and
# target/val/videos/*.mp4 as label 1. Other loaders keep the videos directly in the split folder: the test release
# FFIW10K-v1-release-test/{source,target}/test/*.mp4 (markobrodaric/HCSI-Net: test.py get_ffiw_test_split, sources
# label 0, targets label 1); SBI-derived loaders (repositories unnamed by the code search) glob
# FFIW10K-v1-release/source/val/*.mp4 and source/train/*.mp4 the same way. Both are read.
FFIW_FOLDERS = {'source': 0, 'target': 1}  # folder → label


def scan_ffiw(
    root: str | Path,
    *,
    qualities: tuple[str, ...] = ('raw',),
    test_root: str | Path | None = None,
    masks: bool = False,
) -> Layout:
    """FFIW-10K: classes real (`source/`) and fake (`target/`); the split is the sub-folder (train, val, test).

    `root` is the release folder holding source/ and target/ (FFIW10K-v1-release); `test_root` the separate test
    release (FFIW10K-v1-release-test), read the same way. Videos are `<kind>/<split>/videos/*.mp4` or, where that
    folder does not exist, `<kind>/<split>/*.mp4`. SBI and others evaluate cross-dataset on `val` (250 + 250).
    FFIW videos show several faces, only some of them manipulated: prepare's multi-face option handles that.

    Video ids are `source/<stem>` and `target/<stem>`, or `<kind>/<split>/<stem>` for stems repeated across
    splits. source_id is the video's own stem: the README does not say how a target is named after its source, so
    a real and its fake share it only if their names coincide. With `masks`, a target's mask is assumed to be
    `target_mask/<split>[/videos]/<stem>.mp4` (the README shows only the folder; the file naming is unverified).
    Raises ValueError when source/ or target/ is missing or no split folder exists; a split with only one of them
    is a problem.
    """
    roots = [_existing_root(root)] + ([_existing_root(test_root)] if test_root is not None else [])
    _check_choices('qualities', tuple(qualities), ('raw',))
    problems: list[tuple[str, str]] = []
    found = []  # (kind, split, path, mask folder or None)
    split_folders = 0
    for base in roots:
        for kind in FFIW_FOLDERS:
            if not (base / kind).is_dir():
                raise ValueError(f'missing FFIW folder {base / kind}')
        for split in FFPP_SPLITS:
            folders = {kind: base / kind / split for kind in FFIW_FOLDERS}
            if not any(folder.is_dir() for folder in folders.values()):
                continue
            split_folders += 1
            for kind, folder in folders.items():
                if not folder.is_dir():
                    problems.append((str(folder), f'missing folder: the {split} split has no {kind} videos'))
                    continue
                videos_dir = folder / 'videos' if (folder / 'videos').is_dir() else folder
                videos = _videos(videos_dir)
                if not videos:
                    problems.append((str(videos_dir), 'empty folder'))
                mask_dir = None
                if masks and FFIW_FOLDERS[kind]:
                    mask_dir = base / 'target_mask' / split
                    mask_dir = mask_dir / 'videos' if (mask_dir / 'videos').is_dir() else mask_dir
                    if not mask_dir.is_dir():
                        problems.append((str(mask_dir), 'missing mask folder: no masks for this split'))
                        mask_dir = None
                found.extend((kind, split, path, mask_dir) for path in videos)
    if not split_folders:
        raise ValueError(f'no FFIW split folder: expected {roots[-1]}/source/<train|val|test>/ and target/<...>')
    splits_of = Counter((kind, path.stem) for kind, _, path, _ in found)
    jobs, ids = [], {}
    for kind, split, path, mask_dir in found:
        video_id = f'{kind}/{split}/{path.stem}' if splits_of[kind, path.stem] > 1 else f'{kind}/{path.stem}'
        if video_id in ids:
            problems.append((str(path), f'duplicate of {ids[video_id]}'))
            continue
        ids[video_id] = path
        mask = None
        if mask_dir is not None:
            mask = mask_dir / f'{path.stem}.mp4'
            if not mask.is_file():
                problems.append((video_id, f'missing mask video {mask}'))
                mask = None
        label = FFIW_FOLDERS[kind]
        jobs.append(VideoJob(video_id, {'raw': path}, mask, label, label, split, path.stem))
    return Layout('ffiw', ('real', 'fake'), ('raw',), _sorted_jobs(jobs), sorted(problems))


# DeeperForensics-1.0. EndlessSora/DeeperForensics-1.0: dataset/README.md: manipulated_videos/ holds 11 variant
# folders: end_to_end (the 1,000 raw DF-VAE videos of the paper), reenact_postprocess (1,000 alternative raw ones),
# end_to_end_level_<i> (i = 1..5: random-type distortions at level i), end_to_end_random_level (random type and
# level), end_to_end_mix_<j>_distortions (j = 2..4 mixed distortions); the 7 distortion types (CS, CC, BW, GNC, GB,
# JPEG, VC: perturbation/ARGUMENTS.md) are not folders. Every variant folder holds the same 1,000 names
# `<target_id>_<source_id>.mp4`: the three-digit id of the FF++ target video and the source actor's id (M004, W101).
# lists/splits/{train,val,test}.txt: one manipulated video name a line (703 : 96 : 201 videos, disjoint source
# identities); "the 'real' part ... are the target videos, i.e., 1,000 refined YouTube videos collected by
# FaceForensics++", not distributed with DF-1.0: "download the target videos from FaceForensics++ with C23", found
# "using the first three digit ID". DeepfakeBench instead uses the source videos as the reals (SCLBD/DeepfakeBench:
# preprocessing/rearrange.py 'DF_real' from source_videos/<actor>/, the fakes from
# manipulated_videos/<perturbation>/, split lists lists/splits/{train,test,val}.txt, names before the first '.').
# Source videos: source_videos/<actor id>/<sub-folders by light, emotion, camera>/<actor id>_....mp4 (the README).
DF_VARIANTS = (
    'end_to_end',
    'reenact_postprocess',
    *(f'end_to_end_level_{i}' for i in range(1, 6)),
    'end_to_end_random_level',
    *(f'end_to_end_mix_{j}_distortions' for j in range(2, 5)),
)
DF_QUALITIES = ('raw', *DF_VARIANTS[1:])  # quality 'raw' is the end_to_end folder
DF_REALS = ('ffpp', 'source', 'none')
_DF_FAKE = re.compile(r'(?P<target>\d{3})_(?P<actor>[MW]\d{3})')


def _df_splits(splits_dir: Path, problems: list[tuple[str, str]]) -> dict[str, set[str]]:
    """Fake stem → the splits listing it, from `splits_dir/{train,val,test}.txt`."""
    files = {split: splits_dir / f'{split}.txt' for split in FFPP_SPLITS}
    if not any(path.is_file() for path in files.values()):
        raise ValueError(f'no DeeperForensics split list found: expected {", ".join(map(str, files.values()))}')
    splits_of: dict[str, set[str]] = {}
    for split, path in files.items():
        if not path.is_file():
            problems.append((str(path), 'missing split list'))
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            name = PurePosixPath(line.strip()).name
            if not name:
                continue
            stem = name[:-4] if name.lower().endswith('.mp4') else name
            if not _DF_FAKE.fullmatch(stem):
                problems.append((f'{path}:{number}', f'unparsable split-list line {line.strip()!r}'))
                continue
            splits_of.setdefault(stem, set()).add(split)
    return splits_of


def _one_split(video_id: str, splits: set[str], problems: list[tuple[str, str]]) -> str | None:
    if len(splits) != 1:
        problems.append((video_id, f'in several splits: {", ".join(sorted(splits))}' if splits else 'not in any split'))
        return None
    return next(iter(splits))


def scan_deeperforensics(
    root: str | Path,
    *,
    qualities: tuple[str, ...] = ('raw',),
    reals: str = 'ffpp',
    ffpp_root: str | Path | None = None,
    ffpp_quality: str = 'c23',
    splits_dir: str | Path | None = None,
) -> Layout:
    """DeeperForensics-1.0: classes real and fake (DF-VAE); splits from `lists/splits` (or `splits_dir`).

    Qualities are the variant folders: 'raw' is `end_to_end`, any other quality is the folder of that name
    (`DF_QUALITIES`); a fake's paths hold one file per requested variant. `reals` picks the real class:
    'ffpp' (default, the dataset's own instruction): FF++'s target videos
    `<ffpp_root>/original_sequences/youtube/<ffpp_quality>/videos/<target_id>.mp4` (c23 as the README says), ids
    'original/<target_id>', in the split of the fakes made from them; 'source': DF-1.0's source videos (DeepfakeBench's
    choice; 48,475 videos), ids 'source_videos/<stem>', in the split of their actor's fakes; 'none': fakes only.
    Reals have no variants: under every requested quality a real's path is its single file.

    A fake's source_id is its target id, the stem of its FF++ real; a source video's is its own stem. Reals in no
    split (their fakes unlisted) are problems. Raises ValueError when a variant folder, the reals' folder or every
    split list is missing, or `reals='ffpp'` comes without `ffpp_root`.
    """
    root = _existing_root(root)
    qualities = tuple(qualities)
    _check_choices('qualities', qualities, DF_QUALITIES)
    if reals not in DF_REALS:
        raise ValueError(f'reals must be one of {", ".join(DF_REALS)}; got {reals!r}')
    _check_choices('ffpp_quality', (ffpp_quality,), FFPP_QUALITIES)
    if reals == 'ffpp' and ffpp_root is None:
        raise ValueError("reals='ffpp' needs ffpp_root, the FF++ root holding original_sequences/youtube")
    problems: list[tuple[str, str]] = []
    splits_of = _df_splits(Path(splits_dir) if splits_dir is not None else root / 'lists' / 'splits', problems)
    variant = dict(zip(DF_QUALITIES, DF_VARIANTS))
    found = _quality_files(
        root, qualities, problems, 'DeeperForensics', lambda q: root / 'manipulated_videos' / variant[q]
    )
    jobs = []
    for stem, paths in sorted(found.items()):
        video_id = f'manipulated_videos/{stem}'
        match = _DF_FAKE.fullmatch(stem)
        if not match:
            problems.extend((str(path), 'unparsable file name') for path in paths.values())
            continue
        if _missing_qualities(video_id, paths, qualities, problems):
            continue
        split = _one_split(video_id, splits_of.get(stem, set()), problems)
        if split:
            jobs.append(VideoJob(video_id, paths, None, 1, 1, split, match['target']))
    for stem, splits in sorted(splits_of.items()):
        if stem not in found:
            problems.append(
                (f'manipulated_videos/{stem}', f'listed in the {"/".join(sorted(splits))} split but missing on disk')
            )
    by_key: dict[str, set[str]] = {}  # target id or actor id → splits of its listed fakes
    for stem, splits in splits_of.items():
        match = _DF_FAKE.fullmatch(stem)
        by_key.setdefault(match['target' if reals == 'ffpp' else 'actor'], set()).update(splits)
    real_files = []  # (video id, key, path)
    if reals == 'ffpp':
        folder = Path(ffpp_root) / 'original_sequences' / 'youtube' / ffpp_quality / 'videos'
        if not folder.is_dir():
            raise ValueError(f'missing FF++ real folder {folder} (DeeperForensics reals)')
        real_files = [(f'original/{path.stem}', path.stem, path) for path in _videos(folder)]
    elif reals == 'source':
        base = root / 'source_videos'
        if not base.is_dir():
            raise ValueError(f'missing DeeperForensics folder {base}')
        for actor in sorted(path for path in base.iterdir() if path.is_dir()):
            real_files += [(f'source_videos/{path.stem}', actor.name, path) for path in _videos(actor, True)]
    seen: dict[str, Path] = {}
    for video_id, key, path in real_files:
        if video_id in seen:
            problems.append((str(path), f'duplicate of {seen[video_id]}'))
            continue
        seen[video_id] = path
        split = _one_split(video_id, by_key.get(key, set()), problems)
        if split:
            source_id = video_id.split('/', 1)[1]
            jobs.append(VideoJob(video_id, {q: path for q in qualities}, None, 0, 0, split, source_id))
    return Layout('deeperforensics', ('real', 'fake'), qualities, _sorted_jobs(jobs), sorted(problems))


SCANNERS = {
    'ffpp': scan_ffpp,
    'celebdf': scan_celebdf,
    'dfdm': scan_dfdm,
    'dfd': scan_dfd,
    'dfdc': scan_dfdc,
    'dfdcp': scan_dfdcp,
    'ffiw': scan_ffiw,
    'deeperforensics': scan_deeperforensics,
}


def scan(dataset: str, root: str | Path, **options) -> Layout:
    """Scans `root` with the layout of `dataset` (a key of `SCANNERS`: 'ffpp', 'celebdf', 'dfdm', 'dfd', 'dfdc',
    'dfdcp', 'ffiw' or 'deeperforensics'); options go to its scanner (`scan_<dataset>`)."""
    if dataset not in SCANNERS:
        raise ValueError(f'unknown dataset {dataset!r}; valid: {", ".join(SCANNERS)}')
    return SCANNERS[dataset](root, **options)
