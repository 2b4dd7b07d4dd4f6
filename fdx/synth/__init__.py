"""Synthetic forgery benchmark: identities, real videos and face swaps made offline (`fdx synth`)."""
