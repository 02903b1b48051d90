"""The frozen encoders: backbones and what each one needs, their pretrained loaders, the choice
of encoders for a model config (read from :mod:`fnd_core.model.presets`), and image decoding.

Importing the package loads no torch: the modules below do, when imported.
"""
