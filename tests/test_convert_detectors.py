"""Published detectors' state dicts → fdx: FaceForensics++'s and DeepfakeBench's Xception, DeepfakeBench's RECCE.

The PyTorch modules below rebuild each detector's structure and key names from its code (cited per class; timm's
legacy Xception, `Block` and `SeparableConv2d` have the structure and key names of FF++'s and DeepfakeBench's), get
random weights and batch-norm statistics, and must give the converted fdx model's logits (eval mode).
"""

import json
import re

import jax
import numpy as np
import pytest

torch = pytest.importorskip('torch', reason='parity tests need the torch extra: pip install -e ".[torch]"')
timm = pytest.importorskip('timm', reason='parity tests need the torch extra: pip install -e ".[torch]"')

from test_convert import randomize_normalisation
from timm.models.xception import Block, SeparableConv2d

from fdx import cli
from fdx.models import convert

F = torch.nn.functional
TOLERANCE = 1e-4  # max |flax - torch| over the logits


def last_linear_xception(dropout: bool, adjust_channel: bool = False) -> torch.nn.Module:
    """Cadene's Xception as FF++ (`classification/network/xception.py`) and DeepfakeBench
    (`training/networks/xception.py`) build it: timm's legacy Xception whose classifier is `last_linear`,
    Sequential(Dropout, Linear) when trained with dropout; DeepfakeBench's also holds `adjust_channel` (run only in its
    `adjust_channel` mode)."""
    model = timm.create_model('legacy_xception', pretrained=False, num_classes=2)
    fc, model.fc = model.fc, torch.nn.Identity()
    model.last_linear = torch.nn.Sequential(torch.nn.Dropout(0.5), fc) if dropout else fc
    if adjust_channel:
        conv = torch.nn.Conv2d(2048, 512, 1, 1)
        model.adjust_channel = torch.nn.Sequential(conv, torch.nn.BatchNorm2d(512), torch.nn.ReLU(inplace=False))
    return model


class XceptionDetector(torch.nn.Module):
    """FF++'s `TransferModel` (`classification/network/models.py`: the network as `model`) and DeepfakeBench's
    `XceptionDetector` (`training/detectors/xception_detector.py`: as `backbone`); features → ReLU → mean → logits."""

    def __init__(self, attribute: str, net: torch.nn.Module):
        super().__init__()
        self.attribute = attribute
        self.add_module(attribute, net)

    def forward(self, x):
        net = getattr(self, self.attribute)
        return net.last_linear(net(x))


class GraphReasoning(torch.nn.Module):
    """DeepfakeBench `recce_detector.py` `GraphReasoning(728, 256, 256, 256, 128, 256, [2, 4], 0.2)`, its loop over
    the positions of vertex a included."""

    def __init__(self, a=728, embed=256, b=256, c=128, dropout=0.2):
        super().__init__()
        nn = torch.nn

        def mlp(n):
            return nn.Sequential(nn.Linear(n, embed, bias=False), nn.ReLU(True), nn.Linear(embed, embed, bias=False))

        def reweight():
            return nn.Sequential(nn.Linear(2 * embed, 1, bias=False), nn.ReLU(True), nn.Softmax(dim=1))

        conv = nn.Conv2d
        self.va_embedding = nn.Sequential(
            conv(a, embed, 1, bias=False), nn.ReLU(True), conv(embed, embed, 1, bias=False)
        )
        self.va_gated_b = nn.Sequential(conv(a, embed, 1, bias=False), nn.Sigmoid())
        self.va_gated_c = nn.Sequential(conv(a, embed, 1, bias=False), nn.Sigmoid())
        self.vb_embedding, self.vc_embedding = mlp(b), mlp(c)
        self.reweight_ab, self.reweight_ac = reweight(), reweight()
        self.reproject = nn.Sequential(
            conv(3 * embed, a, 1, bias=False), nn.ReLU(True), conv(a, a, 1, bias=False), nn.Dropout(dropout)
        )

    def forward(self, vert_a, vert_b, vert_c):
        emb_a = self.va_embedding(vert_a).flatten(2)  # [B, E, L]
        aggregated = []
        for vert, ratio, embedding, reweight, gated in (
            (vert_b, 2, self.vb_embedding, self.reweight_ab, self.va_gated_b),
            (vert_c, 4, self.vc_embedding, self.reweight_ac, self.va_gated_c),
        ):
            gate = (1 - gated(vert_a)).flatten(2)
            patches = F.unfold(vert, ratio, stride=ratio).reshape(vert.shape[0], vert.shape[1], ratio**2, -1)
            emb = embedding(patches.permute(0, 2, 3, 1))  # [B, r², L, E]
            per_position = []
            for j in range(emb_a.shape[-1]):
                emb_j = emb[:, :, j]
                weights = reweight(torch.cat([emb_a[:, None, :, j].expand(-1, ratio**2, -1), emb_j], dim=-1))
                per_position.append(torch.bmm(emb_j.transpose(1, 2), weights)[..., 0] * gate[:, :, j])
            aggregated.append(torch.stack(per_position, dim=-1))
        out = torch.sigmoid(torch.cat([*aggregated, emb_a], dim=1)).reshape(vert_a.shape[0], -1, *vert_a.shape[2:])
        return self.reproject(out)


