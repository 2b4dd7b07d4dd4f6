"""Parity with timm: PyTorch weights converted to flax give the same logits (random weights, no download)."""

import pickle

import jax
import numpy as np
import pytest

torch = pytest.importorskip('torch', reason='parity tests need the torch extra: pip install -e ".[torch]"')
timm = pytest.importorskip('timm', reason='parity tests need the torch extra: pip install -e ".[torch]"')

from fdx import cli  # noqa: E402
from fdx.models import convert  # noqa: E402

TOLERANCE = 1e-4  # max |flax - torch| relative to max |torch logits|


def randomize_normalisation(model):
    """Non-trivial BN/LN parameters and running statistics, so a swapped or dropped one cannot go unnoticed."""
    generator = torch.Generator().manual_seed(1)

    def noise(t, scale):
        return scale * torch.randn(t.shape, generator=generator)

    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.BatchNorm2d, torch.nn.LayerNorm)):
                module.weight.copy_(1 + noise(module.weight, 0.2))
                module.bias.copy_(noise(module.bias, 0.2))
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.copy_(noise(module.running_mean, 0.2))
                module.running_var.copy_(0.5 + torch.rand(module.running_var.shape, generator=generator))
    return model.eval()


def timm_model(name, **kwargs):
    torch.manual_seed(0)
    return randomize_normalisation(timm.create_model(name, pretrained=False, **kwargs))


def state_dict(model):
    return {k: v.numpy() for k, v in model.state_dict().items()}


def assert_parity(model, module, variables, size, batch=2):
    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(x).numpy()
    logits, _ = jax.jit(module.apply)(variables, x.permute(0, 2, 3, 1).numpy())
    error = np.abs(np.asarray(logits) - expected).max() / np.abs(expected).max()
    print(f'{type(model).__name__} @{size}: max|diff|/max|logit| = {error:.2e}')
    assert error <= TOLERANCE


@pytest.mark.parametrize(
    'name, size, kwargs',
    [
        ('legacy_xception', 299, {}),
        ('legacy_xception', 71, {'num_classes': 2}),  # the smallest input timm accepts; a binary head
        ('resnet50', 224, {}),
        ('resnet50', 160, {'num_classes': 5}),
        ('vit_base_patch16_224', 224, {}),
    ],
)
def test_full_size_parity(name, size, kwargs):
    model = timm_model(name, **kwargs)
    module, variables = convert.convert_state_dict(name, state_dict(model))
    assert_parity(model, module, variables, size)


@pytest.mark.parametrize('size', [224, 256, 160])
def test_reduced_vit_parity_with_resampled_position_embedding(size):
    model = timm_model('vit_base_patch16_224', depth=2, dynamic_img_size=True)
    with torch.no_grad():
        model.pos_embed.normal_(0, 1, generator=torch.Generator().manual_seed(3))  # make resampling errors visible
    module, variables = convert.convert_state_dict('vit_base_patch16_224', state_dict(model), depth=2)
    assert_parity(model, module, variables, size)


def test_partial_vit_needs_explicit_skip():
    model = timm_model('vit_base_patch16_224', depth=3)
    weights = state_dict(model)
    with pytest.raises(ValueError, match=r'unused torch keys \(\d+\):\n  blocks\.2\.'):
        convert.convert_state_dict('vit_base_patch16_224', weights, depth=2)
    module, variables = convert.convert_state_dict('vit_base_patch16_224', weights, depth=2, skip=['blocks.2.*'])
    assert set(variables['params']) >= {'block0', 'block1'} and 'block2' not in variables['params']


def cadene_state_dict(model):
    """The FaceForensics++/Cadene file layout: 2-D pointwise weights and a `last_linear` classifier."""
    out = {}
    for key, value in model.state_dict().items():
        if key.endswith('pointwise.weight'):
            value = value[:, :, 0, 0]
        out[key.replace('fc.', 'last_linear.')] = value.clone()
    return out


def test_cadene_xception_file_and_cli(tmp_path, capsys):
    model = timm_model('legacy_xception', num_classes=2)
    src = tmp_path / 'xception-cadene.pth'
    torch.save({'state_dict': {f'module.{k}': v for k, v in cadene_state_dict(model).items()}}, src)
    out = tmp_path / 'converted'
    assert cli.main(['convert-weights', '--arch', 'legacy_xception', '--src', str(src), '--out', str(out)]) == 0
    assert '20,811,050 parameters, num_classes=2' in capsys.readouterr().out
    module, variables = convert.load_converted(out)
    assert_parity(model, module, variables, 96)
    assert cli.main(['convert-weights', '--arch', 'legacy_xception', '--src', str(src), '--out', str(out)]) == 2
    assert 'already exists' in capsys.readouterr().err


class Arbitrary:
    """A pickled object that `weights_only` loading must refuse."""


def test_bad_sources_are_named(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match='no-such.pth'):
        convert.load_torch('resnet50', tmp_path / 'no-such.pth')

    evil = tmp_path / 'evil.pth'
    evil.write_bytes(pickle.dumps(Arbitrary()))
    with pytest.raises(ValueError, match='evil.pth: not a plain PyTorch state dict'):
        convert.load_torch('resnet50', evil)
    truncated = tmp_path / 'truncated.pth'
    torch.save({'fc.weight': torch.zeros(3, 2048)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:100])
    with pytest.raises(ValueError, match=r'truncated.pth: not a plain PyTorch state dict \(truncated or corrupt\)'):
        convert.load_torch('resnet50', truncated)
    code = cli.main(['convert-weights', '--arch', 'resnet50', '--src', str(evil), '--out', str(tmp_path / 'o')])
    assert code == 2 and 'evil.pth' in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown arch 'resnet18'"):
        convert.convert_state_dict('resnet18', {})


def test_mismatches_are_all_listed():
    weights = state_dict(timm_model('resnet50', num_classes=4))
    weights['layer1.0.conv1.weight'] = weights['layer1.0.conv1.weight'][:32]
    del weights['layer4.2.bn3.running_var']
    weights['layer5.0.conv1.weight'] = np.zeros((1, 1, 1, 1), np.float32)
    with pytest.raises(ValueError) as error:
        convert.convert_state_dict('resnet50', weights)
    message = str(error.value)
    assert 'unused torch keys (1):\n  layer5.0.conv1.weight (→ params/layer5/block0/conv1/kernel)' in message
    assert 'missing flax variables (1):\n  batch_stats/layer4/block2/bn3/var' in message
    assert (
        'shape mismatches (1):\n  layer1.0.conv1.weight (1, 1, 64, 32) → params/layer1/block0/conv1/kernel' in message
    )
