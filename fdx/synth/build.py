"""`fdx synth --out DIR [--seed S] [--size mini|small] [--difficulty standard] [--report]`: an embedded miniature
forgery benchmark in the layouts of DFDM, FaceForensics++ and Celeb-DF v2, made offline.

Real face imagery (skimage's astronaut) becomes distinct identities (landmark-driven morphing, skin tone, lighting,
background; `fdx.synth.faces`), animated into "real" videos with head motion, blinking and talking. Fakes:
- DFDM (`DIR/dfdm/DFDM_crf{0,10,23}/id<src>_id<dst>_<scene>_<model>.mp4`): the five DFDM autoencoders
  (`fdx.synth.generators`, Table 2 of the DMA-STA paper) swap each identity of one pair into the other's videos, with
  the same pasting and blending for all five, H.264 at CRF 0, 10 and 23.
- FaceForensics++ (`DIR/ffpp`): reals as `original_sequences/youtube`; `Deepfakes` (the baseline autoencoder per
  identity pair), `FaceSwap` (landmark-warp graphics swap), `Face2Face` (the target keeps its identity; mouth, lids
  and brows follow the other video's expression) and `NeuralTextures` (the mouth region re-rendered), each with its
  mask videos, at c23 and c40 (CRF 23 / 40), and official-style `splits/{train,val,test}.json` pair lists.
- Celeb-DF v2 (`DIR/celebdf`): `Celeb-real`, `YouTube-real`, `Celeb-synthesis` and `List_of_testing_videos.txt`, with
  people of its own, swapped by an autoencoder FF++'s Deepfakes do not use (DFDM's Lightweight) with the improved
  blending Celeb-DF describes (full colour transfer, a wider feathered mask): the offline cross-dataset test.
`fdx prepare dfdm|ffpp|celebdf` reads the trees unchanged. `Difficulty` (`--difficulty`) sets how closely the fakes
imitate the reals. Everything is deterministic for a seed, on any machine (x264 on one thread; see
`fdx.synth.generators` for the autoencoders); an existing output of the same seed, size and difficulty is reused.
"""

import argparse
import concurrent.futures
import dataclasses
import json
import multiprocessing
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fdx.input.video import h264_args, rawvideo_input_args, require_ffmpeg

FPS = 25
DFDM_CRFS = (0, 10, 23)
FFPP_CRFS = {'c23': 23, 'c40': 40}
ALIGNED = 128  # aligned face crop size (the largest generator input, DFL-H128)
CELEBDF_CRF = 18  # Celeb-DF's one quality: H.264 at CRF 18 (visually lossless)
CELEBDF_GENERATOR = 'Lightweight'  # an autoencoder FF++'s Deepfakes do not use (with Celeb-DF's improved blending)


@dataclasses.dataclass(frozen=True)
class Size:
    """How much the benchmark holds (`--size`)."""

    identities: int  # FF++/DFDM identities, paired (0, 1), (2, 3), …
    videos_per_identity: int  # real videos per identity (FF++: each pair of scenes is one FF++ pair)
    dfdm_videos_per_identity: int  # videos of the DFDM pair (identities 0 and 1): each model makes 2× this many fakes
    frames: int  # per video
    frame_size: int
    generator_steps: int  # autoencoder training steps per identity pair (× the model's `GeneratorSpec.steps_scale`)
    generator_batch: int
    generator_width: int  # first encoder conv's channels (faceswap: 128), fdx.synth.generators
    ffpp_split: tuple[int, int, int]  # FF++ pairs in train / val / test
    celebdf_identities: int  # further identities (paired) for Celeb-real and Celeb-synthesis
    celebdf_videos_per_identity: int
    celebdf_test_videos: int  # the last this many scenes of each Celeb identity (and their fakes) are listed as test
    youtube_videos: int  # YouTube-real: one video each of as many further identities (half of them listed as test)