class GuidedAttention(torch.nn.Module):
    """DeepfakeBench `recce_detector.py` `GuidedAttention(728, 0.2)`."""

    def __init__(self, depth=728, dropout=0.2):
        super().__init__()
        nn = torch.nn
        self.gated = nn.Sequential(
            nn.Conv2d(3, 3, 3, 1, 1, bias=False), nn.ReLU(True), nn.Conv2d(3, 1, 1, bias=False), nn.Sigmoid()
        )
        self.h = nn.Sequential(nn.Conv2d(depth, depth, 1, 1, bias=False), nn.BatchNorm2d(depth), nn.ReLU(True))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, pred_x, embedding):
        residual = F.interpolate(torch.abs(x - pred_x), size=embedding.shape[-2:], mode='bilinear', align_corners=True)
        return self.gated(residual) * self.h(embedding) + self.dropout(embedding)


def decoder_up(cin, cout):
    """RECCE's decoder1/3/5: Upsample ×2, SeparableConv2d 3x3, BN, ReLU."""
    nn = torch.nn
    return nn.Sequential(
        nn.UpsamplingNearest2d(scale_factor=2), SeparableConv2d(cin, cout, 3, 1, 1), nn.BatchNorm2d(cout), nn.ReLU(True)
    )


class Recce(torch.nn.Module):
    """DeepfakeBench `recce_detector.py` `Recce(num_classes=2)` in eval mode (no input noise); the encoder is timm
    0.6.12's `xception` (timm's `legacy_xception` now), its ImageNet `fc` unused."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.encoder = timm.create_model('legacy_xception', pretrained=False)
        self.global_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(2048, 2)
        self.attention = GuidedAttention()
        self.reasoning = GraphReasoning()
        self.decoder1, self.decoder2 = decoder_up(728, 256), Block(256, 256, 3, 1)
        self.decoder3, self.decoder4 = decoder_up(256, 128), Block(128, 128, 3, 1)
        self.decoder5 = decoder_up(128, 64)
        self.decoder6 = nn.Sequential(nn.Conv2d(64, 3, 1, 1, bias=False), nn.Tanh())

    def forward(self, x):
        e = self.encoder
        out = e.act2(e.bn2(e.conv2(e.act1(e.bn1(e.conv1(x))))))
        embedding = e.block4(e.block3(e.block2(e.block1(out))))
        out_d2 = self.decoder2(self.decoder1(self.dropout(embedding)))
        out_d4 = self.decoder4(self.decoder3(out_d2))
        pred = self.decoder6(self.decoder5(out_d4))
        recons_x = F.interpolate(pred, size=x.shape[-2:], mode='bilinear', align_corners=True)
        self.loss_inputs = {'recons': [recons_x]}
        embedding = e.block7(e.block6(e.block5(embedding)))
        embedding = e.block8(self.reasoning(embedding, out_d2, out_d4) + embedding)
        embedding = self.attention(x, recons_x, embedding)
        embedding = e.block12(e.block11(e.block10(e.block9(embedding))))
        embedding = e.act4(e.bn4(e.conv4(e.act3(e.bn3(e.conv3(embedding))))))
        return self.fc(self.dropout(self.global_pool(embedding).flatten(1)))


class RecceDetector(torch.nn.Module):
    """DeepfakeBench `RecceDetector`: `model` (Recce) runs; `backbone` (DeepfakeBench's Xception) is built, never run."""

    def __init__(self):
        super().__init__()
        self.backbone = last_linear_xception(dropout=False, adjust_channel=True)
        self.model = Recce()

    def forward(self, x):
        return self.model(x)


def excite(*parts, gain=3.0):
    """Weights of std gain/√fan_in (torch's default init: about 0.6/√fan_in), so that RECCE's own parts move the logits
    well beyond the tolerance: swapping two same-shaped tensors of its graph reasoning changes them by > 3e-3."""
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for part in parts:
            for layer in part.modules():
                if isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)):
                    layer.weight.normal_(0, gain / layer.weight[0].numel() ** 0.5, generator=generator)


def detector(arch, dropout=False):
    torch.manual_seed(0)
    if arch == 'deepfakebench_recce':
        model = RecceDetector()
        recce = model.model
        excite(recce.reasoning, recce.attention, *(getattr(recce, f'decoder{i}') for i in range(1, 7)))
        head = recce.fc
    else:
        net = last_linear_xception(dropout, adjust_channel=arch == 'deepfakebench_xception')
        model = XceptionDetector('model' if arch == 'ffpp_xception' else 'backbone', net)
        head = net.last_linear[-1] if dropout else net.last_linear
    with torch.no_grad():  # logits of order 1, so that the absolute tolerance is a strict one
        head.weight.normal_(0, 1, generator=torch.Generator().manual_seed(3))
    return randomize_normalisation(model)


