"""Toy experiment config for tests: one field of each overridable type, a 2x2 sweep."""

import ml_collections


def get_config(arg=None):
    """Returns the toy config; arg `mini` shrinks the model."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.optim = ml_collections.ConfigDict(dict(lr=1e-3, steps=100, clip=None))
    config.model = ml_collections.ConfigDict(dict(width=16, use_bias=True, pretrained=None, strides=(1, 2)))
    config.data = ml_collections.ConfigDict(dict(name='ffpp', image_size=(224, 224), mean=[0.5, 0.5, 0.5]))
    if arg == 'mini':
        config.model.width = 4
    return config


def sweep(arg=None):
    """2x2 grid over learning rate and width."""
    del arg
    for lr in (1e-3, 1e-4):
        for width in (8, 16):
            yield {'optim.lr': lr, 'model.width': width}
