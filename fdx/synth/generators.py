"""The five DFDM autoencoder face-swap generators (DMA-STA paper, Sec. 3.1, Table 2), reduced for CPU training.

Each model has one shared encoder and reconstructs two identities A and B; a swap encodes a face and decodes it as the
other identity. Faceswap, Lightweight, Dfaker and DFL-H128 have one decoder per identity (`decoder_a`, `decoder_b`);
IAE has one shared decoder fed with the concatenation of an identity's intermediate (`inter_a` / `inter_b`) and the
shared one (`inter_both`). Layers follow faceswap's blocks: 'Conv' = 5x5 stride-2 conv + leaky ReLU (0.1), 'Ups' =
3x3 conv to 4x the channels + leaky ReLU (0.1) + pixel shuffle x2, 'Residual' = two 3x3 convs with leaky ReLU (0.2)
and a skip, output = 5x5 conv + sigmoid. Only RGB is decoded (faceswap's optional learned mask is left out).

`GeneratorSpec` holds faceswap's full-size channel counts; `spec.module(width)` scales every channel count and dense
width by `width / 128` (`width` is the first encoder conv's channels: 128 in faceswap, `WIDTH` here). NHWC; inputs
and outputs are RGB in [0, 1]. Training (`train_swap_model`): Adam on the mean absolute error of both identities'
reconstructions at the output size, with faceswap's augmentation in a cheap form: random flip of input and target,
random affine jitter plus a smooth random warp of the input only. XLA's CPU reductions depend on its thread count, so
`fdx synth` trains and swaps in one-core processes (`train_and_swap`, `fdx.synth.build.GeneratorPool`): the same
weights for a seed on any number of cores.

Channels at faceswap's full size (width 128) | reduced (`WIDTH` 8): convs / dense / reshape → encoder Ups / decoder Ups
    Faceswap     128-256-512-1024 / 1024 / 4x4x1024 → 512 / 256-128-64    | 8-16-32-64 / 64 / 4x4x64 → 32 / 16-8-4
    Lightweight  128-256-512 / 512 / 4x4x512 → 256 / 512-256-128           | 8-16-32 / 32 / 4x4x32 → 16 / 32-16-8
    IAE          128-256-512-1024 / 3 inters 1024 / 4x4x512 / 512-256-128-64 | 8-16-32-64 / 64 / 4x4x32 / 32-16-8-4
    Dfaker       as Faceswap, decoder 512-256-128-64 + 3 residual blocks   | as Faceswap, decoder 32-16-8-4
    DFL-H128     128-256-512-1024 / 512 / 8x8x512 → 512 / 512-256-128      | 8-16-32-64 / 32 / 8x8x32 → 32 / 32-16-8
"""

import dataclasses
import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

# DFDM's models in the order of fdx.input.layouts.MODELS.
MODELS = ('Faceswap', 'Lightweight', 'IAE', 'Dfaker', 'DFL-H128')
FULL_WIDTH = 128  # faceswap's first encoder conv
WIDTH = 8  # reduced default: every channel count / 16 (≈ 1/256 of faceswap's FLOPs; 16 costs 2.5-4x more on CPU)
LEARNING_RATE = 3e-3  # faceswap: 5e-5 for 100k+ iterations; 3e-3 gives detectable faces within 200-400 steps here
ADAM_B1 = 0.9  # faceswap: 0.5 (at its 5e-5 lr); 0.5 at LEARNING_RATE blew up 1 of 4 seeds mid-run (loss → 0.68)
CONVERT_BATCH = 32
PRNG = 'rbg'  # XLA's RngBitGenerator: compiles in a fraction of threefry's time on CPU, same results for a seed
# Augmentation ranges, faceswap's defaults: rotation ±10°, zoom ±5 %, shift ±5 %; warp: 5x5 grid, std 5/256 of size.
ROTATION = 10.0
ZOOM = 0.05
SHIFT = 0.05
WARP_GRID = 5
WARP_STD = 5 / 256