SIZES = {
    'tiny': Size(
        identities=2,
        videos_per_identity=2,
        dfdm_videos_per_identity=2,
        frames=6,
        frame_size=256,
        generator_steps=60,
        generator_batch=4,
        generator_width=8,
        ffpp_split=(1, 0, 1),
        celebdf_identities=2,
        celebdf_videos_per_identity=2,
        celebdf_test_videos=1,
        youtube_videos=2,
    ),  # tests only
    'mini': Size(
        identities=4,
        videos_per_identity=8,
        dfdm_videos_per_identity=14,
        frames=32,
        frame_size=256,
        generator_steps=200,
        generator_batch=8,
        generator_width=8,
        ffpp_split=(8, 4, 4),
        celebdf_identities=2,
        celebdf_videos_per_identity=6,
        celebdf_test_videos=3,
        youtube_videos=4,
    ),
    'small': Size(
        identities=8,
        videos_per_identity=16,
        dfdm_videos_per_identity=56,
        frames=32,
        frame_size=256,
        generator_steps=1000,
        generator_batch=16,
        generator_width=16,
        ffpp_split=(40, 12, 12),
        celebdf_identities=4,
        celebdf_videos_per_identity=12,
        celebdf_test_videos=6,
        youtube_videos=16,
    ),
}


@dataclasses.dataclass(frozen=True)
class Difficulty:
    """How closely the fakes imitate the reals (`--difficulty`); the same for every tree and method."""

    colour_match: float  # share (0-1) of the LAB colour transfer of a swapped face to the target's (faceswap's and
    #                      DeepFaceLab's colour correction; FaceSwap's graphics swap and Celeb-DF always use 1)
    feather: float  # blending-mask feather σ as a fraction of the face width: softer seams when larger
    training: float  # generator training steps = training × Size.generator_steps: finer swaps when larger
    smoothing: float  # σ in pixels (128-px aligned crop) of a low-pass over autoencoder outputs before pasting: hides
    #                   generator noise, as compression does


DIFFICULTIES = {
    'easy': Difficulty(colour_match=0.0, feather=0.02, training=1.0, smoothing=0.0),
    'standard': Difficulty(colour_match=1.0, feather=0.05, training=1.0, smoothing=0.6),
    'hard': Difficulty(colour_match=1.0, feather=0.08, training=2.0, smoothing=1.0),
}
DEFAULT_DIFFICULTY = 'standard'


class SynthError(RuntimeError):
    """ffmpeg failed to encode a video."""


def encode(frames: np.ndarray, outputs: Sequence[tuple[Path, int]]) -> None:
    """uint8 RGB [T, H, W, 3] (or grey [T, H, W]) → H.264 (libx264, yuv420p) at each (path, crf), every frame kept.

    One ffmpeg process per video writes all its qualities; x264 runs on one thread, so the bytes do not depend on the
    machine's core count.
    """
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)
    height, width = frames.shape[1:3]
    command = ['ffmpeg', '-y', '-loglevel', 'error', *rawvideo_input_args(width, height, FPS)]
    for path, crf in outputs:
        path.parent.mkdir(parents=True, exist_ok=True)
        command += [*h264_args(crf), str(path)]
    result = subprocess.run(command, check=False, input=np.ascontiguousarray(frames).tobytes(), capture_output=True)
    if result.returncode:
        names = ', '.join(str(path) for path, _ in outputs)
        raise SynthError(f'ffmpeg failed writing {names}: {result.stderr.decode(errors="replace")[-500:]}')


class Encoder:
    """Encodes videos in background threads (one ffmpeg process per core this process may use) while the next ones
    are made."""

    def __init__(self):
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(os.sched_getaffinity(0)))
        self._jobs: list[concurrent.futures.Future] = []
        self.files = 0

    def submit(self, frames: np.ndarray, outputs: Sequence[tuple[Path, int]]) -> None:
        self._jobs.append(self._pool.submit(encode, frames, outputs))
        self.files += len(outputs)

    def wait(self) -> None:
        """Waits for every video; raises the first failure."""
        try:
            for job in self._jobs:
                job.result()
        finally:
            self._pool.shutdown(cancel_futures=True)


