"""At most one retraining or model search at a time: one lease row in Postgres.

Two training runs at once (a nightly ``fnd_retrain`` while an ``fnd_sweep`` is fitting, two
``fnd train`` in two shells) would halve each other's cores and gate against a champion that
moves under them. An Airflow pool cannot say "one *run*" across DAGs (a sweep's candidates run
as many task instances at once), and ``max_active_runs`` holds within one DAG only, so the rule
lives where every runner meets: the database.

A run claims the lease before it snapshots and releases it when it ends; every training step
renews it. The lease expires ``ttl`` after the last renewal: a holder that died without
releasing it (a killed worker, a lost scheduler) is taken for dead then, and the next claim
takes it over and records whom from. A step whose lease was taken over fails rather than train
beside the new holder. Expiry reads the database's clock, so hosts' clocks do not matter. An
``fnd`` CLI command killed on this host (its process gone) is taken over at once.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

_COLUMNS = "holder, acquired_at, renewed_at, expires_at, taken_over_from"

# The holder keeps its acquired_at and taken_over_from when it claims again (a retried task).
_CLAIM = sa.text(f"""
    insert into fnd.training_lease as l (name, holder, expires_at)
    values ('training', :holder, now() + make_interval(secs => :ttl))
    on conflict (name) do update set
        holder = excluded.holder,
        acquired_at = case when l.holder = excluded.holder then l.acquired_at else now() end,
        renewed_at = now(),
        expires_at = excluded.expires_at,
        taken_over_from = case when l.holder = excluded.holder then l.taken_over_from
                               else l.holder end
    where l.holder = excluded.holder or l.expires_at <= now()
    returning {_COLUMNS}
""")
_RENEW = sa.text(f"""
    update fnd.training_lease set renewed_at = now(),
        expires_at = now() + make_interval(secs => :ttl)
    where name = 'training' and holder = :holder
    returning {_COLUMNS}
""")
_CURRENT = sa.text(f"select {_COLUMNS} from fnd.training_lease where name = 'training'")
_TAKE_OVER = sa.text(f"""
    update fnd.training_lease set holder = :holder, acquired_at = now(), renewed_at = now(),
        expires_at = now() + make_interval(secs => :ttl), taken_over_from = holder
    where name = 'training' and holder = :dead
    returning {_COLUMNS}
""")


@dataclass(frozen=True)
class Lease:
    """Who trains now, since when, and until when it is theirs without a renewal."""

    holder: str
    acquired_at: datetime
    renewed_at: datetime
    expires_at: datetime
    taken_over_from: str | None

    def describe(self) -> str:
        return (
            f"{self.holder} (since {self.acquired_at:%Y-%m-%d %H:%M:%S %Z}, "
            f"expires {self.expires_at:%Y-%m-%d %H:%M:%S %Z} unless renewed)"
        )


class LeaseHeldError(RuntimeError):
    """Another run holds the training lease."""

    def __init__(self, lease: Lease) -> None:
        super().__init__(
            f"another training run holds the training lease: {lease.describe()}; at most one "
            "retraining or model search runs at a time. Wait for it, or, if it died, for its "
            "lease to expire (FND_TRAINING_LEASE_HOURS)"
        )
        self.lease = lease


class LeaseLostError(RuntimeError):
    """This run's lease expired and another run took it: it must not train on."""


def cli_holder(command: str) -> str:
    """The holder name of an ``fnd`` CLI command run in this process."""
    return f"cli/{command}/{socket.gethostname()}/{os.getpid()}"


def _lease(row: sa.Row | None) -> Lease | None:
    return Lease(*row) if row is not None else None


def current(engine: Engine | Connection) -> Lease | None:
    """The lease as it stands (it may have expired); ``None`` when no run holds it."""
    if isinstance(engine, sa.engine.Engine):
        with engine.begin() as conn:
            return current(conn)
    return _lease(engine.execute(_CURRENT).one_or_none())


def try_claim(engine: Engine, holder: str, ttl: timedelta) -> Lease | None:
    """Take the lease (or extend it, if ``holder`` has it already); ``None`` if another live
    run holds it. An expired holder's lease is taken over."""
    with engine.begin() as conn:
        return _lease(conn.execute(_CLAIM, {"holder": holder, "ttl": ttl.total_seconds()}).first())


def claim(engine: Engine, holder: str, ttl: timedelta) -> Lease:
    """As :func:`try_claim`; raises :class:`LeaseHeldError` naming the live holder."""
    lease = try_claim(engine, holder, ttl)
    if lease is not None:
        return lease
    held = current(engine)
    if held is None:  # released between the two statements: try once more
        return claim(engine, holder, ttl)
    if _is_dead_local_process(held.holder):
        with engine.begin() as conn:
            row = conn.execute(
                _TAKE_OVER, {"holder": holder, "ttl": ttl.total_seconds(), "dead": held.holder}
            ).first()
        return Lease(*row) if row is not None else claim(engine, holder, ttl)
    raise LeaseHeldError(held)


def _is_dead_local_process(holder: str) -> bool:
    """Whether ``holder`` is an ``fnd`` CLI command of this host whose process is gone (a
    killed ``fnd train``): its lease need not wait for expiry. Any other holder (a DAG run, a
    command on another host) is left to expiry."""
    parts = holder.split("/")
    if len(parts) != 4 or parts[0] != "cli" or parts[2] != socket.gethostname():
        return False
    try:
        os.kill(int(parts[3]), 0)
    except ProcessLookupError:
        return True
    except (ValueError, PermissionError, OverflowError):
        return False
    return False


def renew(engine: Engine, holder: str, ttl: timedelta) -> Lease:
    """Extend ``holder``'s lease by ``ttl`` from now; a training step calls it before it fits.

    Raises :class:`LeaseLostError` when ``holder`` no longer holds it (it expired and another
    run took it over): two runs must not train at once."""
    with engine.begin() as conn:
        row = conn.execute(_RENEW, {"holder": holder, "ttl": ttl.total_seconds()}).first()
        if row is None:
            now = current(conn)
            by = f"it is held by {now.describe()}" if now else "no run holds it"
            raise LeaseLostError(
                f"{holder} no longer holds the training lease ({by}): it expired "
                "(FND_TRAINING_LEASE_HOURS) and was taken over or released; not training on"
            )
        return Lease(*row)


def release(engine: Engine, holder: str) -> bool:
    """Give the lease back; ``False`` when ``holder`` did not hold it (nothing changes)."""
    with engine.begin() as conn:
        gone = conn.execute(
            sa.text("delete from fnd.training_lease where name = 'training' and holder = :h"),
            {"h": holder},
        )
        return bool(gone.rowcount)


@contextmanager
def held(engine: Engine, holder: str, ttl: timedelta) -> Iterator[Lease]:
    """Hold the lease for the ``with`` block (the CLI's training commands); released however
    the block ends. Raises :class:`LeaseHeldError` at once when another run holds it."""
    lease = claim(engine, holder, ttl)
    try:
        yield lease
    finally:
        release(engine, holder)
