"""Fitting many fusion heads at once: every fold of a cross-validation in one stacked model.

A fusion head is small (about 0.56 M weights) and its inputs are cached, so fitting one at a
time spends most of each step on per-step overhead: at batch 64 the optimiser alone costs as
much as the matrix products. Cross-validation fits 15 of them (5 folds x 3 draws) on the same
features, and a nested choice 25 more per kind. Here K heads are trained in lockstep: their
weights are stacked on a leading axis, each step multiplies K batches with batched matrix
products (``torch.baddbmm``), and one AdamW update moves every head.

Each head keeps its own recipe, as :func:`fnd_core.model.train.heads.fit_head` trains one: its
own initial weights (the model handed in), batches (its part in its own order, cut into
``batch_size`` rows), loss weights, learning-rate schedule (warmup + cosine over its own
steps), gradient clipping (by its own gradient norm), epochs (validated when its own part has
been seen) and early stopping (a head that stops leaves the stack, its best epoch kept). Every
head takes one step a tick; only the dropout random stream is shared. The per-post work is done
once for all heads: the layer normalisation of the frozen features (its affine part is each
head's) and the gathering of batches.

What it does not do: the topic adversary (:mod:`fnd_core.model.train.topic_adversary`) keeps
the one-head loop (:func:`stackable`).
"""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from fnd_core.model.features.encoding import EncodedFeatures
    from fnd_core.model.network import FakeNewsModel
    from fnd_core.model.train.recipe import TrainOptions

log = logging.getLogger(__name__)

# intra-op threads of a stack: 15 heads' products are large enough to share (2 cores: 35.2 s
# with 1 thread, 23.6 s with 2 for the same fit); one head's are not (runtime.cpu_threads)
STACK_THREADS = 2


@dataclass(frozen=True)
class HeadJob:
    """One head of a stack: rows (into the shared features) to train on and to early-stop on,
    each with its per-post loss weights, and the seed of its batch order."""

    train: np.ndarray
    val: np.ndarray
    w_train: np.ndarray
    w_val: np.ndarray
    seed: int


def stackable(options: TrainOptions) -> bool:
    """Whether :func:`fit_heads` implements ``options`` (everything but a topic adversary)."""
    return not options.topic_adversary


def fit_heads(
    models: list[FakeNewsModel],
    features: EncodedFeatures,
    labels: np.ndarray,
    jobs: list[HeadJob],
    *,
    epochs: int,
    options: TrainOptions,
    seed: int = 0,
) -> list[list[dict[str, Any]]]:
    """Train each model's fusion head on its job, all at once; each model ends with the head of
    its best epoch. Returns each head's epoch records (``samples_per_s``: the whole stack's).

    ``models`` are freshly built (seeded) models sharing frozen encoders; ``labels`` and
    ``features`` are indexed by the jobs' rows. ``seed`` seeds the shared dropout stream.
    """
    import torch

    from fnd_core.model.runtime import cpu_threads, module_device

    if len(models) != len(jobs) or not jobs:
        raise ValueError(f"one job per model: {len(models)} models, {len(jobs)} jobs")
    if not stackable(options):
        raise ValueError("a topic adversary is fitted one head at a time (heads.fit_head)")
    configs = {m.config for m in models}
    if len(configs) != 1 or models[0].config.head != "mlp":
        raise ValueError("a stack fits fusion (mlp) heads of one architecture")
    device = module_device(models[0])
    torch.manual_seed(seed)
    with cpu_threads(STACK_THREADS if len(jobs) > 1 else 1, device):
        stack = _Stack(models, features, labels, jobs, options, device)
        return stack.fit(epochs)


