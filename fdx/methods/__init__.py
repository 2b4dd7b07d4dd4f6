"""Methods: what each paper supplies to the one trainer (model, initialisation, losses, prediction).

`config.method` names one of `METHODS` (or is a `package.module:Class` path to a method defined elsewhere);
`build(config)` instantiates it.
"""

import importlib

from fdx.methods.base import Critic, LossOutput, Method

__all__ = ['METHODS', 'Critic', 'LossOutput', 'Method', 'build']

# config.method → 'module:class'
METHODS = {
    'classifier': 'fdx.methods.classifier:Classifier',
    'dma_sta': 'fdx.methods.dma_sta:DmaSta',
    'panet': 'fdx.methods.panet:Panet',  # RECCE when no attention site is set
    'long_distance_attention': 'fdx.methods.long_distance_attention:LongDistanceAttention',
    'anti_compression': 'fdx.methods.anti_compression:AntiCompression',
    'aunet': 'fdx.methods.aunet:AUNet',
}


def method_class(config) -> type:
    """The class `config.method` names (importing its module registers the method's own views)."""
    path = METHODS.get(config.method, config.method)
    if ':' not in path:
        raise ValueError(
            f'config.method: unknown method {config.method!r}; choose from {", ".join(METHODS)} '
            'or give a package.module:Class path'
        )
    module, name = path.split(':')
    cls = getattr(importlib.import_module(module), name, None)
    if cls is None:
        raise ValueError(f'config.method: {module} has no {name!r}')
    return cls


def build(config) -> Method:
    """The method named by `config.method`, constructed from the whole experiment config."""
    return method_class(config)(config)