@dataclasses.dataclass
class Video:
    identity: int
    scene: int
    frames: np.ndarray  # uint8 [T, H, W, 3]
    landmarks: np.ndarray  # float32 [T, 68, 2]


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def real_videos(scenes: Sequence[int], size: Size, seed: int) -> dict[int, list[Video]]:
    """`scenes[i]` "real" videos of each identity i (identity i and video s are drawn from (seed, i) and (seed, i, s))."""
    from fdx.synth import faces

    identities = faces.make_identities(len(scenes), seed, size.frame_size)
    videos = {}
    for i, (identity, count) in enumerate(zip(identities, scenes)):
        videos[i] = []
        for scene in range(count):
            frames, landmarks = faces.animate(identity, size.frames, _seed(seed, i, scene), fps=FPS)
            videos[i].append(Video(i, scene, frames, landmarks))
    return videos


def aligned_faces(videos: Sequence[Video]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Aligned crops of every frame, and the alignment matrix of each frame per video."""
    from fdx.synth import faces

    crops, matrices = [], []
    for video in videos:
        pairs = [faces.align_face(f, lm, ALIGNED) for f, lm in zip(video.frames, video.landmarks)]
        crops += [c for c, _ in pairs]
        matrices.append(np.stack([m for _, m in pairs]))
    return np.stack(crops), matrices


def blend_masks(target: Video, difficulty: Difficulty) -> np.ndarray:
    """The autoencoder swaps' blending masks of a target video: its landmark hulls feathered by `difficulty.feather`
    (float32 [T, H, W]; the same for every model swapping into it)."""
    from fdx.synth import faces

    shape = target.frames.shape[1:3]
    return np.stack(
        [faces.face_mask(lm, shape, feather=difficulty.feather * faces.face_width(lm)) for lm in target.landmarks]
    )


def paste_swap(
    target: Video,
    faces_out: np.ndarray,
    matrices: np.ndarray,
    masks: np.ndarray,
    difficulty: Difficulty,
    colour_match: float | None = None,
) -> np.ndarray:
    """Swapped aligned faces pasted into the target frames: low-passed (`difficulty.smoothing`), colour-corrected
    towards the target face (`colour_match`, default `difficulty.colour_match`) and alpha-blended with `masks`
    (`blend_masks`) inside their bounding windows. Returns the frames."""
    import cv2

    from fdx.synth import faces

    colour_match = difficulty.colour_match if colour_match is None else colour_match
    fakes = target.frames.copy()
    for fake, frame, face, matrix, mask in zip(fakes, target.frames, faces_out, matrices, masks):
        face = cv2.resize(face, (ALIGNED, ALIGNED), interpolation=cv2.INTER_CUBIC)
        if difficulty.smoothing:
            face = cv2.GaussianBlur(face, (0, 0), difficulty.smoothing)
        x0, y0, x1, y1 = faces.mask_box(mask)
        window = (slice(y0, y1), slice(x0, x1))
        pasted = faces.paste_face(frame, face, matrix)[window]
        if colour_match:
            matched = faces.colour_transfer(pasted, frame[window], mask[window])
            pasted = np.rint(colour_match * matched + (1 - colour_match) * pasted).astype(np.uint8)
        fake[window] = faces.blend(frame[window], pasted, mask[window])
    return fakes


def _masks_u8(masks) -> np.ndarray:
    return (np.stack(masks) * 255).round().astype(np.uint8)


def _pin_to_one_core(counter) -> None:
    """Generator worker initialiser, before jax is imported: the worker runs on one core (worker k on the k-th allowed
    core), so XLA's thread pool has one thread and results do not depend on the machine's core count."""
    with counter.get_lock():
        k, counter.value = counter.value, counter.value + 1
    cores = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cores[k % len(cores)]})


class GeneratorPool:
    """Trains autoencoders and swaps faces in worker processes of one core each (`_pin_to_one_core`), as many as the
    machine's cores, while the main process makes the other fakes: the same results with 1 or 64 cores."""

    def __init__(self, size: Size, difficulty: Difficulty):
        context = multiprocessing.get_context('spawn')
        workers = len(os.sched_getaffinity(0))
        self._pool = concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=context, initializer=_pin_to_one_core, initargs=(context.Value('i', 0),)
        )
        self.steps = difficulty.training * size.generator_steps
        self.training = {'batch_size': size.generator_batch, 'width': size.generator_width}

    def submit(self, name: str, pairs: Sequence[tuple[np.ndarray, np.ndarray, int]]) -> concurrent.futures.Future:
        """Future of `generators.train_and_swap`: per (faces A, faces B, seed), (B's faces as A, A's as B, losses)."""
        from fdx.synth import generators

        steps = max(1, round(self.steps * generators.SPECS[name].steps_scale))
        return self._pool.submit(generators.train_and_swap, name, pairs, steps=steps, **self.training)

    def close(self) -> None:
        self._pool.shutdown(cancel_futures=True)


