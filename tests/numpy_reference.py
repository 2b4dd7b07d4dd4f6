"""Numpy forwards written out from the papers' equations and the reference code, for the attention tests."""

import jax
import jax.numpy as jnp
import numpy as np


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def spatial_logits_numpy(x, kernel):
    """The [N, H, W] logits of CBAM eq. 3 / DMA-STA eq. 1: 7x7 cross-correlation, zero padding 3, over
    [mean_c; max_c]."""
    pooled = np.concatenate([x.mean(-1, keepdims=True), x.max(-1, keepdims=True)], -1)
    padded = np.pad(pooled, ((0, 0), (3, 3), (3, 3), (0, 0)))
    n, h, w, _ = x.shape
    logits = np.zeros((n, h, w))
    for i in range(h):
        for j in range(w):
            logits[:, i, j] = np.einsum('nabc,abc->n', padded[:, i : i + 7, j : j + 7], kernel[..., 0])
    return logits


def spatial_numpy(x, kernel, normalise=None):
    """CBAM eq. 3 / DMA-STA eq. 1-2 written out; `normalise` maps the logits before the sigmoid (the CBAM code's
    batch norm)."""
    logits = spatial_logits_numpy(x, kernel)
    if normalise is not None:
        logits = normalise(logits)
    return x * sigmoid(logits)[..., None]


def channel_numpy(x, p):
    """CBAM eq. 2 written out: σ(MLP(avgpool) + MLP(maxpool)), MLP = fc1 → ReLU → fc2 with biases."""

    def mlp(v):
        return np.maximum(v @ p['fc1']['kernel'] + p['fc1']['bias'], 0) @ p['fc2']['kernel'] + p['fc2']['bias']

    return x * sigmoid(mlp(x.mean((1, 2))) + mlp(x.max((1, 2))))[:, None, None, :]


def numpy_params(variables):
    return jax.tree.map(lambda a: np.asarray(a, np.float64), variables['params'])


def filled(init, *args, seed: int = 0):
    """Variables shaped like `init(key, *args)`, without compiling its random initialisers (slow on CPU): kernels
    ~ N(0, 1/fan_in), BN scales and running variances 1, biases and running means 0."""
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = path[-1].key
        if name in ('scale', 'var'):
            return jnp.ones(leaf.shape, leaf.dtype)
        if name in ('bias', 'mean'):
            return jnp.zeros(leaf.shape, leaf.dtype)
        return jnp.asarray(rng.standard_normal(leaf.shape) / np.sqrt(np.prod(leaf.shape[:-1])), leaf.dtype)

    return jax.tree_util.tree_map_with_path(fill, jax.eval_shape(init, jax.random.key(0), *args))


