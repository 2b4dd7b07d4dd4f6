"""`make demo` until the quickstart lands: PyTorch → fdx conversion of the three backbones, with parity figures.

For each backbone a timm model with random weights (nothing is downloaded) is saved as a PyTorch state dict, converted
with `fdx convert-weights` into an orbax checkpoint, loaded back, and run on the same batch as PyTorch.
"""

import shutil
import sys
import time
from pathlib import Path

import jax
import numpy as np

from fdx import cli
from fdx.models import convert, pretrained

BACKBONES = (('legacy_xception', 299), ('resnet50', 224), ('vit_base_patch16_224', 224))


def main(argv=None) -> int:
    import timm
    import torch

    out = Path(argv[0] if argv else 'work/demo')
    out.mkdir(parents=True, exist_ok=True)
    print(f'{"arch":<22} {"params":>12} {"max|diff|/max|logit|":>22} {"convert s":>10} {"jit+run s":>10}')
    for arch, size in BACKBONES:
        torch.manual_seed(0)
        model = timm.create_model(arch, pretrained=False).eval()
        src, dst = out / f'{arch}.pth', out / f'{arch}-fdx'
        torch.save(model.state_dict(), src)
        start = time.perf_counter()
        shutil.rmtree(dst, ignore_errors=True)
        if cli.main(['convert-weights', '--arch', arch, '--src', str(src), '--out', str(dst)]) != 0:
            return 1
        converted = time.perf_counter() - start
        module, variables = convert.load_converted(dst)
        x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            expected = model(x).numpy()
        start = time.perf_counter()
        logits, _ = jax.jit(module.apply)(variables, x.permute(0, 2, 3, 1).numpy())
        logits = np.asarray(logits)
        ran = time.perf_counter() - start
        error = np.abs(logits - expected).max() / np.abs(expected).max()
        print(f'{arch:<22} {pretrained.count_params(variables):>12,} {error:>22.2e} {converted:>10.1f} {ran:>10.1f}')
        if error > 1e-4:
            print(f'parity FAILED for {arch}', file=sys.stderr)
            return 1
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
