"""A character n-gram model of the text: the candidate that reads style, not topic.

Word-level and sentence-embedding models of tweets learn an event's vocabulary ("#sandy",
"MH370"): within an event they look strong, on a new event they can be worse than a coin.
Character n-grams (inside word boundaries) also see spelling, punctuation, emoji, "RT @",
URL shapes and casing habits, which carry further across events; measured on the MediaEval
dev events they often beat the fusion model on unseen events (README, "Verdicts on new
events"). They are one of the candidates the gate chooses among on topic-disjoint folds.

The vocabulary is hashed (scikit-learn's ``HashingVectorizer``): no vocabulary to store, so the
whole model is three arrays — inverse document frequencies, coefficients, intercept — saved
as safetensors beside a JSON config like every fnd model (never pickle). Probabilities are
those of a class-balanced logistic regression: 0.5 is the balanced-prior decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

KIND = "char_ngram"


@dataclass(frozen=True)
class NgramConfig:
    """How texts become features and how strongly the regression is regularised."""

    analyzer: str = "char_wb"
    ngram_min: int = 2
    ngram_max: int = 5
    n_features: int = 2**18
    lowercase: bool = True
    c: float = 1.0
    kind: str = KIND

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> NgramConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown char n-gram settings: {', '.join(unknown)}")
        config = cls(**data)  # type: ignore[arg-type]
        if config.kind != KIND or config.analyzer not in ("char", "char_wb"):
            raise ValueError(f"not a char n-gram config: {data}")
        if not 1 <= config.ngram_min <= config.ngram_max <= 8:
            raise ValueError(f"n-gram range must satisfy 1 <= min <= max <= 8, got {data}")
        if not 2**10 <= config.n_features <= 2**22:
            raise ValueError(f"n_features must be within [2**10, 2**22], got {config.n_features}")
        return config


class CharNgramModel:
    """Hashed char n-grams -> sublinear TF-IDF -> L2 -> logistic regression -> P(fake)."""

    def __init__(
        self, config: NgramConfig, idf: np.ndarray, coef: np.ndarray, intercept: float
    ) -> None:
        if idf.shape != (config.n_features,) or coef.shape != (config.n_features,):
            raise ValueError(
                f"char n-gram arrays must have {config.n_features} entries, "
                f"got idf {idf.shape}, coef {coef.shape}"
            )
        self.config = config
        self.idf = idf.astype(np.float64)
        self.coef = coef.astype(np.float64)
        self.intercept = float(intercept)

    @classmethod
    def fit(
        cls,
        texts: Sequence[str],
        y: np.ndarray,
        sample_weight: np.ndarray | None = None,
        config: NgramConfig | None = None,
        *,
        counts: Any = None,
    ) -> CharNgramModel:
        """Fit on ``texts``; ``sample_weight`` as the gate's weights (stories, classes).

        ``counts``: :func:`ngram_counts` of ``texts`` when the caller has them (the folds of
        cross-validation reuse one hashing of every post).
        """
        from sklearn.feature_extraction.text import TfidfTransformer
        from sklearn.linear_model import LogisticRegression

        config = config or NgramConfig()
        counts = ngram_counts(texts, config) if counts is None else counts
        tfidf = TfidfTransformer(sublinear_tf=True).fit(counts)
        regression = LogisticRegression(C=config.c, max_iter=3000)
        regression.fit(
            tfidf.transform(counts), np.asarray(y, dtype=int), sample_weight=sample_weight
        )
        return cls(config, tfidf.idf_, regression.coef_[0], float(regression.intercept_[0]))

    def tfidf(self, texts: Sequence[str], *, counts: Any = None) -> Any:
        """The unit TF-IDF rows the regression reads (a CSR matrix)."""
        from sklearn.preprocessing import normalize

        counts = ngram_counts(texts, self.config) if counts is None else counts.copy()
        counts.data = np.log(counts.data) + 1.0  # sublinear term frequency, as TfidfTransformer
        return normalize(counts.multiply(self.idf).tocsr())

    def decision_function(self, texts: Sequence[str], *, counts: Any = None) -> np.ndarray:
        features = self.tfidf(texts, counts=counts)
        return np.asarray(features @ self.coef).ravel() + self.intercept

    def predict_proba(self, texts: Sequence[str], *, counts: Any = None) -> np.ndarray:
        """P(fake) of each text (float64)."""
        return self.probability(self.tfidf(texts, counts=counts))

    def probability(self, tfidf: Any) -> np.ndarray:
        """P(fake) of rows already through :meth:`tfidf` (float64)."""
        z = np.asarray(tfidf @ self.coef).ravel() + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))

    def arrays(self) -> dict[str, np.ndarray]:
        """What the artifact stores (float32: the LR's precision is far coarser)."""
        return {
            "idf": self.idf.astype(np.float32),
            "coef": self.coef.astype(np.float32),
            "intercept": np.array([self.intercept], dtype=np.float32),
        }

    @classmethod
    def from_arrays(cls, config: NgramConfig, arrays: dict[str, np.ndarray]) -> CharNgramModel:
        missing = {"idf", "coef", "intercept"} - set(arrays)
        if missing:
            raise ValueError(f"char n-gram weights lack {', '.join(sorted(missing))}")
        return cls(config, arrays["idf"], arrays["coef"], float(arrays["intercept"][0]))


def ngram_counts(texts: Sequence[str], config: NgramConfig) -> Any:
    """Hashed n-gram counts of ``texts`` (a CSR matrix, float64): stateless, so any subset
    of rows equals the counts of that subset of texts."""
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(
        analyzer=config.analyzer,
        ngram_range=(config.ngram_min, config.ngram_max),
        n_features=config.n_features,
        lowercase=config.lowercase,
        alternate_sign=False,
        norm=None,
        dtype=np.float64,
    ).transform(list(texts))