def softmax(v, axis=-1):
    e = np.exp(v - v.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


def conv3x3_nchw(x, kernel, bias):
    """3x3 cross-correlation with zero padding 1 (torch Conv2d), flax kernel layout [3, 3, in, out]."""
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    h, w = x.shape[2:]
    out = np.zeros((x.shape[0], kernel.shape[-1], h, w))
    for i in range(h):
        for j in range(w):
            out[:, :, i, j] = np.einsum('ncab,abcd->nd', padded[:, :, i : i + 3, j : j + 3], kernel)
    return out + bias[None, :, None, None]


def ema_numpy(x, p, groups):
    """EMA as the official code computes it, in its NCHW layout (reference notes), on an NHWC input."""
    x = x.transpose(0, 3, 1, 2)
    b, c, h, w = x.shape
    g = x.reshape(b * groups, c // groups, h, w)  # group k = channels k·cg … (k+1)·cg − 1
    x_h = g.mean(3, keepdims=True)  # [bg, cg, h, 1]
    x_w = g.mean(2, keepdims=True).transpose(0, 1, 3, 2)  # [bg, cg, w, 1]
    hw = np.einsum('nchx,cd->ndhx', np.concatenate([x_h, x_w], 2), p['conv1x1']['kernel'][0, 0])
    hw = hw + p['conv1x1']['bias'][None, :, None, None]
    y = g * sigmoid(hw[:, :, :h]) * sigmoid(hw[:, :, h:].transpose(0, 1, 3, 2))
    # GroupNorm with one channel per group: each channel normalised over its own H x W.
    y = (y - y.mean((2, 3), keepdims=True)) / np.sqrt(y.var((2, 3), keepdims=True) + 1e-5)
    x1 = y * p['norm']['scale'][None, :, None, None] + p['norm']['bias'][None, :, None, None]
    x2 = conv3x3_nchw(g, p['conv3x3']['kernel'], p['conv3x3']['bias'])
    n, cg = g.shape[:2]
    x11 = softmax(x1.mean((2, 3)))[:, None, :]  # [bg, 1, cg]
    x21 = softmax(x2.mean((2, 3)))[:, None, :]
    weights = x11 @ x2.reshape(n, cg, h * w) + x21 @ x1.reshape(n, cg, h * w)  # [bg, 1, hw]
    out = (g * sigmoid(weights.reshape(n, 1, h, w))).reshape(b, c, h, w)
    return out.transpose(0, 2, 3, 1)


def _conv1x1_nchw(x, kernel):
    return np.einsum('nchw,cd->ndhw', x, kernel[0, 0])


def _unfold(x, ratio):
    """torch.nn.Unfold(kernel_size=ratio, stride=ratio) reshaped to [B, C, ratio², L], L row-major over patches."""
    b, c, height, width = x.shape
    rows, cols = height // ratio, width // ratio
    out = np.zeros((b, c, ratio * ratio, rows * cols))
    for i in range(rows):
        for j in range(cols):
            out[:, :, :, i * cols + j] = x[:, :, i * ratio : (i + 1) * ratio, j * ratio : (j + 1) * ratio].reshape(
                b, c, ratio * ratio
            )
    return out


def graph_reasoning_numpy(vert_a, vert_b, vert_c, p):
    """RECCE's GraphReasoning forward (eval mode) in its NCHW layout with its per-position loop (reference notes)."""
    relu = lambda v: np.maximum(v, 0)  # noqa: E731
    a, b, c = (v.transpose(0, 3, 1, 2) for v in (vert_a, vert_b, vert_c))
    n, _, height, width = a.shape
    emb_a = _conv1x1_nchw(relu(_conv1x1_nchw(a, p['a_embed1']['kernel'])), p['a_embed2']['kernel'])
    emb_a = emb_a.reshape(n, -1, height * width)
    aggregated = []
    for name, vertices in (('b', b), ('c', c)):
        ratio = vertices.shape[2] // height
        gate = (1 - sigmoid(_conv1x1_nchw(a, p[f'{name}_gate']['kernel']))).reshape(*emb_a.shape)
        patches = _unfold(vertices, ratio).transpose(0, 2, 3, 1)  # [B, r², L, C]
        emb = relu(patches @ p[f'{name}_embed1']['kernel']) @ p[f'{name}_embed2']['kernel']
        columns = []
        for j in range(height * width):
            pair = np.concatenate([np.repeat(emb_a[:, None, :, j], ratio * ratio, axis=1), emb[:, :, j]], axis=-1)
            weights = softmax(relu(pair @ p[f'{name}_score']['kernel']), axis=1)  # [B, r², 1]
            columns.append((emb[:, :, j].transpose(0, 2, 1) @ weights)[..., 0] * gate[:, :, j])
        aggregated.append(np.stack(columns, axis=-1))
    out = sigmoid(np.concatenate([*aggregated, emb_a], axis=1)).reshape(n, -1, height, width)
    out = _conv1x1_nchw(relu(_conv1x1_nchw(out, p['reproject1']['kernel'])), p['reproject2']['kernel'])
    return out.transpose(0, 2, 3, 1)
