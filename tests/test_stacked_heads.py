"""Many fusion heads fitted as one stack: each head is the model it would be on its own."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fnd_core.model import ModelConfig
from fnd_core.model.features.encoding import EncodedFeatures
from fnd_core.model.network import build_model
from fnd_core.model.train.heads import fit_head, fit_head_looped, validate
from fnd_core.model.train.objective import alignment_loss
from fnd_core.model.train.recipe import TrainOptions
from fnd_core.model.train.stacked_heads import HeadJob, _alignment, _Stack, fit_heads


def heads(config: ModelConfig, k: int) -> list:
    out = []
    for seed in range(k):
        torch.manual_seed(seed)
        out.append(build_model(config, pretrained=False).eval())
    return out


def features(n: int, seed: int = 0) -> EncodedFeatures:
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(n, 1280, generator=g)
    text = torch.nn.functional.normalize(torch.randn(n, 384, generator=g), dim=-1)
    return EncodedFeatures(image=image, text=text)


def job(train: range, val: range, seed: int = 0) -> HeadJob:
    train_rows, val_rows = np.array(train), np.array(val)
    ones = np.ones(len(train_rows), np.float32), np.ones(len(val_rows), np.float32)
    return HeadJob(train_rows, val_rows, *ones, seed)


@pytest.mark.parametrize(
    "config",
    [ModelConfig(), ModelConfig(fusion="interaction"), ModelConfig(modalities="text")],
    ids=["concat", "interaction", "text"],
)
def test_a_stack_computes_what_each_model_computes(config: ModelConfig) -> None:
    """The stack's own copy of the head (batched products) is the network's head, head by head."""
    models = heads(config, 3)
    x = features(40)
    stack = _Stack(models, x, np.zeros(40), [job(range(30), range(30, 40))] * 3,
                   TrainOptions(), torch.device("cpu"))  # fmt: skip
    with torch.no_grad():  # move every head off its initial weights first
        for w in stack.weights.values():
            w.add_(torch.randn_like(w) * 0.05)
    rows = torch.stack([torch.arange(0, 10), torch.arange(10, 20), torch.arange(20, 30)])
    stacked = stack.logits(rows)
    for position, model in enumerate(models):
        model.load_state_dict(
            {n: w[position].detach() for n, w in stack.weights.items()}, strict=False
        )
        part = x.subset(rows[position].tolist())
        with torch.no_grad():
            own = model.head_forward(part.image if config.uses_image else None, part.text)
        torch.testing.assert_close(stacked[position], own, rtol=1e-4, atol=1e-5)


def test_the_stacked_alignment_loss_is_each_heads_own() -> None:
    """Per head: the real posts of its batch only (fake and padded rows left out)."""
    g = torch.Generator().manual_seed(1)
    image, text = torch.randn(2, 12, 16, generator=g), torch.randn(2, 12, 16, generator=g)
    real = torch.zeros(2, 12, dtype=torch.bool)
    real[0, [0, 3, 4, 9]] = True
    real[1, [5]] = True  # one real post: nothing to align
    got = _alignment(image, text, real, 0.2)
    labels = (~real[0]).float()
    torch.testing.assert_close(got[0], alignment_loss(image[0], text[0], labels, 0.2))
    assert float(got[1]) == 0.0


def learnable(n: int) -> tuple[EncodedFeatures, np.ndarray, np.ndarray]:
    """Two labellings of the same posts: one from the picture, one from the caption."""
    x = features(n, seed=3)
    x.image[:, 0] *= 8  # one strong direction per modality
    x.text[:, 0] *= 8
    by_image = (x.image[:, 0] > 0).numpy().astype(int)
    by_text = (x.text[:, 0] > 0).numpy().astype(int)
    return x, by_image, by_text


def test_heads_in_one_stack_learn_their_own_jobs_and_stop_on_their_own() -> None:
    """Two heads on disjoint rows with different rules: each learns its rule (no cross-talk),
    early-stops on its own validation loss and ends with its best epoch's weights."""
    x, by_image, by_text = learnable(1200)
    labels = np.concatenate([by_image[:600], by_text[600:]])
    jobs = [job(range(0, 500), range(500, 600)), job(range(600, 1100), range(1100, 1200))]
    models = heads(ModelConfig(), 2)
    options = TrainOptions(patience=3, align_weight=0.0)
    histories = fit_heads(models, x, labels, jobs, epochs=40, options=options)
    for model, history, j in zip(models, histories, jobs, strict=True):
        val = x.subset(j.val)
        y_val = torch.as_tensor(labels[j.val], dtype=torch.float32)
        figures = validate(model, (val.image, val.text), y_val, torch.ones(len(j.val)))
        assert figures["val_auc"] > 0.9
        best = min(h["val_loss"] for h in history)
        assert figures["val_loss"] == pytest.approx(best, rel=1e-4)
        assert len(history) < 40  # stopped early
    # the image-rule head fits none of the caption rule's posts, and the other way round
    off = x.subset(range(1100, 1200))
    with torch.no_grad():
        p = torch.sigmoid(models[0].head_forward(off.image, off.text)).numpy()
    assert np.mean((p > 0.5) == by_text[1100:]) < 0.75


def test_a_stack_of_one_fits_as_well_as_the_one_step_loop() -> None:
    """``fit_head`` (a stack of one) and the former loop reach the same validation loss."""
    x, labels, _ = learnable(900)
    y = torch.as_tensor(labels, dtype=torch.float32)
    train, val = x.subset(range(800)), x.subset(range(800, 900))
    options = TrainOptions(patience=5)
    losses = []
    for fitter in (fit_head, fit_head_looped):
        (model,) = heads(ModelConfig(), 1)
        history = fitter(
            model, train, y[:800], val, y[800:], epochs=25, options=options, seed=0,
            w_train=torch.ones(800), w_val=torch.ones(100),
        )  # fmt: skip
        losses.append(min(h["val_loss"] for h in history))
    assert losses[0] == pytest.approx(losses[1], abs=0.05)
    assert max(losses) < 0.35


def test_a_head_fitted_in_a_stack_is_the_head_fitted_alone() -> None:
    """With dropout off nothing random is shared: a head's weights after fitting beside a head
    with another part size (other steps per epoch, schedule and early stop) are the weights
    it gets alone, to float rounding."""
    x, by_image, _ = learnable(700)
    config = ModelConfig(dropout=0.0)
    jobs = [job(range(0, 300), range(300, 350), seed=1), job(range(350, 650), range(650, 700))]
    jobs[1] = HeadJob(np.arange(350, 520), jobs[1].val, np.ones(170, np.float32),
                      jobs[1].w_val, 2)  # fmt: skip
    options = TrainOptions(patience=2)
    together = heads(config, 2)
    fit_heads(together, x, by_image, jobs, epochs=6, options=options)
    (alone,) = heads(config, 1)
    fit_heads([alone], x, by_image, jobs[:1], epochs=6, options=options)
    for name, tensor in alone.head_state_dict().items():
        torch.testing.assert_close(together[0].head_state_dict()[name], tensor,
                                   rtol=1e-4, atol=1e-5)  # fmt: skip
