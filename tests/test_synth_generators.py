"""DFDM generators (Table 2): shapes and structure per model, deterministic training that learns, distinct swaps."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skimage.data

from fdx.input.layouts import MODELS as LAYOUT_MODELS
from fdx.synth import generators
from fdx.synth.generators import MODELS, SPECS, reconstruction_error, swap, train_swap_model

BATCH = 4  # one batch size throughout, so each model's training step compiles once per session


def _crops(image: np.ndarray, centre: tuple[int, int], seed: int, n: int = 32, size: int = 96) -> np.ndarray:
    """`n` jittered square crops around `centre`: one synthetic 'identity'."""
    rng = np.random.default_rng(seed)
    half = size // 2
    return np.stack([image[y - half : y + half, x - half : x + half] for y, x in centre + rng.integers(-6, 7, (n, 2))])


@pytest.fixture(scope='module')
def faces() -> tuple[np.ndarray, np.ndarray]:
    return _crops(skimage.data.astronaut(), (110, 230), 0), _crops(skimage.data.chelsea(), (130, 260), 1)


@pytest.fixture(scope='module')
def trained(faces) -> dict[str, generators.SwapModel]:
    return {name: train_swap_model(name, *faces, steps=10, batch_size=BATCH) for name in MODELS}


def _params(name: str, width: int = generators.WIDTH) -> dict:
    size = SPECS[name].input_size
    x = jnp.zeros((1, size, size, 3))
    return jax.eval_shape(lambda: SPECS[name].module(width).init(jax.random.key(0), x, x))['params']


def test_models_match_layouts():
    assert MODELS == LAYOUT_MODELS == tuple(SPECS)


@pytest.mark.parametrize('width', [generators.WIDTH, generators.FULL_WIDTH])
@pytest.mark.parametrize(
    'name, input_size, output_size',
    [('Faceswap', 64, 64), ('Lightweight', 64, 64), ('IAE', 64, 64), ('Dfaker', 64, 128), ('DFL-H128', 128, 128)],
)
def test_table2_sizes(name, input_size, output_size, width):
    spec = SPECS[name]
    assert (spec.input_size, spec.output_size) == (input_size, output_size)
    x = jnp.zeros((2, input_size, input_size, 3))
    out_a, out_b = jax.eval_shape(lambda: spec.module(width).init_with_output(jax.random.key(0), x, x)[0])
    assert out_a.shape == out_b.shape == (2, output_size, output_size, 3)


def test_structure_reflects_variation():
    faceswap, lightweight, iae, dfaker, dfl = (_params(name) for name in MODELS)

    def convs(params):
        return sorted(k for k in params['encoder'] if k.startswith('conv'))

    assert set(faceswap) == set(lightweight) == set(dfaker) == set(dfl) == {'encoder', 'decoder_a', 'decoder_b'}
    assert convs(faceswap) == convs(dfaker) == convs(dfl) == ['conv1', 'conv2', 'conv3', 'conv4']
    assert convs(lightweight) == ['conv1', 'conv2', 'conv3']  # Table 2: Lightweight varies the encoder
    assert {'bottleneck', 'upscale'} <= set(faceswap['encoder']) & set(lightweight['encoder'])
    assert sorted(faceswap['decoder_a']) == ['out', 'upscale1', 'upscale2', 'upscale3'] == sorted(dfl['decoder_a'])
    # IAE: 4Conv encoder without a dense head, three intermediates, one shared 4Ups decoder.
    assert set(iae) == {'encoder', 'inter_a', 'inter_b', 'inter_both', 'decoder'}
    assert sorted(iae['encoder']) == ['conv1', 'conv2', 'conv3', 'conv4']
    assert sorted(iae['decoder']) == ['out', 'upscale1', 'upscale2', 'upscale3', 'upscale4']
    # Dfaker: 4Ups + 3 residual blocks + conv.
    assert sorted(dfaker['decoder_b']) == ['out', 'residual1', 'residual2', 'residual3'] + [
        f'upscale{i}' for i in range(1, 5)
    ]

    # DFL-H128 takes 128 px: its encoder's first dense layer sees 4x the flattened features of Faceswap's.
    def dense(params):
        return params['encoder']['bottleneck']['dense1']['kernel'].shape[0]

    assert dense(dfl) == 4 * dense(faceswap)


def test_training_is_deterministic(faces):
    def run(seed):
        return train_swap_model('Lightweight', *faces, steps=3, batch_size=BATCH, seed=seed)

    first, again, other = run(0), run(0), run(1)

    def leaves(model):
        return jax.tree.leaves(model.variables)

    assert all(np.array_equal(x, y) for x, y in zip(leaves(first), leaves(again), strict=True))
    np.testing.assert_array_equal(first.losses, again.losses)
    assert not all(np.array_equal(x, y) for x, y in zip(leaves(first), leaves(other), strict=True))


def test_training_reduces_reconstruction_error(faces):
    faces_a, faces_b = faces
    before = train_swap_model('Faceswap', faces_a, faces_b, steps=1, batch_size=BATCH)
    after = train_swap_model('Faceswap', faces_a, faces_b, steps=100, batch_size=BATCH)
    for identity, identity_faces in (('a', faces_a), ('b', faces_b)):
        error_before = reconstruction_error(before, identity_faces, identity)
        error_after = reconstruction_error(after, identity_faces, identity)
        assert error_after < 0.6 * error_before, (identity, error_before, error_after)
    assert after.losses[-10:].mean() < 0.6 * after.losses[:10].mean()


@pytest.mark.parametrize('name', MODELS)
def test_swap_outputs(trained, faces, name):
    model, size = trained[name], SPECS[name].output_size
    as_a, as_b = swap(model, faces[1][:5], 'a'), swap(model, faces[1][:5], 'b')
    assert as_a.dtype == as_b.dtype == np.uint8
    assert as_a.shape == as_b.shape == (5, size, size, 3)
    assert np.abs(as_a.astype(float) - as_b.astype(float)).mean() > 3.0
    with pytest.raises(ValueError):
        swap(model, faces[1][:1], 'c')


def test_models_leave_different_outputs(trained, faces):
    outputs = {}
    for name, model in trained.items():
        out = swap(model, faces[1][:8], 'a').astype(np.float32)
        outputs[name] = np.asarray(jax.image.resize(out, (8, 64, 64, 3), 'linear', antialias=True))
    for first, second in itertools.combinations(MODELS, 2):
        assert np.abs(outputs[first] - outputs[second]).mean() > 3.0, (first, second)
