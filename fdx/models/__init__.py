"""Backbones and method models (flax.linen, NHWC); each returns `(logits, features)`."""
