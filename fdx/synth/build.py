"""`fdx synth --out DIR [--seed S] [--size mini|small]`: an embedded miniature forgery benchmark, made offline.

Real face imagery (skimage's astronaut) becomes several identities (landmark-driven morphing, skin tone, lighting,
background; `fdx.synth.faces`), animated into "real" videos with head motion, blinking and talking. Fakes:
- DFDM layout: each identity pair's faces are swapped by the five DFDM autoencoders (`fdx.synth.generators`, Table 2
  of the DMA-STA paper), pasted back and blended with the same blending for all five, written with H.264 at CRF 0,
  10 and 23 into `DIR/dfdm/DFDM_crf{0,10,23}/id<src>_id<dst>_<scene>_<model>.mp4`.
- FaceForensics++ layout: the baseline autoencoder swaps as `Deepfakes` and a graphics landmark-warp swap as `FaceSwap`,
  each with its blending-mask video, at c23 and c40 (H.264 CRF 23 / 40), the reals as `original_sequences/youtube`,
  and the official-style `splits/{train,val,test}.json` pair lists, under `DIR/ffpp/`.
Both trees are what `fdx prepare dfdm|ffpp` reads unchanged. Everything is deterministic for a seed; an existing
output with the same seed and size is reused.
"""

import argparse
import concurrent.futures
import dataclasses
import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Sequence

import numpy as np

FPS = 25
DFDM_CRFS = (0, 10, 23)
FFPP_CRFS = {'c23': 23, 'c40': 40}
ALIGNED = 128  # aligned face crop size (the largest generator input, DFL-H128)


@dataclasses.dataclass(frozen=True)
class Size:
    identities: int  # even: identities are paired (0, 1), (2, 3), …
    videos_per_identity: int
    frames: int  # per video
    frame_size: int
    dfdm_pairs: int  # identity pairs swapped by the five autoencoders
    generator_steps: int  # autoencoder training steps per model and identity pair
    generator_batch: int
    generator_width: int
    ffpp_split: tuple[int, int, int]  # FF++ pairs in train / val / test


SIZES = {
    'tiny': Size(
        identities=2,
        videos_per_identity=2,
        frames=6,
        frame_size=192,
        dfdm_pairs=1,
        generator_steps=40,
        generator_batch=4,
        generator_width=8,
        ffpp_split=(1, 0, 1),
    ),  # tests only
    'mini': Size(
        identities=4,
        videos_per_identity=5,
        frames=32,
        frame_size=256,
        dfdm_pairs=1,
        generator_steps=100,
        generator_batch=8,
        generator_width=8,
        ffpp_split=(6, 2, 2),
    ),
    'small': Size(
        identities=6,
        videos_per_identity=8,
        frames=64,
        frame_size=256,
        dfdm_pairs=3,
        generator_steps=1000,
        generator_batch=16,
        generator_width=16,
        ffpp_split=(16, 4, 4),
    ),
}


class SynthError(RuntimeError):
    """ffmpeg failed to encode a video."""


def require_ffmpeg() -> str:
    path = shutil.which('ffmpeg')
    if path is None:
        raise FileNotFoundError(
            'ffmpeg is not installed; fdx synth writes H.264 with it. Install it with '
            '`sudo apt-get install ffmpeg` (`make setup` does this when run as root).'
        )
    return path


def encode(frames: np.ndarray, path: Path, crf: int) -> None:
    """uint8 RGB [T, H, W, 3] (or grey [T, H, W]) → H.264 (libx264, yuv420p) at `crf`, every frame kept."""
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames.shape[1:3]
    command = [
        'ffmpeg',
        '-y',
        '-loglevel',
        'error',
        '-f',
        'rawvideo',
        '-pix_fmt',
        'rgb24',
        '-s',
        f'{width}x{height}',
        '-r',
        str(FPS),
        '-i',
        '-',
        '-an',
        '-c:v',
        'libx264',
        '-crf',
        str(crf),
        '-pix_fmt',
        'yuv420p',
        '-fps_mode',
        'passthrough',
        str(path),
    ]
    result = subprocess.run(command, input=np.ascontiguousarray(frames).tobytes(), capture_output=True)
    if result.returncode:
        raise SynthError(f'ffmpeg failed writing {path}: {result.stderr.decode(errors="replace")[-500:]}')


