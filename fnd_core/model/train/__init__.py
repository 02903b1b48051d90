"""Fitting a model: the recipe (options, weights, seeds), the head loops on cached features,
the optional fine-tune, the objective and its remedies (worst topic, topic adversary), and the
trainer that runs them and reports what it fitted.
"""
