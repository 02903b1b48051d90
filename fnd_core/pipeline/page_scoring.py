"""One page of posts through the model, a bad post isolated instead of failing its page.

Kept apart from the shard loop (:mod:`fnd_core.pipeline.scoring`) because it decides whose
fault an error is: a post's own (an undecodable or missing image), recorded in
``fnd.scoring_errors`` and not retried, or the machine's (disk full, memory, network,
database; :func:`is_transient`), which fails the task so that Airflow retries it.
"""

from __future__ import annotations

import errno
import logging
import math
import re
from typing import TYPE_CHECKING, NamedTuple

from fnd_core.settings import Settings

if TYPE_CHECKING:
    import numpy as np

    from fnd_core.model.char_ngrams import CharNgramModel
    from fnd_core.model.examples import PostExample
    from fnd_core.model.features.cache import FeatureCache
    from fnd_core.model.network import FakeNewsModel
    from fnd_core.model.novelty import NoveltyReference

log = logging.getLogger(__name__)


class PageScores(NamedTuple):
    """A page's outcome, post by post (None where the post failed)."""

    p_fake: list[float | None]
    errors: list[tuple[str, str]]  # (post_id, error)
    novelty: list[float | None]  # percentile vs the training topics; None: no reference


def score_page(
    model: FakeNewsModel | CharNgramModel,
    page: list[PostExample],
    settings: Settings,
    cache: FeatureCache,
    novelty: NoveltyReference | None = None,
) -> PageScores:
    """P(fake) per post, its novelty against ``novelty`` (when given), and the failures.

    The whole page goes through the batched path; only if it fails (an unreadable image)
    are its posts retried one by one, to isolate the bad ones.
    """
    try:
        p, found = _predict(model, page, settings, cache, novelty)
        return PageScores([float(v) for v in p], [], _floats(found, len(page)))
    except Exception as exc:  # noqa: BLE001 - isolate below, then report every failure
        if is_transient(exc):
            raise
        log.warning("page of %d failed (%s); isolating bad posts", len(page), exc)
    out = PageScores([], [], [])
    for example in page:
        try:
            p, found = _predict(model, [example], settings, cache, novelty)
            out.p_fake.append(float(p[0]))
            out.novelty.extend(_floats(found, 1))
        except Exception as exc:  # noqa: BLE001
            if is_transient(exc):
                raise
            out.p_fake.append(None)
            out.novelty.append(None)
            out.errors.append((example.post_id, f"{type(exc).__name__}: {exc}"[:2000]))
    return out


def _floats(values: np.ndarray | None, n: int) -> list[float | None]:
    """Novelty as stored: None without a reference, or where a post's features gave no number
    (a NaN would break the column's 0-100 check, and with it the whole page's write)."""
    if values is None:
        return [None] * n
    return [float(v) if math.isfinite(v) else None for v in values]


_TRANSIENT_ERRNOS = {
    errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ENOMEM, errno.EMFILE,
    errno.ENFILE, errno.ETIMEDOUT, errno.ECONNRESET, errno.ECONNREFUSED, errno.EAGAIN,
}  # fmt: skip


# Native libraries (safetensors, Rust or C++ readers) report an OS error in their message only.
_ERRNO_CODES = "|".join(str(e) for e in sorted(_TRANSIENT_ERRNOS))
_OS_ERROR_TEXT = re.compile(
    rf"\(os error ({_ERRNO_CODES})\)|No space left on device|Disk quota exceeded"
)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is about the machine (disk full, memory, network, database), not the post.

    Those fail the task so that Airflow retries it; only errors about a post itself (its image
    undecodable or missing from the store) become permanent ``fnd.scoring_errors`` rows.
    """
    import sqlalchemy.exc

    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:  # the exception and what caused it
        seen.add(id(link))
        if isinstance(
            link, MemoryError | TimeoutError | ConnectionError | sqlalchemy.exc.DBAPIError
        ):
            return True
        if isinstance(link, OSError) and link.errno in _TRANSIENT_ERRNOS:
            return True
        if _OS_ERROR_TEXT.search(str(link)):  # an errno wrapped by a native library's own error
            return True
        link = link.__cause__ or link.__context__
    return False


def _predict(
    model: FakeNewsModel | CharNgramModel,
    examples: list[PostExample],
    settings: Settings,
    cache: FeatureCache,
    novelty: NoveltyReference | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """P(fake) of the examples, and their novelty percentiles (None without a reference):
    both from the one set of features the model reads."""
    from fnd_core.model.char_ngrams import CharNgramModel
    from fnd_core.model.features.encoding import encode_examples, encode_options
    from fnd_core.model.features.inference import head_proba

    if isinstance(model, CharNgramModel):  # reads the text only: no image is opened
        tfidf = model.tfidf([e.text for e in examples])
        p = model.probability(tfidf)
        return p, None if novelty is None else novelty.percentiles(novelty.vectors(tfidf=tfidf))

    options = encode_options(settings)
    if len(examples) == 1:
        options["num_workers"] = 0  # isolating a bad post: no worker processes for one image
    features = encode_examples(model, examples, **options, cache=cache)
    p = head_proba(model, features)
    if novelty is None:
        return p, None
    return p, novelty.percentiles(novelty.vectors(text=features.text, image=features.image))
