"""Composition roots: one module per actor process."""
