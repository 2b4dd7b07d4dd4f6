"""fdx: face-forgery detection and attribution methods in JAX/Flax."""

__version__ = "0.1.0"
