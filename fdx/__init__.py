"""fdx: face-forgery detection and attribution methods in JAX/Flax."""

__version__ = "0.1.0"


def __getattr__(name: str):
    """`fdx.Detector` (`fdx.detect.Detector`), imported on first use so that `import fdx` stays light."""
    if name == 'Detector':
        from fdx.detect import Detector

        return Detector
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
