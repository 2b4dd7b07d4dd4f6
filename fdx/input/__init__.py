"""Data preprocessing (TFDS builders) and grain input pipelines."""
