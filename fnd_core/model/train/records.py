"""What an epoch of head training records and logs, whoever fitted the head: one head
(:mod:`fnd_core.model.train.heads`), a stack of them
(:mod:`fnd_core.model.train.stacked_heads`) or the fine-tune."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from fnd_core.model import metrics

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def validation_figures(
    logits: torch.Tensor, y_val: torch.Tensor, w_val: torch.Tensor
) -> dict[str, float]:
    """Weighted val loss, accuracy, balanced accuracy and ROC-AUC from a head's val logits
    (:func:`~fnd_core.model.train.heads.validate`, one head of a stack)."""
    import torch

    from fnd_core.model.train.objective import weighted_bce

    logits = logits.float()
    loss = float(weighted_bce(logits, y_val, w_val))
    p = torch.sigmoid(logits).cpu().numpy()
    y = y_val.cpu().numpy()
    auc = metrics.roc_auc(y, p)
    return {
        "val_loss": loss,
        "val_accuracy": metrics.accuracy(y, metrics.predict_labels(p, 0.5)),
        "val_balanced_accuracy": metrics.balanced_accuracy(y, metrics.predict_labels(p, 0.5)),
        "val_auc": float("nan") if auc is None else auc,
    }


def epoch_record(
    phase: str,
    epoch: int,
    train_loss: float,
    validation: dict[str, float],
    lr: float,
    *,
    samples_per_s: float,
) -> dict[str, Any]:
    """One row of the training history (what the curves plot): numbers, and the phase."""
    record = {"phase": phase, "epoch": epoch, "train_loss": train_loss}
    return record | validation | {"lr": lr, "samples_per_s": samples_per_s}


def log_epoch(record: dict[str, Any], epochs: int) -> None:
    log.info(
        "%s epoch %d/%d: train loss %.4f, val loss %.4f, val acc %.3f, val auc %.3f, "
        "lr %.2e, %.0f samples/s",
        record["phase"], record["epoch"], epochs, record["train_loss"], record["val_loss"],
        record["val_accuracy"], record["val_auc"], record["lr"], record["samples_per_s"],
    )  # fmt: skip
