"""Phase 2 of training (off by default): the encoders unfrozen and fine-tuned end to end.

Unlike phase 1 it cannot train on cached features: every epoch decodes the training images
and re-encodes the val posts. It starts from phase 1's model and keeps it unless a fine-tuned
epoch lowers the val loss.
"""

from __future__ import annotations

import copy
import logging
import time
from typing import TYPE_CHECKING, Any

from fnd_core.model.examples import PostExample
from fnd_core.model.train.heads import Optimiser, to_device, validate
from fnd_core.model.train.records import epoch_record, log_epoch

if TYPE_CHECKING:
    import torch
    from torch.utils.data import DataLoader

    from fnd_core.model.network import FakeNewsModel
    from fnd_core.model.train.recipe import TrainOptions

log = logging.getLogger(__name__)


def finetune(
    model: FakeNewsModel,
    splits: dict[str, list[PostExample]],
    options: TrainOptions,
    seed: int,
) -> list[dict[str, Any]]:
    """Phase 2: end to end with unfrozen encoders (encoders at ``finetune_lr``, head at 10x)."""
    import torch

    from fnd_core.model.features.encoding import encode_examples
    from fnd_core.model.runtime import module_device
    from fnd_core.model.train.recipe import class_weights, encode_kwargs, label_tensor

    device = module_device(model)
    model.set_encoders_trainable(True)
    train_rows = splits["train"]
    loader = _train_loader(model, train_rows, options, seed, device)
    optimiser = _optimiser(model, options, options.finetune_epochs * len(loader))
    y_train, y_val = label_tensor(train_rows), label_tensor(splits["val"])
    w_train = class_weights(y_train, options)
    weight_of_label = {int(y): float(w) for y, w in zip(y_train.tolist(), w_train, strict=True)}
    w_val = torch.tensor(class_weights(y_val, options), dtype=torch.float32).to(device)
    y_val = y_val.to(device)

    def validation() -> dict[str, float]:
        val = encode_examples(model, splits["val"], **encode_kwargs(options))
        return validate(model, to_device(val, device), y_val, w_val)

    best = (validation()["val_loss"], copy.deepcopy(model.state_dict()), False)  # phase 1's
    history = []
    for epoch in range(1, options.finetune_epochs + 1):
        tick = time.perf_counter()
        total = _epoch(model, loader, optimiser, weight_of_label, options, device)
        samples_per_s = len(train_rows) / (time.perf_counter() - tick)
        record = epoch_record(
            "finetune", epoch, total / len(train_rows), validation(), optimiser.lr,
            samples_per_s=samples_per_s,
        )  # fmt: skip
        history.append(record)
        log_epoch(record, options.finetune_epochs)
        if record["val_loss"] < best[0]:
            best = (record["val_loss"], copy.deepcopy(model.state_dict()), True)
    model.load_state_dict(best[1])
    model.encoders_finetuned = best[2]
    if not best[2]:
        log.info("fine-tuning did not lower the val loss: keeping the phase-1 model")
    model.set_encoders_trainable(False)
    return history


def _train_loader(
    model: FakeNewsModel,
    rows: list[PostExample],
    options: TrainOptions,
    seed: int,
    device: torch.device,
) -> DataLoader:
    """The training posts, decoded (and tokenised) per batch, shuffled with ``seed``."""
    from fnd_core.model.encoders.preprocess import PostDataset, make_loader
    from fnd_core.model.runtime import loader_workers
    from fnd_core.model.train.recipe import labels_of

    config = model.config
    return make_loader(
        PostDataset(
            image_uris=[ex.image_uri for ex in rows] if config.uses_image else None,
            texts=[ex.text for ex in rows] if config.uses_text else None,
            labels=labels_of(rows),
            image_size=config.image_size,
            max_pixels=options.max_pixels,
            storage_options=options.storage_options,
        ),
        batch_size=options.finetune_batch_size,
        num_workers=loader_workers(options.num_workers, device),
        tokenize=model.text_encoder.tokenize if model.text_encoder is not None else None,
        shuffle=True,
        seed=seed,
    )


def _optimiser(model: FakeNewsModel, options: TrainOptions, total_steps: int) -> Optimiser:
    """AdamW: encoders at ``finetune_lr``, the head at 10x; every parameter clipped."""
    import torch

    from fnd_core.model.train.objective import warmup_cosine

    optimizer = torch.optim.AdamW(
        [{"params": model.encoder_parameters(), "lr": options.finetune_lr},
         {"params": model.head_parameters(), "lr": options.finetune_lr * 10}],
        weight_decay=options.weight_decay,
    )  # fmt: skip
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(total_steps, options.warmup_share)
    )
    return Optimiser(list(model.parameters()), optimizer, schedule, options.grad_clip)


def _epoch(
    model: FakeNewsModel,
    loader: DataLoader,
    optimiser: Optimiser,
    weight_of_label: dict[int, float],
    options: TrainOptions,
    device: torch.device,
) -> float:
    """One pass over the training posts, encoders included; the loss summed over posts."""
    import torch

    from fnd_core.model.runtime import autocast
    from fnd_core.model.train.objective import batch_loss

    total = 0.0
    model.train()
    for batch in loader:
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with autocast(device):
            image = model.encode_images(batch["pixels"]) if "pixels" in batch else None
            text = None
            if "input_ids" in batch:
                text = model.encode_texts(batch["input_ids"], batch["attention_mask"])
            weights = torch.tensor(
                [weight_of_label[int(y)] for y in batch["label"].tolist()], device=device
            )
            loss = batch_loss(
                model, image, text, batch["label"], weights,
                align_weight=options.align_weight, align_temperature=options.align_temperature,
                modality_dropout=options.modality_dropout,
            )  # fmt: skip
        optimiser.step(loss)
        total += loss.item() * len(batch["label"])
    return total