class _Stack:
    """K heads' weights stacked on a leading axis, their optimiser, and their jobs."""

    def __init__(
        self,
        models: list[FakeNewsModel],
        features: EncodedFeatures,
        labels: np.ndarray,
        jobs: list[HeadJob],
        options: TrainOptions,
        device: torch.device,
    ) -> None:
        import torch
        import torch.nn.functional as F

        self.models, self.jobs, self.options, self.device = models, jobs, options, device
        config = models[0].config
        self.config = config
        self.weights = {
            name: torch.stack([m.head_state_dict()[name] for m in models])
            .clone()
            .requires_grad_(True)
            for name in models[0].head_state_dict()
        }
        # the per-post half of each projection's layer norm, done once for every head
        self.inputs: dict[str, torch.Tensor | None] = {}
        for modality, used, values in (
            ("image", config.uses_image, features.image),
            ("text", config.uses_text, features.text),
        ):
            if not used:
                self.inputs[modality] = None
                continue
            if values is None:
                raise ValueError(f"{modality} features are required: the heads use {modality}s")
            norm = getattr(models[0], f"{modality}_proj")[0]
            self.inputs[modality] = F.layer_norm(
                values.float().to(device), norm.normalized_shape, eps=norm.eps
            )
        self.y = torch.as_tensor(np.asarray(labels), dtype=torch.float32, device=device)
        self.active = list(range(len(jobs)))  # job index of each position in the stack
        self.generators = [torch.Generator().manual_seed(j.seed) for j in jobs]
        self.optimizer = self._optimizer()

    def _optimizer(self, state: dict[str, dict[str, Any]] | None = None) -> torch.optim.AdamW:
        import torch

        optimizer = torch.optim.AdamW(
            list(self.weights.values()),
            lr=self.options.lr,
            weight_decay=self.options.weight_decay,
            fused=True,
        )
        for name, kept in (state or {}).items():
            optimizer.state[self.weights[name]] = kept
        return optimizer

    # the loop ----------------------------------------------------------------------------
    def fit(self, epochs: int) -> list[list[dict[str, Any]]]:
        """Every fitting head takes one step a tick; a head's epoch ends after its own steps
        (its part cut into batches of ``batch_size``, the last one shorter, as one head alone
        would be), then it is validated, and leaves the stack when it stops."""
        from fnd_core.model.train.objective import warmup_cosine

        size = self.options.batch_size
        steps = [math.ceil(len(j.train) / size) for j in self.jobs]
        factors = [warmup_cosine(epochs * n, self.options.warmup_share) for n in steps]
        heads = [_HeadProgress(math.inf, self._head_state(j)) for j in range(len(self.jobs))]
        tick, seen, started = 0, 0, time.perf_counter()
        while self.active:
            for j in self.active:
                if heads[j].cursor == 0:
                    heads[j].start_epoch(self._batches(j, steps[j]), seen, time.perf_counter())
            rows, weights = self._tick_batches(heads)
            lrs = [self.options.lr * factors[j](tick) for j in self.active]
            losses = self._step(rows, weights, lrs)
            seen += int((weights > 0).sum())
            tick += 1
            finished = []
            for position, j in enumerate(self.active):
                head = heads[j]
                head.train_loss += float(losses[position])
                head.cursor += 1
                if head.cursor < steps[j]:
                    continue
                rate = (seen - head.seen) / (time.perf_counter() - head.since)
                record = _record(len(head.history) + 1, head.train_loss / len(self.jobs[j].train),
                                 self._validate(position, j), lrs[position], rate)  # fmt: skip
                if head.end_epoch(record, self._head_state, j, self.options.patience, epochs):
                    finished.append(j)
            if tick % max(steps) == 0 or finished:
                self._log_progress(heads, epochs, seen / (time.perf_counter() - started))
            if finished:
                self._drop(finished)
        for model, head in zip(self.models, heads, strict=True):
            model.load_state_dict(head.best_state, strict=False)
            model.eval()
        return [head.history for head in heads]

    def _log_progress(self, heads: list[_HeadProgress], epochs: int, rate: float) -> None:
        done = [len(heads[j].history) for j in self.active] or [epochs]
        log.info(
            "stacked heads: %d of %d fitting, epochs %d-%d of %d, %.0f sample-epochs/s",
            len(self.active), len(heads), min(done), max(done), epochs, rate,
        )  # fmt: skip

    def _batches(self, j: int, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Head ``j``'s next epoch: its rows in a fresh order cut into ``steps`` batches of
        ``batch_size`` (rows, loss weights), each (steps, batch_size); padding weighs 0."""
        import torch

        job, size = self.jobs[j], self.options.batch_size
        n = len(job.train)
        order = torch.randperm(n, generator=self.generators[j])
        rows = torch.zeros(steps * size, dtype=torch.long)
        weights = torch.zeros(steps * size)
        rows[:n] = torch.as_tensor(job.train)[order]
        weights[:n] = torch.as_tensor(job.w_train, dtype=torch.float32)[order]
        return rows.view(steps, size), weights.view(steps, size)

    def _tick_batches(self, heads: list[_HeadProgress]) -> tuple[torch.Tensor, torch.Tensor]:
        """(K, batch_size) rows and loss weights: each fitting head's current batch."""
        import torch

        current = [heads[j].current() for j in self.active]
        rows = torch.stack([r for r, _ in current]).to(self.device)
        return rows, torch.stack([w for _, w in current]).to(self.device)

    def _step(self, rows: torch.Tensor, weights: torch.Tensor, lrs: list[float]) -> np.ndarray:
        """One AdamW step of every head on its batch, at its own learning rate; each head's
        loss x its batch size."""
        import torch

        losses = self._loss(rows, weights, training=True)
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()  # heads share no weight: each gets its own loss's gradient
        grads = [w.grad for w in self.weights.values() if w.grad is not None]
        norms = torch.linalg.vector_norm(
            torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads]), dim=0
        )
        scale = (self.options.grad_clip / (norms + 1e-6)).clamp(max=1.0)
        for g in grads:  # clip_grad_norm_, per head
            g.mul_(scale.view(-1, *([1] * (g.dim() - 1))))
        self._adamw(lrs)
        counts = (weights > 0).sum(1).float()
        return (losses.detach() * counts).cpu().numpy()

    def _adamw(self, lrs: list[float]) -> None:
        """torch's fused AdamW at the largest rate, each head's move then scaled to its own
        rate: AdamW's move (decay included) is proportional to its rate, so this is AdamW at
        each head's rate, the moments updated as usual."""
        import torch

        top = max(lrs)
        if top <= 0 or min(lrs) == top:
            for group in self.optimizer.param_groups:
                group["lr"] = top
            self.optimizer.step()
            return
        before = [w.detach().clone() for w in self.weights.values()]
        for group in self.optimizer.param_groups:
            group["lr"] = top
        self.optimizer.step()
        share = torch.tensor([lr / top for lr in lrs], device=self.device)
        with torch.no_grad():
            for old, w in zip(before, self.weights.values(), strict=True):
                w.copy_(old.lerp_(w, share.view(-1, *([1] * (w.dim() - 1)))))

    # the heads, stacked ------------------------------------------------------------------
    def _loss(self, rows: torch.Tensor, weights: torch.Tensor, *, training: bool) -> torch.Tensor:
        """(K,) each head's weighted loss on its rows, as :func:`objective.batch_loss` has it."""
        import torch
        import torch.nn.functional as F

        image, text = self._project(rows, training=training)
        fused_image, fused_text = image, text
        dropout = self.options.modality_dropout
        if training and dropout > 0 and image is not None and text is not None:
            drop = torch.rand(rows.shape, device=rows.device)
            fused_image = image * (drop >= dropout / 2).unsqueeze(-1).to(image.dtype)
            keep_text = (drop < dropout / 2) | (drop >= dropout)
            fused_text = text * keep_text.unsqueeze(-1).to(text.dtype)
        logits = self._fuse(fused_image, fused_text, training=training)
        y = self.y[rows]
        bce = F.binary_cross_entropy_with_logits(logits.float(), y, reduction="none")
        losses = (bce * weights).sum(1) / weights.sum(1).clamp_min(1e-12)  # objective.weighted_bce
        if self.options.align_weight > 0 and image is not None and text is not None:
            real = (y < 0.5) & (weights > 0)
            losses = losses + self.options.align_weight * _alignment(
                image, text, real, self.options.align_temperature
            )
        return losses

    def _project(
        self, rows: torch.Tensor, *, training: bool, weights: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        w = self.weights if weights is None else weights
        out: list[torch.Tensor | None] = []
        for modality in ("image", "text"):
            inputs = self.inputs[modality]
            if inputs is None:
                out.append(None)
                continue
            p = f"{modality}_proj"
            x = inputs[rows] * w[f"{p}.0.weight"].unsqueeze(1) + w[f"{p}.0.bias"].unsqueeze(1)
            x = _dropout(x, self.config.dropout, training)
            out.append(_linear(x, w[f"{p}.2.weight"], w[f"{p}.2.bias"]))
        return out[0], out[1]

    def _fuse(
        self,
        image: torch.Tensor | None,
        text: torch.Tensor | None,
        *,
        training: bool,
        weights: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """(K, B) logits, as :meth:`FakeNewsModel.fuse` computes each head's."""
        import torch
        import torch.nn.functional as F

        w = self.weights if weights is None else weights
        parts = [p for p in (image, text) if p is not None]
        if self.config.fusion == "interaction":
            i, t = parts
            parts = [i, t, i * t, (i - t).abs()]
        x = _linear(torch.cat(parts, dim=-1), w["classifier.0.weight"], w["classifier.0.bias"])
        x = _dropout(F.gelu(x), self.config.dropout, training)
        return _linear(x, w["classifier.3.weight"], w["classifier.3.bias"]).squeeze(-1)

    def logits(self, rows: torch.Tensor, positions: list[int] | None = None) -> torch.Tensor:
        """(K, B) eval-mode logits of the heads at ``positions`` (all) on their ``rows``."""
        import torch

        weights = self.weights
        if positions is not None:
            weights = {n: w[positions] for n, w in weights.items()}
        with torch.no_grad():
            image, text = self._project(rows, training=False, weights=weights)
            return self._fuse(image, text, training=False, weights=weights)

    def _validate(self, position: int, j: int) -> dict[str, float]:
        import torch

        from fnd_core.model.train.records import validation_figures

        job = self.jobs[j]
        rows = torch.as_tensor(job.val, device=self.device).unsqueeze(0)
        logits = self.logits(rows, [position])[0]
        w = torch.as_tensor(job.w_val, dtype=torch.float32, device=self.device)
        return validation_figures(logits, self.y[rows[0]], w)

    def _head_state(self, j: int) -> dict[str, Any]:
        position = self.active.index(j)
        return {name: w[position].detach().clone() for name, w in self.weights.items()}

    def _drop(self, jobs: list[int]) -> None:
        """Take the heads of ``jobs`` out of the stack (weights and optimiser state)."""
        import torch

        keep = [p for p, j in enumerate(self.active) if j not in jobs]
        self.active = [self.active[p] for p in keep]
        if not keep:
            return
        index = torch.as_tensor(keep, device=self.device)
        state: dict[str, dict[str, Any]] = {}
        for name, w in self.weights.items():
            old = self.optimizer.state.get(w, {})
            state[name] = {
                key: value.index_select(0, index) if value.dim() else value
                for key, value in old.items()
            }
            self.weights[name] = w.detach().index_select(0, index).requires_grad_(True)
        self.optimizer = self._optimizer(state)


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Each head's ``nn.Linear`` on its rows: (K, B, in) x (K, out, in) -> (K, B, out)."""
    return _stacked_linear_class().apply(x, weight, bias)


def _dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout with one mask for every head of the stack, (1, B, D): each head still sees a
    fresh independent mask each step, and the mask costs 1/K of K masks (measured: 7.6 ms ->
    0.5 ms a step for 15 heads' 1280-wide inputs)."""
    import torch

    if not training or p == 0:
        return x
    mask = torch.empty((1, *x.shape[1:]), device=x.device).bernoulli_(1 - p).div_(1 - p)
    return x * mask


@functools.cache
def _stacked_linear_class() -> Any:
    """The autograd function, built on first use (torch is not imported at module level)."""
    import torch

    class StackedLinear(torch.autograd.Function):
        """``baddbmm`` whose weight gradient is computed in the weight's own layout: autograd's
        (a product with a transposed operand, then a copy) took 5x as long on a CPU."""

        @staticmethod
        def forward(ctx: Any, x: Any, weight: Any, bias: Any) -> Any:
            ctx.save_for_backward(x, weight)
            return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

        @staticmethod
        def backward(ctx: Any, grad: Any) -> Any:
            x, weight = ctx.saved_tensors
            grad_x = torch.bmm(grad, weight) if ctx.needs_input_grad[0] else None
            return grad_x, torch.bmm(grad.transpose(1, 2), x), grad.sum(1)

    return StackedLinear


@dataclass
class _HeadProgress:
    """Where one head of the stack is: its epoch, batches, best epoch and history."""

    best_loss: float
    best_state: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    stale: int = 0
    cursor: int = 0  # the next batch of this epoch
    train_loss: float = 0.0
    seen: int = 0  # the stack's samples when this epoch began
    since: float = 0.0
    batches: tuple[Any, Any] | None = None

    def start_epoch(self, batches: tuple[Any, Any], seen: int, now: float) -> None:
        self.batches, self.train_loss, self.seen, self.since = batches, 0.0, seen, now

    def current(self) -> tuple[Any, Any]:
        assert self.batches is not None
        rows, weights = self.batches
        return rows[self.cursor], weights[self.cursor]

    def end_epoch(
        self, record: dict[str, Any], state: Any, j: int, patience: int, epochs: int
    ) -> bool:
        """Keep the epoch if its val loss is the best; whether the head is done."""
        self.history.append(record)
        self.cursor = 0
        if record["val_loss"] < self.best_loss - 1e-4:
            self.best_loss, self.best_state, self.stale = record["val_loss"], state(j), 0
        else:
            self.stale += 1
            if self.stale >= patience:
                log.info("head %d: early stop after epoch %d: val loss did not improve for %d",
                         j, len(self.history), self.stale)  # fmt: skip
                return True
        return len(self.history) >= epochs


def _alignment(
    image: torch.Tensor, text: torch.Tensor, real: torch.Tensor, temperature: float
) -> torch.Tensor:
    """(K,) :func:`objective.alignment_loss` of each head over the real posts of its batch
    (``real``, (K, B)): padded and fake rows and columns are masked out."""
    import torch
    import torch.nn.functional as F

    i = F.normalize(image.float(), dim=-1)
    t = F.normalize(text.float(), dim=-1)
    logits = i @ t.transpose(1, 2) / temperature
    pair = real.unsqueeze(2) & real.unsqueeze(1)
    logits = logits.masked_fill(~pair, -1e9)
    diagonal = logits.diagonal(dim1=1, dim2=2)
    by_row = torch.logsumexp(logits, dim=2) - diagonal
    by_column = torch.logsumexp(logits, dim=1) - diagonal
    n_real = real.sum(1)
    mean = ((by_row + by_column) / 2 * real).sum(1) / n_real.clamp_min(1)
    return torch.where(n_real >= 2, mean, torch.zeros_like(mean))


def _record(
    epoch: int, train_loss: float, validation: dict[str, float], lr: float, rate: float
) -> dict[str, Any]:
    from fnd_core.model.train.records import epoch_record

    return epoch_record("head", epoch, train_loss, validation, lr, samples_per_s=rate)
