"""Small inline SVG charts drawn on the server: no JavaScript, nothing loaded from elsewhere.

Each function returns one ``<svg>`` element as a string (every label escaped), sized by a
``viewBox`` so it scales with the page.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from html import escape
from typing import Any

_W, _H = 760, 260  # viewBox of every chart
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 56, 16, 40  # plot margins (axis labels live there)
_VOLUME, _FAKE = "#8fb3d9", "#d9534f"  # the share line takes the text colour (CSS)
SERIES_COLOURS = ("#2b6cb0", "#dd8a2c")


def daily_chart(days: Sequence[dict[str, Any]]) -> str:
    """Posts per day (bars, fake part in red) and the fake share (line, right axis 0-100%).

    Args:
        days: ``fnd_core.observe.monitoring_scores.daily_volume(...)["days"]``: day, n_posts,
            n_fake, fake_share (None when nothing was scored that day).
    """
    if not days:
        return _empty("no posts yet")
    top = _nice_ceiling(max(d["n_posts"] for d in days))
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    step = plot_w / len(days)
    bar_w = max(1.0, step * 0.8)
    parts = [_open("Posts per day and fake share"), *_y_axis(top, plot_h), *_share_axis(plot_h)]
    points = []
    for i, d in enumerate(days):
        x = _LEFT + i * step + (step - bar_w) / 2
        h_all = plot_h * d["n_posts"] / top
        h_fake = plot_h * d["n_fake"] / top
        share = d.get("fake_share")
        tip = f"{d['day']}: {d['n_posts']} posts, {d['n_fake']} flagged fake" + (
            f" ({share:.1%} of scored)" if share is not None else ""
        )
        parts.append(
            f"<g><title>{escape(tip)}</title>"
            f'<rect x="{x:.1f}" y="{_TOP + plot_h - h_all:.1f}" width="{bar_w:.1f}" '
            f'height="{h_all:.1f}" fill="{_VOLUME}"/>'
            f'<rect x="{x:.1f}" y="{_TOP + plot_h - h_fake:.1f}" width="{bar_w:.1f}" '
            f'height="{h_fake:.1f}" fill="{_FAKE}"/></g>'
        )
        if share is not None:
            cx, cy = x + bar_w / 2, _TOP + plot_h * (1 - share)
            points.append(f"{cx:.1f},{cy:.1f}")
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="2.5" class="share-dot"/>')
    if points:
        parts.append(f'<polyline points="{" ".join(points)}" class="share-line"/>')
    parts.extend(_x_labels([str(d["day"]) for d in days], step))
    parts.append("</svg>")
    return "".join(parts)


def histogram_chart(
    bins: Sequence[dict[str, Any]],
    series: Sequence[tuple[str, str]],
    quantity: str = "p_fake",
    digits: int = 2,
) -> str:
    """Side-by-side histograms of ``quantity``: one bar per series in each bin, as share of
    posts.

    Args:
        bins: ``[{lo, hi, <key>: count, ...}]``
            (``fnd_core.observe.monitoring_scores.score_comparison``, ``novelty_by_run``).
        series: ``(key, label)`` pairs to draw, e.g. ``[("champion", "m2024..."), ...]``.
        digits: decimals of the bin edges (ticks: one fewer).
    """
    totals = [sum(b[key] for b in bins) for key, _ in series]
    if not bins or not any(totals):
        return _empty("nothing scored yet")
    shares = [
        [b[key] / t if t else 0.0 for b in bins] for (key, _), t in zip(series, totals, strict=True)
    ]
    top = _nice_ceiling(max(max(s) for s in shares), share=True)
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    step = plot_w / len(bins)
    bar_w = step * 0.8 / len(series)
    parts = [_open(f"{quantity} histograms"), *_y_axis(top, plot_h, percent=True)]
    for s, ((_, label), values) in enumerate(zip(series, shares, strict=True)):
        colour = SERIES_COLOURS[s % len(SERIES_COLOURS)]
        for i, (b, v) in enumerate(zip(bins, values, strict=True)):
            x = _LEFT + i * step + step * 0.1 + s * bar_w
            h = plot_h * v / top
            tip = f"{label}: {quantity} {b['lo']:.{digits}f}–{b['hi']:.{digits}f}: {v:.1%}"
            parts.append(
                f'<rect x="{x:.1f}" y="{_TOP + plot_h - h:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{escape(tip)}</title></rect>'
            )
    ticks = [f"{b['lo']:.{max(digits - 1, 0)}f}" for b in bins]
    parts.extend(_x_labels(ticks, step, every=max(1, len(bins) // 10), offset=0.0))
    parts.append(
        f'<text x="{_W - _RIGHT:.0f}" y="{_H - 4}" text-anchor="end" class="axis">'
        f"{escape(quantity)}</text>"
    )
    parts.append("</svg>")
    return "".join(parts)


def drift_chart(reports: Sequence[dict[str, Any]]) -> str:
    """Domain-classifier AUC per report (image and text lines) against the flagging bar.

    Args:
        reports: ``fnd_core.observe.monitoring_scores.drift_reports(...)``, oldest first.
    """
    measured = [r for r in reports if r.get("image_auc") is not None or r.get("text_auc")]
    if not measured:
        return _empty("no drift measured yet")
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    step = plot_w / len(measured)

    y, grid = _ranged_axis(0.4, 1.0, 0.2, plot_h)
    parts = [_open("Input drift: domain classifier ROC AUC per report"), *grid]
    for (key, label), colour in zip((("image_auc", "image"), ("text_auc", "text")),
                                    SERIES_COLOURS, strict=True):  # fmt: skip
        bars = [f"{_LEFT + (i + 0.5) * step:.1f},{y(r[key + '_bar']):.1f}"
                for i, r in enumerate(measured) if r.get(key + "_bar")]  # fmt: skip
        if bars:
            parts.append(
                f'<polyline points="{" ".join(bars)}" fill="none" stroke="{colour}" '
                f'stroke-dasharray="4 3"><title>{label} flagging bar</title></polyline>'
            )
        points = []
        for i, r in enumerate(measured):
            if r.get(key) is None:
                continue
            cx, cy = _LEFT + (i + 0.5) * step, y(r[key])
            points.append(f"{cx:.1f},{cy:.1f}")
            tip = f"{r['kind']} {r['subject']}: {label} AUC {r[key]:.3f}"
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3" fill="{colour}">'
                         f"<title>{escape(tip)}</title></circle>")  # fmt: skip
        if points:
            parts.append(f'<polyline points="{" ".join(points)}" fill="none" '
                         f'stroke="{colour}"/>')  # fmt: skip
    labels = [str(r["computed_at"])[:16] for r in measured]
    parts.extend(_x_labels(labels, step))
    parts.append("</svg>")
    return "".join(parts)


def performance_chart(weeks: Sequence[dict[str, Any]], gate: float | None) -> str:
    """A version's balanced accuracy per week: estimated without labels (line), realized
    from the labels that arrived (dots, where the week holds enough of each class), and the
    gate's post-counted estimate (dashed).

    Args:
        weeks: rows of ``fnd.realized_performance`` for one version, oldest first.
        gate: the gate's estimate counted by post, or None.
    """
    if not weeks:
        return _empty("no verdicts yet")
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    step = plot_w / len(weeks)

    y, grid = _ranged_axis(0.3, 1.0, 0.1, plot_h)
    parts = [_open("Balanced accuracy per week: estimated, realized and the gate's estimate"),
             *grid]  # fmt: skip
    if gate is not None:
        parts.append(
            f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y(gate):.1f}" y2="{y(gate):.1f}" '
            f'stroke="{_FAKE}" stroke-dasharray="5 4"><title>gate estimate (by post) '
            f"{gate:.3f}</title></line>"
        )
    for (key, label), colour in zip(
        (("estimated_balanced_accuracy", "estimated"), ("balanced_accuracy", "realized")),
        SERIES_COLOURS,
        strict=True,
    ):
        points = []
        for i, w in enumerate(weeks):
            if w.get(key) is None:
                continue
            cx, cy = _LEFT + (i + 0.5) * step, y(w[key])
            points.append(f"{cx:.1f},{cy:.1f}")
            tip = f"week of {w['week']}: {label} {w[key]:.3f} ({w['n_labelled']} labelled)"
            parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="3.5" fill="{colour}">'
                         f"<title>{escape(tip)}</title></circle>")  # fmt: skip
        if len(points) > 1 and key.startswith("estimated"):
            parts.append(f'<polyline points="{" ".join(points)}" fill="none" '
                         f'stroke="{colour}"/>')  # fmt: skip
    parts.extend(_x_labels([str(w["week"]) for w in weeks], step))
    parts.append("</svg>")
    return "".join(parts)


def calibration_chart(bins: Sequence[dict[str, Any]]) -> str:
    """Observed fake share against mean p_fake per bin (dots sized by posts), and the
    diagonal a calibrated model follows.

    Args:
        bins: ``[{mean_p, fake_share, n}]`` (labelled verdicts, hindsight excluded).
    """
    if not bins:
        return _empty("no labels after the verdicts yet")
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    x0, side = _LEFT + (plot_w - plot_h) / 2, plot_h  # a square plot, centred

    def xy(p: float, share: float) -> tuple[float, float]:
        return x0 + side * p, _TOP + side * (1 - share)

    parts = [_open("Calibration: observed fake share against p_fake")]
    for k in range(5):
        v = k / 4
        gx, gy = xy(v, v)
        parts.append(
            f'<line x1="{x0:.1f}" x2="{x0 + side:.1f}" y1="{gy:.1f}" y2="{gy:.1f}" class="grid"/>'
            f'<text x="{x0 - 6:.1f}" y="{gy + 4:.1f}" text-anchor="end" class="axis">{v:.2f}</text>'
            f'<text x="{gx:.1f}" y="{_H - _BOTTOM + 16}" text-anchor="middle" class="axis">'
            f"{v:.2f}</text>"
        )
    (ax, ay), (bx, by) = xy(0, 0), xy(1, 1)
    parts.append(f'<line x1="{ax:.1f}" y1="{ay:.1f}" x2="{bx:.1f}" y2="{by:.1f}" '
                 f'stroke="{_VOLUME}" stroke-dasharray="4 3"/>')  # fmt: skip
    biggest = max(b["n"] for b in bins)
    points = []
    for b in bins:
        cx, cy = xy(b["mean_p"], b["fake_share"])
        points.append(f"{cx:.1f},{cy:.1f}")
        r = 2.5 + 5.5 * math.sqrt(b["n"] / biggest)
        tip = f"p_fake ≈ {b['mean_p']:.2f}: {b['fake_share']:.1%} fake of {b['n']} labelled"
        parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="{r:.1f}" fill="{SERIES_COLOURS[0]}">'
                     f"<title>{escape(tip)}</title></circle>")  # fmt: skip
    parts.append(f'<polyline points="{" ".join(points)}" fill="none" '
                 f'stroke="{SERIES_COLOURS[0]}"/>')  # fmt: skip
    parts.append(f'<text x="{x0 + side:.0f}" y="{_H - 4}" text-anchor="end" class="axis">'
                 "p_fake</text>")  # fmt: skip
    parts.append("</svg>")
    return "".join(parts)


def _ranged_axis(
    lo: float, hi: float, tick: float, plot_h: float
) -> tuple[Callable[[float], float], list[str]]:
    """A y axis from ``lo`` to ``hi`` (values outside are held at its ends): the value -> y
    mapping, and its grid lines with labels every ``tick``."""

    def y(value: float) -> float:
        return _TOP + plot_h * (1 - (min(max(value, lo), hi) - lo) / (hi - lo))

    grid = []
    for k in range(round((hi - lo) / tick) + 1):
        value = lo + tick * k
        grid.append(
            f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            f'class="grid"/><text x="{_LEFT - 6}" y="{y(value) + 4:.1f}" text-anchor="end" '
            f'class="axis">{value:.1f}</text>'
        )
    return y, grid


def _open(title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" role="img" '
        f'class="chart" aria-label="{escape(title)}"><title>{escape(title)}</title>'
    )


def _empty(message: str) -> str:
    return (
        f'{_open(message)}<text x="{_W / 2:.0f}" y="{_H / 2:.0f}" text-anchor="middle" '
        f'class="axis">{escape(message)}</text></svg>'
    )


def _y_axis(top: float, plot_h: float, *, percent: bool = False) -> list[str]:
    parts = []
    for k in range(5):
        value = top * k / 4
        y = _TOP + plot_h * (1 - k / 4)
        text = f"{value:.0%}" if percent else _short(value)
        parts.append(
            f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="axis">{text}</text>'
        )
    return parts


def _share_axis(plot_h: float) -> list[str]:
    return [
        f'<text x="{_W - _RIGHT + 6}" y="{_TOP + plot_h * (1 - k / 4) + 4:.1f}" '
        f'class="axis">{k * 25}%</text>'
        for k in range(5)
    ]


def _x_labels(
    labels: Sequence[str], step: float, *, every: int | None = None, offset: float = 0.5
) -> list[str]:
    every = every or max(1, math.ceil(len(labels) / 8))
    y = _H - _BOTTOM + 16
    return [
        f'<text x="{_LEFT + (i + offset) * step:.1f}" y="{y}" text-anchor="middle" '
        f'class="axis">{escape(label)}</text>'
        for i, label in enumerate(labels)
        if i % every == 0
    ]


def _nice_ceiling(value: float, *, share: bool = False) -> float:
    """A round axis top at or above ``value`` (1, 2, 2.5, 5 × a power of ten)."""
    if value <= 0:
        return 1.0
    if share:  # quarter ticks at whole percents
        return next(t for t in (0.04, 0.08, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0) if t >= value)
    power = 10 ** math.floor(math.log10(value))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= value)


def _short(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def sweep_chart(parameter: str, candidates: Sequence[dict[str, Any]], honest: float | None) -> str:
    """A sweep's estimates against one varied parameter: a dot per finished candidate (the
    winner filled), at the parameter's values in order; the winner's nested estimate dashed.

    Args:
        candidates: rows of ``fnd.sweep_candidates`` (``config``, ``estimate``, ``candidate``);
            a candidate whose kind has no such parameter sits at "n/a".
        honest: the winner's nested estimate, or None.
    """
    done = [c for c in candidates if c.get("estimate") is not None]
    if not done:
        return _empty("no candidate finished")
    ranks = {_label(c["config"].get(parameter)): _rank(c["config"].get(parameter)) for c in done}
    keys = sorted(ranks, key=lambda k: ranks[k])
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    step = plot_w / len(keys)
    lo = min(0.3, math.floor(min(c["estimate"] for c in done) * 10) / 10)
    y, grid = _ranged_axis(lo, 1.0, 0.1, plot_h)
    parts = [_open(f"Estimate against {parameter}"), *grid]
    if honest is not None:
        parts.append(
            f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{y(honest):.1f}" y2="{y(honest):.1f}" '
            f'stroke="{_FAKE}" stroke-dasharray="5 4"><title>the winner, nested '
            f"{honest:.3f}</title></line>"
        )
    best = max(done, key=lambda c: (c["estimate"], -c["candidate"]))
    for c in done:
        label = _label(c["config"].get(parameter))
        cx, cy = _LEFT + (keys.index(label) + 0.5) * step, y(c["estimate"])
        fill = SERIES_COLOURS[0] if c is best else "none"
        tip = f"candidate {c['candidate']}: {c['estimate']:.3f} ({parameter} = {label})"
        parts.append(
            f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{fill}" '
            f'stroke="{SERIES_COLOURS[0]}"><title>{escape(tip)}</title></circle>'
        )
    parts.extend(_x_labels(keys, step))
    parts.append("</svg>")
    return "".join(parts)


def _label(value: Any) -> str:
    """A parameter value as an axis label ("n/a": the candidate's kind has no such parameter)."""
    if value is None:
        return "n/a"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _rank(value: Any) -> tuple[int, float, str]:
    """Numbers in order, then words, then "n/a"."""
    if value is None:
        return (2, 0.0, "")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, _label(value))