def _autoencoder_swaps(
    swapped: tuple, pair, videos, aligned, masks_of, difficulty: Difficulty, colour_match: float | None = None
) -> dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]]:
    """Each identity of `pair` swapped into the other's videos (`swapped`: a `train_and_swap` result), pasted and
    blended with `masks_of(video)`: {(source, target, scene): (frames, masks)}."""
    a, b = pair
    b_as_a, a_as_b, _ = swapped
    out = {}
    for source, target, faces_out in ((a, b, b_as_a), (b, a, a_as_b)):
        frames = len(videos[target][0].frames)
        for k, video in enumerate(videos[target]):
            crops, masks = faces_out[k * frames : (k + 1) * frames], masks_of(video)
            fake = paste_swap(video, crops, aligned[target][1][k], masks, difficulty, colour_match)
            out[source, target, video.scene] = fake, masks
    return out


def synthesize(
    out: Path, seed: int = 0, size_name: str = 'mini', difficulty_name: str = DEFAULT_DIFFICULTY, progress=print
) -> dict:
    """Builds the three trees under `out`; returns the summary also written to `out/synth.json`."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f'{out} is a file, not a directory; choose another --out')
    if difficulty_name not in DIFFICULTIES:
        raise ValueError(f'unknown difficulty {difficulty_name!r}; valid: {", ".join(DIFFICULTIES)}')
    require_ffmpeg('fdx synth')
    size, difficulty = SIZES[size_name], DIFFICULTIES[difficulty_name]
    summary_path = out / 'synth.json'
    wanted = {'seed': seed, 'size': size_name, 'difficulty': difficulty_name}
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        if all(summary.get(k) == v for k, v in wanted.items()):
            progress(f'reusing {out} (seed {seed}, size {size_name}, difficulty {difficulty_name})')
            return summary
        found = ', '.join(f'{k} {summary.get(k)}' for k in wanted)
        raise FileExistsError(f'{out} holds a synth of {found}; choose another --out')
    start = time.perf_counter()
    encoder, generators = Encoder(), GeneratorPool(size, difficulty)
    try:
        counts, ffpp_pairs = _build(out, seed, size, difficulty, encoder, generators, progress)
        encoder.wait()
    finally:
        generators.close()
    seconds = round(time.perf_counter() - start, 1)
    progress(f'{encoder.files} H.264 videos written ({seconds} s in all)')
    summary = {
        **wanted,
        'size_settings': dataclasses.asdict(size),
        'difficulty_settings': dataclasses.asdict(difficulty),
        'files': encoder.files,
        'videos': counts,
        'ffpp_pairs': ffpp_pairs,
        'seconds': seconds,
    }
    summary_path.write_text(json.dumps(summary, indent=2))
    return summary


def _build(out: Path, seed: int, size: Size, difficulty: Difficulty, encoder: Encoder, pool: GeneratorPool, progress):
    """Makes every video and hands it to `encoder`; the autoencoders train in `pool` meanwhile. Returns the videos
    per tree and group, and the FF++ pairs."""
    from fdx.synth import faces
    from fdx.synth.generators import MODELS, SPECS

    counts: dict[str, dict[str, int]] = {}

    def write(tree: str, group: str, frames: np.ndarray, outputs: list[tuple[Path, int]]):
        encoder.submit(frames, outputs)
        counts.setdefault(tree, {}).setdefault(group, 0)
        counts[tree][group] += 1

    # People: FF++/DFDM identities 0..N-1 (DFDM's pair 0, 1 with more videos), then Celeb-DF's, then one YouTube-real
    # video each of further people. Nobody appears in two trees except DFDM's pair, which FF++ shares.
    start = time.perf_counter()
    n, c = size.identities, size.celebdf_identities
    scenes = [max(size.dfdm_videos_per_identity, size.videos_per_identity) if i < 2 else size.videos_per_identity
              for i in range(n)]  # fmt: skip
    scenes += [size.celebdf_videos_per_identity] * c + [1] * size.youtube_videos
    videos = real_videos(scenes, size, seed)
    ffpp_videos = {i: videos[i][: size.videos_per_identity] for i in range(n)}
    celeb = {k: videos[n + k] for k in range(c)}
    progress(f'{sum(scenes)} real videos of {len(scenes)} identities ({time.perf_counter() - start:.1f} s)')

    # Every autoencoder first, so that they train while the graphics fakes are made; one job per model (its step
    # compiles once): DFDM's five on the pair (0, 1), the baseline (Faceswap) also on FF++'s other pairs (Deepfakes),
    # Celeb-DF's on its pairs.
    aligned = {i: aligned_faces(videos[i]) for i in (0, 1)}
    ffpp_aligned = {i: aligned_faces(ffpp_videos[i]) for i in range(2, n)}
    celeb_aligned = {k: aligned_faces(celeb[k]) for k in range(c)}
    pairs = {name: [(aligned[0][0], aligned[1][0], _seed(seed, 0, 1, k))] for k, name in enumerate(MODELS)}
    ffpp_pairs_ids = [(a, a + 1) for a in range(2, n - 1, 2)]
    celeb_pairs = [(a, a + 1) for a in range(0, c - 1, 2)]
    pairs['Faceswap'] += [(ffpp_aligned[a][0], ffpp_aligned[b][0], _seed(seed, a, b, 0)) for a, b in ffpp_pairs_ids]
    pairs[CELEBDF_GENERATOR] += [
        (celeb_aligned[a][0], celeb_aligned[b][0], _seed(seed, n + a, n + b, 0)) for a, b in celeb_pairs
    ]
    longest_first = sorted(pairs, key=lambda name: -SPECS[name].output_size * SPECS[name].input_size)
    jobs = {pool.submit(name, pairs[name]): name for name in longest_first}

    # FaceForensics++: reals, then per pair and direction FaceSwap (landmark warp), Face2Face (expression
    # reenactment), NeuralTextures (mouth re-rendering) now and Deepfakes once its autoencoder is trained.
    start = time.perf_counter()
    ffpp = out / 'ffpp'
    number = {(v.identity, v.scene): f'{k:03d}' for k, v in enumerate(v for i in range(n) for v in ffpp_videos[i])}

    def write_ffpp(method: str, stem: str, fake: np.ndarray, masks: np.ndarray):
        root = ffpp / 'manipulated_sequences' / method
        write('ffpp', method, fake, [(root / q / 'videos' / f'{stem}.mp4', crf) for q, crf in FFPP_CRFS.items()])
        encoder.submit(masks, [(root / 'masks' / 'videos' / f'{stem}.mp4', 0)])

    for i in range(n):
        for video in ffpp_videos[i]:
            root, name = ffpp / 'original_sequences' / 'youtube', f'{number[i, video.scene]}.mp4'
            write('ffpp', 'original', video.frames, [(root / q / 'videos' / name, crf) for q, crf in FFPP_CRFS.items()])
    ffpp_pairs = []
    for a in range(0, n - 1, 2):
        for scene in range(size.videos_per_identity):
            ffpp_pairs.append((number[a, scene], number[a + 1, scene]))
            for target, source in ((a, a + 1), (a + 1, a)):
                fake_of, face_of = ffpp_videos[target][scene], ffpp_videos[source][scene]
                stem = f'{number[target, scene]}_{number[source, scene]}'
                feather = difficulty.feather * faces.face_width(fake_of.landmarks[0])
                warped = [faces.landmark_swap(sf, sl, tf, tl, feather=feather)
                          for sf, sl, tf, tl in zip(face_of.frames, face_of.landmarks, fake_of.frames,
                                                    fake_of.landmarks)]  # fmt: skip
                write_ffpp('FaceSwap', stem, np.stack([w[0] for w in warped]), _masks_u8([w[1] for w in warped]))
                fake, masks, _ = faces.reenact(fake_of.frames, fake_of.landmarks, face_of.landmarks, feather=feather)
                write_ffpp('Face2Face', stem, fake, _masks_u8(masks))
                fake, masks = faces.mouth_rerender(
                    fake_of.frames, fake_of.landmarks, face_of.landmarks, feather=feather
                )
                write_ffpp('NeuralTextures', stem, fake, _masks_u8(masks))
    order = np.random.default_rng(seed).permutation(len(ffpp_pairs))
    bounds = np.cumsum(size.ffpp_split)
    if bounds[-1] != len(ffpp_pairs):
        raise ValueError(f'ffpp_split {size.ffpp_split} must add up to the {len(ffpp_pairs)} FF++ pairs')
    (ffpp / 'splits').mkdir(parents=True, exist_ok=True)
    for split, chosen in zip(('train', 'val', 'test'), np.split(order, bounds[:-1])):
        (ffpp / 'splits' / f'{split}.json').write_text(json.dumps([list(ffpp_pairs[k]) for k in sorted(chosen)]))
    progress(
        f'FF++: {len(ffpp_pairs)} pairs, FaceSwap, Face2Face, NeuralTextures ({time.perf_counter() - start:.1f} s)'
    )

    # Celeb-DF v2 reals and its test list (the last scenes of every Celeb identity, half of the YouTube videos).
    celebdf = out / 'celebdf'
    test_scene = size.celebdf_videos_per_identity - size.celebdf_test_videos
    test_lines = []
    for k, celeb_videos in celeb.items():
        for video in celeb_videos:
            name = f'Celeb-real/id{k}_{video.scene:04d}.mp4'
            write('celebdf', 'Celeb-real', video.frames, [(celebdf / name, CELEBDF_CRF)])
            test_lines += [f'1 {name}'] if video.scene >= test_scene else []
    for k in range(size.youtube_videos):
        name = f'YouTube-real/{k:05d}.mp4'
        write('celebdf', 'YouTube-real', videos[n + c + k][0].frames, [(celebdf / name, CELEBDF_CRF)])
        test_lines += [f'1 {name}'] if k < size.youtube_videos // 2 else []

    # The autoencoder swaps as their jobs finish: DFDM (the same pasting for all five), FF++ Deepfakes (Faceswap),
    # Celeb-DF (its improved blending: full colour transfer and a wider feathered mask). Every output's bytes are the
    # same in any order of completion.
    masks_cache: dict[int, np.ndarray] = {}

    def masks_of(video: Video, difficulty: Difficulty = difficulty) -> np.ndarray:
        if id(video) not in masks_cache:
            masks_cache[id(video)] = blend_masks(video, difficulty)
        return masks_cache[id(video)]

    celeb_difficulty = dataclasses.replace(difficulty, feather=1.5 * difficulty.feather)

    def celeb_masks(video: Video) -> np.ndarray:
        return masks_of(video, celeb_difficulty)

    def write_swaps(name: str, results: list[tuple]):
        """Model `name`'s swaps (`train_and_swap`'s results, its pairs in `pairs[name]` order) pasted and written."""
        swaps = _autoencoder_swaps(results[0], (0, 1), videos, aligned, masks_of, difficulty)
        for (source, target, scene), (fake, masks) in swaps.items():
            stem = f'id{source:02d}_id{target:02d}_{scene:04d}_{name}'
            write('dfdm', name, fake, [(out / 'dfdm' / f'DFDM_crf{crf}' / f'{stem}.mp4', crf) for crf in DFDM_CRFS])
            if name == 'Faceswap' and scene < size.videos_per_identity:
                write_ffpp('Deepfakes', f'{number[target, scene]}_{number[source, scene]}', fake, _masks_u8(masks))
        if name == 'Faceswap':
            for pair, swapped in zip(ffpp_pairs_ids, results[1:]):
                for (source, target, scene), (fake, masks) in _autoencoder_swaps(
                    swapped, pair, ffpp_videos, ffpp_aligned, masks_of, difficulty
                ).items():
                    write_ffpp('Deepfakes', f'{number[target, scene]}_{number[source, scene]}', fake, _masks_u8(masks))
        if name == CELEBDF_GENERATOR:
            for pair, swapped in zip(celeb_pairs, results[1:]):
                swaps = _autoencoder_swaps(
                    swapped, pair, celeb, celeb_aligned, celeb_masks, celeb_difficulty, colour_match=1.0
                )
                for (source, target, scene), (fake, _) in sorted(swaps.items()):
                    path = f'Celeb-synthesis/id{target}_id{source}_{scene:04d}.mp4'
                    write('celebdf', 'Celeb-synthesis', fake, [(celebdf / path, CELEBDF_CRF)])
                    if scene >= test_scene:
                        test_lines.append(f'0 {path}')

    start = time.perf_counter()
    for job in concurrent.futures.as_completed(jobs):
        write_swaps(jobs[job], job.result())
        progress(f'{jobs[job]} trained, its swaps made ({time.perf_counter() - start:.1f} s)')
    celebdf.mkdir(parents=True, exist_ok=True)
    (celebdf / 'List_of_testing_videos.txt').write_text(''.join(f'{line}\n' for line in sorted(test_lines)))
    return {tree: dict(sorted(groups.items())) for tree, groups in counts.items()}, ffpp_pairs


def main(argv: Sequence[str]) -> int:
    """`fdx synth --out DIR [--seed S] [--size tiny|mini|small] [--difficulty easy|standard|hard] [--report]`."""
    from fdx.synth import report

    parser = argparse.ArgumentParser(prog='fdx synth', description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', required=True)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--size', choices=sorted(SIZES), default='mini')
    parser.add_argument('--difficulty', choices=sorted(DIFFICULTIES), default=DEFAULT_DIFFICULTY)
    parser.add_argument('--report', action='store_true', help="then measure dlib's face-detection rate per class")
    parser.add_argument('--report-frames', type=int, default=8, help='frames sampled per video for --report')
    parser.add_argument('--workers', type=int, default=len(os.sched_getaffinity(0)), help='processes for --report')
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = Path(args.out)
    summary = synthesize(out, args.seed, args.size, args.difficulty, progress=lambda m: print(m, flush=True))
    trees = ', '.join(f'{out / tree} ({sum(groups.values())} videos)' for tree, groups in summary['videos'].items())
    print(f'fdx synth: {summary["files"]} files in {time.perf_counter() - start:.1f} s: {trees}')
    if args.report:
        result = report.face_report(out, frames=args.report_frames, workers=args.workers)
        print(report.format_report(result))
        return 0 if result['passes'] else 1
    return 0
