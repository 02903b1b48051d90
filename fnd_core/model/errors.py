"""Errors of the model package, importable without torch (callers catch them cheaply)."""

from __future__ import annotations


class BackboneUnavailableError(RuntimeError):
    """Pretrained weights a preset needs are not on this machine.

    Raised instead of silently falling back to random weights: a model trained on random
    backbones would look healthy in logs and be useless.
    """


class ArtifactIntegrityError(RuntimeError):
    """A saved model does not match the sha256 recorded for it (corrupt or tampered)."""


class ImageDecodeError(ValueError):
    """An image could not be read or decoded, or is larger than allowed."""