def max_errors(model, module, variables, size, batch=2):
    """max |flax - torch| of the logits, and of RECCE's reconstruction."""
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(2)) * 2 - 1  # [-1, 1] as trained
    with torch.no_grad():
        expected = model(x).numpy()
    logits, features = jax.jit(module.apply)(variables, x.permute(0, 2, 3, 1).numpy())
    errors = {'logits': np.abs(np.asarray(logits) - expected).max()}
    if isinstance(model, RecceDetector):
        reconstruction = model.model.loss_inputs['recons'][0].permute(0, 2, 3, 1).numpy()
        errors['reconstruction'] = np.abs(np.asarray(features['reconstruction']) - reconstruction).max()
    diffs = ', '.join(f'{k} {v:.1e}' for k, v in errors.items())
    print(f'{type(model).__name__} @{size}: max|logit| = {np.abs(expected).max():.2f}, max|diff|: {diffs}')
    return errors


@pytest.mark.parametrize(
    'arch, dropout, size',
    [('ffpp_xception', False, 96), ('deepfakebench_xception', True, 96)],  # both heads: Linear, (Dropout, Linear)
)
def test_xception_detectors(tmp_path, arch, dropout, size):
    model = detector(arch, dropout)
    weights = {f'module.{k}': v for k, v in model.state_dict().items()}  # as saved under (Distributed)DataParallel
    torch.save(weights, tmp_path / 'detector.pth')
    module, variables = convert.load_torch(arch, tmp_path / 'detector.pth')
    assert module.num_classes == 2 and max_errors(model, module, variables, size)['logits'] <= TOLERANCE


def test_deepfakebench_recce_file_and_cli(tmp_path, capsys):
    model = detector('deepfakebench_recce')
    src, out = tmp_path / 'recce_best.pth', tmp_path / 'converted'
    torch.save(model.state_dict(), src)
    argv = ['convert-weights', '--arch', 'deepfakebench_recce', '--src', str(src), '--out', str(out)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert 'num_classes=2' in printed and 'left out backbone.*: ' in printed
    meta = json.loads((out / 'meta.json').read_text())
    assert meta['model_kwargs'] == {'num_classes': 2}
    assert meta['left_out'].keys() == {'backbone.*', 'model.encoder.fc.*'}
    assert meta['preprocessing']['input_size'] == 256 and meta['preprocessing']['mean'] == [0.5] * 3
    module, variables = convert.load_converted(out)
    assert max(max_errors(model, module, variables, 64).values()) <= TOLERANCE


def test_every_key_is_used_or_left_out_with_a_reason():
    weights = {k: v.numpy() for k, v in detector('deepfakebench_xception').state_dict().items()}
    weights['backbone.block13.rep.1.conv1.weight'] = np.zeros((728, 1, 3, 3), np.float32)
    weights['head.weight'] = np.zeros((2, 2048), np.float32)
    del weights['backbone.bn4.running_var']
    with pytest.raises(ValueError) as error:
        convert.convert_state_dict('deepfakebench_xception', weights, source='xception_best.pth')
    message = str(error.value)
    assert message.startswith('xception_best.pth: cannot convert to deepfakebench_xception:\nunused torch keys (2):')
    assert "  head.weight (not under 'backbone.')" in message
    assert '  backbone.block13.rep.1.conv1.weight (→ params/block13/rep/1/conv1/kernel)' in message
    assert 'missing flax variables (1):\n  batch_stats/bn4/var' in message
    with pytest.raises(ValueError) as error:
        convert.convert_state_dict('ffpp_xception', weights)  # another detector's layout
    assert 'cannot convert to ffpp_xception (no tensor fits it: another layout? --arch is one of' in str(error.value)
    assert "\n  backbone.conv1.weight (not under 'model.')" in str(error.value)


class TransferModel(torch.nn.Module):
    """A whole module, as FF++'s released models were saved (`torch.save(model)`)."""

    def __init__(self):
        super().__init__()
        self.model = torch.nn.Linear(2, 2)


@pytest.mark.parametrize(
    'content, reason',
    [
        (TransferModel(), 'it holds objects other than tensors'),
        (torch.zeros(3), 'it holds a Tensor, not a dict of tensors'),
        ({'model.last_linear.weight': [0.0, 1.0]}, "1 non-tensor entries: 'model.last_linear.weight': list"),
    ],
    ids=['pickled-module', 'tensor', 'non-tensors'],
)
def test_what_is_not_a_state_dict_is_named(tmp_path, content, reason):
    src = tmp_path / 'full_c23.p'
    torch.save(content, src, _use_new_zipfile_serialization=False)  # FF++'s files predate the zip format
    with pytest.raises(ValueError, match=re.escape(f'full_c23.p: not a plain PyTorch state dict ({reason})')):
        convert.load_torch('ffpp_xception', src)
