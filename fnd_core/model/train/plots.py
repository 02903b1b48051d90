"""PNG figures of a training run: loss/accuracy curves, ROC curve, confusion matrix.

Each function returns PNG bytes, so callers store them anywhere (artifact folder on GCS,
a web page) without temp files. matplotlib runs on the Agg backend: no display needed.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from fnd_core.model.train.trainer import TrainResult


def _figure(width: float = 5.0, height: float = 3.6) -> Figure:
    from matplotlib.figure import Figure  # the OO API never touches pyplot's global backend

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def training_curves(history: Sequence[dict[str, Any]]) -> bytes:
    """Train/val loss and val accuracy per epoch (fine-tuning epochs continue the x axis)."""
    figure = _figure(6.0)
    loss_ax = figure.add_subplot()
    steps = np.arange(1, len(history) + 1)
    loss_ax.plot(steps, [h["train_loss"] for h in history], label="train loss")
    loss_ax.plot(steps, [h["val_loss"] for h in history], label="val loss")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss")
    acc_ax = loss_ax.twinx()
    acc_ax.plot(steps, [h["val_accuracy"] for h in history], color="tab:green", label="val acc")
    acc_ax.set_ylabel("val accuracy")
    acc_ax.set_ylim(0.0, 1.0)
    finetune = [i + 1 for i, h in enumerate(history) if h.get("phase") == "finetune"]
    if finetune:
        loss_ax.axvline(finetune[0] - 0.5, color="grey", linestyle=":", label="fine-tune")
    lines = loss_ax.get_legend_handles_labels()
    more = acc_ax.get_legend_handles_labels()
    loss_ax.legend(lines[0] + more[0], lines[1] + more[1], loc="center right", fontsize=8)
    loss_ax.set_title("training")
    return _png(figure)


def roc_curve(
    y_true: Sequence[int] | np.ndarray, p_fake: Sequence[float] | np.ndarray, *, title: str = "ROC"
) -> bytes:
    """ROC curve with its AUC; a diagonal marks chance."""
    from sklearn.metrics import roc_auc_score
    from sklearn.metrics import roc_curve as sk_roc_curve

    figure = _figure(4.2, 4.0)
    ax = figure.add_subplot()
    if len(set(np.asarray(y_true).tolist())) == 2:
        fpr, tpr, _ = sk_roc_curve(y_true, p_fake)
        ax.plot(fpr, tpr, label=f"AUC {roc_auc_score(y_true, p_fake):.3f}")
        ax.legend(loc="lower right")
    else:
        ax.text(0.5, 0.5, "one class only: ROC undefined", ha="center")
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("false positive rate (real called fake)")
    ax.set_ylabel("true positive rate (fake caught)")
    ax.set_title(title)
    return _png(figure)


def confusion_matrix(matrix: Sequence[Sequence[int]], *, title: str = "confusion") -> bytes:
    """2x2 counts: rows truth, columns prediction (real, fake)."""
    counts = np.asarray(matrix)
    figure = _figure(3.8, 3.4)
    ax = figure.add_subplot()
    ax.imshow(counts, cmap="Blues")
    for (row, col), value in np.ndenumerate(counts):
        colour = "white" if value > counts.max() / 2 else "black"
        ax.text(col, row, str(value), ha="center", va="center", color=colour)
    ax.set_xticks([0, 1], ["real", "fake"])
    ax.set_yticks([0, 1], ["real", "fake"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    return _png(figure)


def training_report(result: TrainResult) -> dict[str, bytes]:
    """All figures of a run by file name, ready for ``save_model(plots=...)``."""
    # exact fits (linear heads, char n-grams) have no epochs to draw
    plots = {"training_curves.png": training_curves(result.history)} if result.history else {}
    for split in ("val", "test"):
        report = result.metrics.get(split)
        if report is None:
            continue
        scores = result.scores[split]
        plots[f"roc_{split}.png"] = roc_curve(scores.y_true, scores.p_fake, title=f"ROC ({split})")
        plots[f"confusion_{split}.png"] = confusion_matrix(
            report["confusion_matrix"], title=f"confusion ({split})"
        )
    return plots