@dataclasses.dataclass
class Video:
    identity: int
    scene: int
    frames: np.ndarray  # uint8 [T, H, W, 3]
    landmarks: np.ndarray  # float32 [T, 68, 2]


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def real_videos(size: Size, seed: int) -> list[Video]:
    from fdx.synth import faces

    identities = faces.make_identities(size.identities, seed, size.frame_size)
    videos = []
    for i, identity in enumerate(identities):
        for scene in range(size.videos_per_identity):
            frames, landmarks = faces.animate(identity, size.frames, _seed(seed, i, scene), fps=FPS)
            videos.append(Video(i, scene, frames, landmarks))
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


def paste_swap(target: Video, faces_out: np.ndarray, matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Swapped aligned faces pasted into the target frames; blended with the shared blending. Returns frames, masks."""
    import cv2

    from fdx.synth import faces

    frames, masks = [], []
    for frame, landmarks, face, matrix in zip(target.frames, target.landmarks, faces_out, matrices):
        face = cv2.resize(face, (ALIGNED, ALIGNED), interpolation=cv2.INTER_CUBIC)
        pasted = faces.paste_face(frame, face, matrix)
        mask = faces.face_mask(landmarks, frame.shape[:2], feather=6.0)
        frames.append(faces.blend(frame, pasted, mask))
        masks.append(mask)
    return np.stack(frames), (np.stack(masks) * 255).round().astype(np.uint8)


def synthesize(out: Path, seed: int = 0, size_name: str = 'mini', progress=print) -> dict:
    """Builds both trees under `out`; returns the summary also written to `out/synth.json`."""
    from fdx.synth import faces, generators

    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f'{out} is a file, not a directory; choose another --out')
    require_ffmpeg()
    size = SIZES[size_name]
    summary_path = out / 'synth.json'
    if summary_path.is_file():
        summary = json.loads(summary_path.read_text())
        if summary.get('seed') == seed and summary.get('size') == size_name:
            progress(f'reusing {out} (seed {seed}, size {size_name})')
            return summary
        raise FileExistsError(
            f'{out} holds a synth of seed {summary.get("seed")} size {summary.get("size")}; choose another --out'
        )
    times, start = {}, time.perf_counter()
    videos = real_videos(size, seed)
    times['real_videos'] = time.perf_counter() - start
    progress(f'{len(videos)} real videos of {size.identities} identities ({times["real_videos"]:.1f} s)')
    by_identity = {i: [v for v in videos if v.identity == i] for i in range(size.identities)}
    aligned = {i: aligned_faces(vs) for i, vs in by_identity.items()}
    pairs = [(a, a + 1) for a in range(0, size.identities - 1, 2)]
    encodes: list[tuple[np.ndarray, Path, int]] = []

    # DFDM: every model swaps each identity of a pair into the other's videos. FF++'s Deepfakes use the baseline
    # autoencoder on every pair.
    start = time.perf_counter()
    ffpp_deepfakes = {}
    for p, (a, b) in enumerate(pairs):
        for name in generators.MODELS if p < size.dfdm_pairs else ('Faceswap',):
            model = generators.train_swap_model(
                name,
                aligned[a][0],
                aligned[b][0],
                steps=size.generator_steps,
                batch_size=size.generator_batch,
                width=size.generator_width,
                seed=_seed(seed, a, b, generators.MODELS.index(name)),
            )
            for source, target, to in ((a, b, 'a'), (b, a, 'b')):
                for k, (video, matrices) in enumerate(zip(by_identity[target], aligned[target][1])):
                    crops = aligned[target][0][k * size.frames : (k + 1) * size.frames]
                    fake, mask = paste_swap(video, generators.swap(model, crops, to=to), matrices)
                    if p < size.dfdm_pairs:
                        stem = f'id{source:02d}_id{target:02d}_{video.scene:04d}_{name}'
                        encodes += [(fake, out / 'dfdm' / f'DFDM_crf{crf}' / f'{stem}.mp4', crf) for crf in DFDM_CRFS]
                    if name == 'Faceswap':
                        ffpp_deepfakes[(target, video.scene)] = (fake, mask)
    times['dfdm_generators'] = time.perf_counter() - start
    progress(
        f'DFDM: {len(generators.MODELS)} autoencoders × {size.dfdm_pairs} identity pairs '
        f'({times["dfdm_generators"]:.1f} s)'
    )

    # FaceForensics++: reals, Deepfakes (baseline autoencoder), FaceSwap (landmark warp), masks, splits.
    start = time.perf_counter()
    number = {(v.identity, v.scene): f'{k:03d}' for k, v in enumerate(videos)}
    ffpp = out / 'ffpp'
    for video in videos:
        for quality, crf in FFPP_CRFS.items():
            encodes.append(
                (
                    video.frames,
                    ffpp
                    / 'original_sequences'
                    / 'youtube'
                    / quality
                    / 'videos'
                    / f'{number[video.identity, video.scene]}.mp4',
                    crf,
                )
            )
    ffpp_pairs = []
    for a, b in pairs:
        for scene in range(size.videos_per_identity):
            target, source = by_identity[a][scene], by_identity[b][scene]
            ffpp_pairs.append((number[a, scene], number[b, scene]))
            for fake_of, face_of in ((target, source), (source, target)):
                stem = f'{number[fake_of.identity, fake_of.scene]}_{number[face_of.identity, face_of.scene]}'
                swaps = {'Deepfakes': ffpp_deepfakes[(fake_of.identity, fake_of.scene)]}
                warped = [
                    faces.landmark_swap(sf, sl, tf, tl)
                    for sf, sl, tf, tl in zip(face_of.frames, face_of.landmarks, fake_of.frames, fake_of.landmarks)
                ]
                swaps['FaceSwap'] = (
                    np.stack([w[0] for w in warped]),
                    (np.stack([w[1] for w in warped]) * 255).round().astype(np.uint8),
                )
                for method, (fake, mask) in swaps.items():
                    root = ffpp / 'manipulated_sequences' / method
                    for quality, crf in FFPP_CRFS.items():
                        encodes.append((fake, root / quality / 'videos' / f'{stem}.mp4', crf))
                    encodes.append((mask, root / 'masks' / 'videos' / f'{stem}.mp4', 0))
    order = np.random.default_rng(seed).permutation(len(ffpp_pairs))
    bounds = np.cumsum(size.ffpp_split)
    (ffpp / 'splits').mkdir(parents=True, exist_ok=True)
    for split, chosen in zip(('train', 'val', 'test'), np.split(order, bounds[:-1])):
        (ffpp / 'splits' / f'{split}.json').write_text(json.dumps([list(ffpp_pairs[k]) for k in sorted(chosen)]))
    times['ffpp_swaps'] = time.perf_counter() - start
    progress(f'FF++: {len(ffpp_pairs)} pairs, Deepfakes + FaceSwap with masks ({times["ffpp_swaps"]:.1f} s)')

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda job: encode(*job), encodes))
    times['encode'] = time.perf_counter() - start
    progress(f'{len(encodes)} H.264 videos written ({times["encode"]:.1f} s)')
    summary = {
        'seed': seed,
        'size': size_name,
        'size_settings': dataclasses.asdict(size),
        'videos': len(encodes),
        'real_videos': len(videos),
        'identity_pairs': pairs,
        'ffpp_pairs': ffpp_pairs,
        'seconds': {k: round(v, 1) for k, v in times.items()},
    }
    summary_path.write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: Sequence[str]) -> int:
    """`fdx synth --out DIR [--seed S] [--size mini|small]`."""
    parser = argparse.ArgumentParser(prog='fdx synth', description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', required=True)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--size', choices=sorted(SIZES), default='mini')
    args = parser.parse_args(argv)
    start = time.perf_counter()
    summary = synthesize(Path(args.out), args.seed, args.size, progress=lambda m: print(m, flush=True))
    print(
        f'fdx synth: {summary["videos"]} videos in {args.out} ({time.perf_counter() - start:.1f} s): '
        f'{args.out}/dfdm (DFDM layout), {args.out}/ffpp (FaceForensics++ layout)'
    )
    return 0
