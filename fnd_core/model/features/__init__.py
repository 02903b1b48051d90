"""Frozen-encoder features: encoding each distinct picture and text once, the content-keyed
on-disk cache they live in, and P(fake) from a head over them (the inference half of a model).
"""