def pixel_shuffle(x: jnp.ndarray, scale: int = 2) -> jnp.ndarray:
    """[N, H, W, C·s²] → [N, H·s, W·s, C] (depth-to-space)."""
    n, h, w, c = x.shape
    x = x.reshape(n, h, w, scale, scale, c // scale**2)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(n, h * scale, w * scale, c // scale**2)


class ConvBlock(nn.Module):
    """Table 2 'Conv': 5x5 stride-2 conv + leaky ReLU."""

    features: int

    @nn.compact
    def __call__(self, x):
        return nn.leaky_relu(nn.Conv(self.features, (5, 5), strides=(2, 2), padding='SAME', name='conv')(x), 0.1)


class Upscale(nn.Module):
    """Table 2 'Ups': 3x3 conv to 4x `features` + leaky ReLU + pixel shuffle x2."""

    features: int
    slope: float = 0.1

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(4 * self.features, (3, 3), padding='SAME', name='conv')(x)
        return pixel_shuffle(nn.leaky_relu(x, self.slope))


class Residual(nn.Module):
    """Table 2 'Residual' (Dfaker): conv3x3 → leaky ReLU → conv3x3 → + input → leaky ReLU."""

    @nn.compact
    def __call__(self, x):
        y = nn.leaky_relu(nn.Conv(x.shape[-1], (3, 3), padding='SAME', name='conv1')(x), 0.2)
        y = nn.Conv(x.shape[-1], (3, 3), padding='SAME', name='conv2')(y)
        return nn.leaky_relu(x + y, 0.2)


class Bottleneck(nn.Module):
    """Flatten → dense bottleneck → dense → reshape to [side, side, channels] (the encoder head; IAE's inters)."""

    features: int
    latent: tuple[int, int]

    @nn.compact
    def __call__(self, x):
        side, channels = self.latent
        x = nn.Dense(self.features, name='dense1')(x.reshape(x.shape[0], -1))
        return nn.Dense(side * side * channels, name='dense2')(x).reshape(-1, side, side, channels)


class Encoder(nn.Module):
    """Strided convs (`conv1`, …); with `dense`, faceswap's head: `bottleneck` then one Ups (`upscale`)."""

    features: Sequence[int]
    dense: int = 0
    latent: tuple[int, int] = (4, 0)
    upscale: int = 0

    @nn.compact
    def __call__(self, x):
        for i, features in enumerate(self.features):
            x = ConvBlock(features, name=f'conv{i + 1}')(x)
        if not self.dense:
            return x.reshape(x.shape[0], -1)
        return Upscale(self.upscale, name='upscale')(Bottleneck(self.dense, self.latent, name='bottleneck')(x))


class Decoder(nn.Module):
    """Ups blocks (`upscale1`, …), the first `residual` ones followed by a residual block, then a sigmoid RGB conv."""

    features: Sequence[int]
    residual: int = 0

    @nn.compact
    def __call__(self, x):
        for i, features in enumerate(self.features):
            x = Upscale(features, 0.2 if i < self.residual else 0.1, name=f'upscale{i + 1}')(x)
            if i < self.residual:
                x = Residual(name=f'residual{i + 1}')(x)
        return nn.sigmoid(nn.Conv(3, (5, 5), padding='SAME', name='out')(x))


class SwapAutoencoder(nn.Module):
    """faceswap's original layout: one shared `encoder`, `decoder_a` and `decoder_b` (Faceswap, Lightweight, Dfaker,
    DFL-H128 of Table 2)."""

    encoder_features: tuple[int, ...]
    dense: int
    latent: tuple[int, int]
    upscale: int
    decoder_features: tuple[int, ...]
    residual: int = 0

    def setup(self):
        self.encoder = Encoder(self.encoder_features, self.dense, self.latent, self.upscale)
        self.decoder_a = Decoder(self.decoder_features, self.residual)
        self.decoder_b = Decoder(self.decoder_features, self.residual)

    def __call__(self, faces_a, faces_b):
        """Reconstructions of both identities (training)."""
        return self.convert(faces_a, 'a'), self.convert(faces_b, 'b')

    def convert(self, x, to: str):
        """Encode and decode as identity `to` ('a' or 'b')."""
        return {'a': self.decoder_a, 'b': self.decoder_b}[to](self.encoder(x))


class IntermediateAutoencoder(nn.Module):
    """IAE of Table 2: shared `encoder` (convs only) → concat(`inter_<to>`, `inter_both`) → one shared `decoder`."""

    encoder_features: tuple[int, ...]
    dense: int
    latent: tuple[int, int]
    decoder_features: tuple[int, ...]

    def setup(self):
        self.encoder = Encoder(self.encoder_features)
        self.inter_a = Bottleneck(self.dense, self.latent)
        self.inter_b = Bottleneck(self.dense, self.latent)
        self.inter_both = Bottleneck(self.dense, self.latent)
        self.decoder = Decoder(self.decoder_features)

    def __call__(self, faces_a, faces_b):
        """Reconstructions of both identities (training)."""
        return self.convert(faces_a, 'a'), self.convert(faces_b, 'b')

    def convert(self, x, to: str):
        """Encode and decode as identity `to` ('a' or 'b') through that identity's intermediate and the shared one."""
        z = self.encoder(x)
        inter = {'a': self.inter_a, 'b': self.inter_b}[to]
        return self.decoder(jnp.concatenate([inter(z), self.inter_both(z)], axis=-1))


@dataclasses.dataclass(frozen=True)
class GeneratorSpec:
    """One DFDM model of Table 2 with faceswap's full-size channel counts (scaled by `module(width)`)."""

    name: str
    input_size: int
    output_size: int
    variation: str  # Table 2's 'Variation' column
    encoder: tuple[int, ...]  # strided conv channels
    dense: int  # dense bottleneck (IAE: of each intermediate)
    latent: tuple[int, int]  # side and channels of the reshaped dense output
    upscale: int  # channels after the encoder's closing Ups (0: none, IAE)
    decoder: tuple[int, ...]  # Ups channels
    residual: int = 0  # Ups blocks followed by a residual block
    steps_scale: float = 1.0  # training steps relative to the other models (`fdx synth`: × Size.generator_steps)

    def module(self, width: int = WIDTH) -> nn.Module:
        """The model with every channel count and dense width scaled by `width / 128` (`FULL_WIDTH`: faceswap's)."""

        def scale(c: int) -> int:
            return max(1, c * width // FULL_WIDTH)

        encoder, decoder = tuple(map(scale, self.encoder)), tuple(map(scale, self.decoder))
        latent = (self.latent[0], scale(self.latent[1]))
        if not self.upscale:
            return IntermediateAutoencoder(encoder, scale(self.dense), latent, decoder)
        return SwapAutoencoder(encoder, scale(self.dense), latent, scale(self.upscale), decoder, self.residual)


_CONVS = (128, 256, 512, 1024)  # faceswap's 4Conv encoder
# Table 2; channel counts as in faceswap's plugins (original, lightweight, iae, dfaker at output 128, dfl_h128).
# DFDM trains every model for 100k iterations, to convergence; reduced, Faceswap's and IAE's 4x4 bottlenecks converge
# slowest and train twice as long (`steps_scale`): measured at width 8, batch 8 on the mini benchmark's DFDM pair,
# 200 steps left one swap direction at 10-65 % dlib-detectable faces on 3 of 4 seeds, 400 steps gave ≥ 95 % on all
# four, while Lightweight, Dfaker and DFL-H128 gave 100 % at 200 steps (a 128-px Dfaker/DFL step costs ~15 Faceswap
# steps on CPU).
SPECS = {
    spec.name: spec
    for spec in (
        GeneratorSpec('Faceswap', 64, 64, '/', _CONVS, 1024, (4, 1024), 512, (256, 128, 64), steps_scale=2.0),
        GeneratorSpec('Lightweight', 64, 64, 'Encoder', _CONVS[:3], 512, (4, 512), 256, (512, 256, 128)),
        GeneratorSpec(
            'IAE',
            64,
            64,
            'Intermediate layers; shared encoder & decoder',
            _CONVS,
            1024,
            (4, 512),
            0,
            (512, 256, 128, 64),
            steps_scale=2.0,
        ),
        GeneratorSpec('Dfaker', 64, 128, 'Decoder', _CONVS, 1024, (4, 1024), 512, (512, 256, 128, 64), residual=3),
        GeneratorSpec('DFL-H128', 128, 128, 'Input resolution', _CONVS, 512, (8, 512), 512, (512, 256, 128)),
    )
}


@dataclasses.dataclass(frozen=True)
class SwapModel:
    """A trained generator: `module.apply(variables, faces, to, method='convert')` maps [0, 1] input-size faces to
    output-size faces of identity `to`; `losses` is the training loss per step."""

    name: str
    module: nn.Module
    variables: Any
    input_size: int
    output_size: int
    losses: np.ndarray


def _resize(faces: jnp.ndarray, size: int) -> jnp.ndarray:
    """uint8 or float [N, S, S, 3] → float32 [N, size, size, 3] in [0, 1] (bilinear, antialiased)."""
    x = faces.astype(jnp.float32) / 255 if faces.dtype == jnp.uint8 else faces.astype(jnp.float32)
    if x.shape[1:3] != (size, size):
        x = jnp.clip(jax.image.resize(x, (x.shape[0], size, size, x.shape[3]), 'linear', antialias=True), 0, 1)
    return x


def _augment_input(key: jax.Array, x: jnp.ndarray) -> jnp.ndarray:
    """Random affine jitter (rotation, zoom, shift) and a smooth random warp, bilinear with edge replication."""
    n, size = x.shape[0], x.shape[1]
    k_rot, k_zoom, k_shift, k_warp = jax.random.split(key, 4)
    angle = jnp.deg2rad(jax.random.uniform(k_rot, (n,), minval=-ROTATION, maxval=ROTATION))
    zoom = jax.random.uniform(k_zoom, (n,), minval=1 - ZOOM, maxval=1 + ZOOM)
    shift = jax.random.uniform(k_shift, (n, 2), minval=-SHIFT, maxval=SHIFT) * size
    warp = jax.random.normal(k_warp, (n, WARP_GRID, WARP_GRID, 2)) * WARP_STD * size
    warp = jax.image.resize(warp, (n, size, size, 2), 'cubic')
    centre = (size - 1) / 2
    grid = jnp.stack(jnp.meshgrid(jnp.arange(size), jnp.arange(size), indexing='ij'), -1) - centre  # [S, S, (y, x)]
    cos, sin = jnp.cos(angle) / zoom, jnp.sin(angle) / zoom
    rotation = jnp.stack([jnp.stack([cos, -sin], -1), jnp.stack([sin, cos], -1)], -2)  # [N, 2, 2]
    coords = jnp.einsum('nij,hwj->nhwi', rotation, grid) + centre + shift[:, None, None] + warp
    return jax.vmap(_bilinear)(x, coords)


def _bilinear(image: jnp.ndarray, coords: jnp.ndarray) -> jnp.ndarray:
    """image [H, W, C] sampled at float (y, x) coords [h, w, 2], bilinear, edges replicated."""
    coords = jnp.clip(coords, 0, jnp.array(image.shape[:2]) - 1)
    low = jnp.floor(coords)
    fy, fx = jnp.split(coords - low, 2, axis=-1)
    (y0, x0), (y1, x1) = low.astype(jnp.int32).transpose(2, 0, 1), jnp.ceil(coords).astype(jnp.int32).transpose(2, 0, 1)
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def _batch(key: jax.Array, inputs: jnp.ndarray, targets: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """A batch flipped at random, its inputs warped."""
    k_flip, k_warp = jax.random.split(key)
    flip = jax.random.bernoulli(k_flip, 0.5, (inputs.shape[0], 1, 1, 1))
    x, y = jnp.where(flip, inputs[:, :, ::-1], inputs), jnp.where(flip, targets[:, :, ::-1], targets)
    return _augment_input(k_warp, x), y


def _optimizer(learning_rate: float) -> optax.GradientTransformation:
    return optax.adam(learning_rate, b1=ADAM_B1)


def _init_params(module: nn.Module, seed: int, x_a: jnp.ndarray, x_b: jnp.ndarray) -> Any:
    """He-uniform kernels (fan-in), zero biases, drawn with numpy from the parameter shapes (`jax.eval_shape`): no
    init program to compile (seconds per model on CPU)."""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        if path[-1].key == 'bias':
            return jnp.zeros(leaf.shape, leaf.dtype)
        limit = np.sqrt(6 / np.prod(leaf.shape[:-1]))
        return jnp.asarray(rng.uniform(-limit, limit, leaf.shape), leaf.dtype)

    shapes = jax.eval_shape(module.init, jax.random.key(0), x_a, x_b)['params']
    return jax.tree_util.tree_map_with_path(draw, shapes)


@functools.partial(jax.jit, static_argnames=('module', 'learning_rate'))
def _train_step(
    module: nn.Module,
    learning_rate: float,
    params: Any,
    opt_state: Any,
    batch: tuple[jnp.ndarray, ...],
    key: jax.Array,
) -> tuple[Any, Any, jnp.ndarray]:
    """One Adam step on the sum of both identities' mean absolute reconstruction errors (inputs flipped and warped)."""
    inputs_a, targets_a, inputs_b, targets_b = batch
    k_a, k_b = jax.random.split(key)
    x_a, y_a = _batch(k_a, inputs_a, targets_a)
    x_b, y_b = _batch(k_b, inputs_b, targets_b)

    def loss_fn(params):
        out_a, out_b = module.apply({'params': params}, x_a, x_b)
        return jnp.mean(jnp.abs(out_a - y_a)) + jnp.mean(jnp.abs(out_b - y_b))

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = _optimizer(learning_rate).update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


def train_swap_model(
    name: str,
    faces_a: np.ndarray,
    faces_b: np.ndarray,
    *,
    steps: int,
    batch_size: int = 16,
    seed: int = 0,
    width: int = WIDTH,
    learning_rate: float = LEARNING_RATE,
) -> SwapModel:
    """Train model `name` for `steps` steps on uint8 [N, S, S, 3] aligned face crops of identities A and B (any S).

    Each step draws `batch_size` faces per identity (with replacement, numpy's generator of `seed`). The result
    depends only on the inputs, `seed` and the number of threads XLA runs on (`fdx synth` trains on one); the compiled
    step depends only on the model, width, batch size and learning rate, so it is reused for any number of faces.
    """
    if steps < 1:
        raise ValueError(f'steps must be positive, got {steps}')
    spec = SPECS[name]
    module = spec.module(width)
    faces_a, faces_b = jnp.asarray(faces_a), jnp.asarray(faces_b)
    data = [
        np.asarray(_resize(faces, size)) for faces in (faces_a, faces_b) for size in (spec.input_size, spec.output_size)
    ]
    train_key, rng = jax.random.key(seed, impl=PRNG), np.random.default_rng(seed)
    params = _init_params(module, seed, data[0][:1], data[2][:1])
    opt_state, losses = _optimizer(learning_rate).init(params), []
    for step in range(steps):  # a Python loop: the same step under lax.scan runs ~10x slower on XLA CPU
        index_a, index_b = rng.integers(0, len(data[0]), batch_size), rng.integers(0, len(data[2]), batch_size)
        batch = (data[0][index_a], data[1][index_a], data[2][index_b], data[3][index_b])
        key = jax.random.fold_in(train_key, step)
        params, opt_state, loss = _train_step(module, learning_rate, params, opt_state, batch, key)
        losses.append(loss)
    return SwapModel(name, module, {'params': params}, spec.input_size, spec.output_size, np.asarray(jnp.stack(losses)))


@functools.partial(jax.jit, static_argnames=('module', 'size', 'to'))
def _convert(module: nn.Module, variables: Any, faces: jnp.ndarray, size: int, to: str) -> jnp.ndarray:
    return module.apply(variables, _resize(faces, size), to, method='convert')


def _decode(model: SwapModel, faces: np.ndarray, to: str) -> np.ndarray:
    """float32 [N, out, out, 3] in [0, 1]: `faces` decoded as identity `to`, in fixed-size batches (one compile)."""
    if to not in ('a', 'b'):
        raise ValueError(f"to must be 'a' or 'b', got {to!r}")
    faces = np.asarray(faces)
    pad = -len(faces) % CONVERT_BATCH
    padded = np.concatenate([faces, np.zeros((pad, *faces.shape[1:]), faces.dtype)])
    out = [
        np.asarray(_convert(model.module, model.variables, padded[i : i + CONVERT_BATCH], model.input_size, to))
        for i in range(0, len(padded), CONVERT_BATCH)
    ]
    return np.concatenate(out)[: len(faces)]


def swap(model: SwapModel, faces: np.ndarray, to: str) -> np.ndarray:
    """uint8 [N, S, S, 3] faces (any S) → uint8 [N, out, out, 3]: decoded as identity `to`, at the output size."""
    return np.round(_decode(model, faces, to) * 255).astype(np.uint8)


def reconstruction_error(model: SwapModel, faces: np.ndarray, identity: str) -> float:
    """Mean absolute error in [0, 1] units between `faces` decoded as `identity` and the faces at the output size."""
    targets = np.asarray(_resize(jnp.asarray(faces), model.output_size))
    return float(np.mean(np.abs(_decode(model, faces, identity) - targets)))


def train_and_swap(name: str, pairs: Sequence[tuple[np.ndarray, np.ndarray, int]], **training) -> list[tuple]:
    """Model `name` trained on each (faces A, faces B, seed) of `pairs` (`train_swap_model`'s keyword arguments), then
    swapping: per pair (B's faces as A, A's faces as B, losses). What `fdx synth` runs in its one-core generator
    workers (`fdx.synth.build.GeneratorPool`); one model per call compiles its step once."""
    results = []
    for faces_a, faces_b, seed in pairs:
        model = train_swap_model(name, faces_a, faces_b, seed=seed, **training)
        results.append((swap(model, faces_b, 'a'), swap(model, faces_a, 'b'), model.losses))
    return results
