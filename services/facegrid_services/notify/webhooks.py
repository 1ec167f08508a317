"""Webhook subscriptions and their delivery log: fan-out, due deliveries, results, replay.

Store operations only (no network): the notifier sends, the API and CLI manage.
Each delivery is one event for one subscription with the exact body that is
signed and sent on every attempt.  A failure retries with exponential backoff
(the delivery's own, and the subscription pauses on failures in a row so a
dead receiver is not hammered); after ``max_attempts`` the delivery is a dead
letter, kept until replayed or deleted.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from facegrid.errors import FacegridError
from facegrid_services.store.models import NotifyOutbox, WebhookDelivery, WebhookSubscription

from . import signing
from .events import ALL_TYPES, dumps, render

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._@-]{0,99}$")
PENDING, DELIVERED, DEAD = "pending", "delivered", "dead"


class SubscriptionConflict(FacegridError, ValueError):
    pass


class NotFound(FacegridError, LookupError):
    pass


@dataclass(frozen=True)
class Result:
    delivery_id: int
    ok: bool
    status: int | None
    error: str = ""


@dataclass(frozen=True)
class Due:
    id: int
    event_id: str
    body: str
    created_at: datetime | None = None


def check_url(url: str) -> str:
    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValueError("a webhook URL is http(s)://host/…")
    if u.username or u.password:
        raise ValueError("put no credentials in the webhook URL: requests are signed")
    return url


def check_events(events: Iterable[str]) -> list[str]:
    events = list(dict.fromkeys(events))
    unknown = [e for e in events if e not in ALL_TYPES]
    if unknown or not events:
        raise ValueError(f"events must be a non-empty subset of {ALL_TYPES}; unknown: {unknown}")
    return events


def create_subscription(session: Session, *, name: str, url: str, events: Iterable[str],
                        include_names: bool = False, created_by: str = "",
                        secret: str | None = None) -> WebhookSubscription:
    if not NAME_RE.match(name):
        raise ValueError("a subscription name is 1–100 letters, digits, space or ._@-")
    row = WebhookSubscription(name=name, url=check_url(url), events=check_events(events),
                              include_names=include_names, created_by=created_by,
                              secret=secret or signing.new_secret())
    session.add(row)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise SubscriptionConflict(f"a subscription named {name!r} already exists") from None
    return row


def get(session: Session, ident: int | str) -> WebhookSubscription:
    row = None
    if isinstance(ident, int) or str(ident).isdigit():
        row = session.get(WebhookSubscription, int(ident))
    if row is None and isinstance(ident, str):
        row = session.scalar(select(WebhookSubscription).where(WebhookSubscription.name == ident))
    if row is None:
        raise NotFound(f"no webhook subscription {ident!r}")
    return row


def list_subscriptions(session: Session, *, active_only: bool = False, limit: int | None = None,
                       offset: int = 0) -> list[WebhookSubscription]:
    q = select(WebhookSubscription).order_by(WebhookSubscription.id)
    if active_only:
        q = q.where(WebhookSubscription.active.is_(True))
    return list(session.scalars(q.limit(limit).offset(offset)))


def count_subscriptions(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(WebhookSubscription)) or 0)


def update_subscription(session: Session, row: WebhookSubscription, *, url: str | None = None,
                        events: Iterable[str] | None = None, include_names: bool | None = None,
                        active: bool | None = None) -> WebhookSubscription:
    if url is not None:
        row.url = check_url(url)
    if events is not None:
        row.events = check_events(events)
    if include_names is not None:
        row.include_names = include_names
    if active is not None:
        row.active = active
        if active:
            row.paused_until, row.consecutive_failures = None, 0
    session.commit()
    return row


def delete_subscription(session: Session, row: WebhookSubscription) -> None:
    session.execute(delete(WebhookDelivery).where(WebhookDelivery.subscription_id == row.id))
    session.delete(row)
    session.commit()


def counts(session: Session, sub_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    out = {i: {PENDING: 0, DELIVERED: 0, DEAD: 0} for i in sub_ids}
    rows = session.execute(
        select(WebhookDelivery.subscription_id, WebhookDelivery.status, func.count())
        .where(WebhookDelivery.subscription_id.in_(sub_ids))
        .group_by(WebhookDelivery.subscription_id, WebhookDelivery.status))
    for sid, st, n in rows:
        out[sid][st] = n
    return out


def fan_out(session: Session, events: Sequence[NotifyOutbox],
            subscriptions: Sequence[WebhookSubscription], names: dict[int, str],
            now: datetime) -> int:
    """Insert one pending delivery per event and matching subscription (caller commits)."""
    rows = []
    for sub in subscriptions:
        wanted = set(sub.events)
        key = pseudonym_key(sub.secret)
        for ev in events:
            if ev.type not in wanted:
                continue
            message = render(ev.event_id, ev.type, ev.occurred_at, ev.data,
                             names=names if sub.include_names else None, pseudonym_key=key)
            rows.append({"subscription_id": sub.id, "event_id": ev.event_id, "type": ev.type,
                         "person_id": ev.person_id, "body": dumps(message),
                         "status": PENDING, "attempts": 0, "created_at": now,
                         "next_attempt_at": now, "last_error": ""})
    if rows:
        session.execute(insert(WebhookDelivery), rows)
    return len(rows)


def pseudonym_key(secret: str) -> bytes:
    """The key of a subscription's pseudonymous person ids (derived from its secret)."""
    return hashlib.sha256(b"facegrid-pseudonym:" + signing.secret_key(secret)).digest()


def due(session: Session, sub_id: int, now: datetime, limit: int,
        exclude: Iterable[int] = ()) -> list[Due]:
    """Pending deliveries due now, oldest first, except ``exclude`` (already in flight)."""
    d = WebhookDelivery
    q = (select(d.id, d.event_id, d.body, d.created_at).where(
        d.subscription_id == sub_id, d.status == PENDING, d.next_attempt_at <= now)
        .order_by(d.id).limit(limit))
    exclude = list(exclude)
    if exclude:
        q = q.where(d.id.not_in(exclude))
    return [Due(i, e, b, c) for i, e, b, c in session.execute(q)]


def backoff(n: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Delay before retry ``n`` (1 = first retry): base·2^(n−1), at most ``cap``, ±20 %."""
    delay = min(cap, base * 2 ** min(n - 1, 30))
    return delay * (rng or random).uniform(0.8, 1.2)


def record(session: Session, sub_id: int, results: Sequence[Result], now: datetime, *,
           max_attempts: int, base: float, cap: float) -> tuple[int, int, int]:
    """Store attempt outcomes; returns (delivered, failed, dead).  Commits."""
    d = WebhookDelivery
    delivered = failed = dead = 0
    ok_ids = [r.delivery_id for r in results if r.ok]
    by_status: dict[int | None, list[int]] = {}
    for r in results:
        if r.ok:
            by_status.setdefault(r.status, []).append(r.delivery_id)
    for code, ids in by_status.items():  # one UPDATE per status code (usually one)
        session.execute(update(d).where(d.id.in_(ids)).values(
            status=DELIVERED, attempts=d.attempts + 1, last_attempt_at=now,
            delivered_at=now, last_status=code, last_error=""))
    delivered = len(ok_ids)
    for r in results:
        if r.ok:
            continue
        attempts = session.scalar(select(d.attempts).where(d.id == r.delivery_id)) or 0
        attempts += 1
        give_up = attempts >= max_attempts
        session.execute(update(d).where(d.id == r.delivery_id).values(
            status=DEAD if give_up else PENDING, attempts=attempts, last_attempt_at=now,
            last_status=r.status, last_error=r.error[:300],
            next_attempt_at=now + timedelta(seconds=backoff(attempts, base, cap))))
        dead += give_up
        failed += not give_up
    sub = session.get(WebhookSubscription, sub_id)
    if sub is not None:
        if failed or dead:
            sub.consecutive_failures = (0 if ok_ids else sub.consecutive_failures) + 1
            sub.paused_until = now + timedelta(
                seconds=backoff(sub.consecutive_failures, base, cap))
        elif sub.consecutive_failures or sub.paused_until:
            # The receiver is back: the backlog that waited on its own backoff goes now.
            sub.consecutive_failures, sub.paused_until = 0, None
            session.execute(update(d).where(
                d.subscription_id == sub_id, d.status == PENDING, d.next_attempt_at > now)
                .values(next_attempt_at=now))
    session.commit()
    return delivered, failed, dead


def list_deliveries(session: Session, sub_id: int, *, status: str | None, limit: int,
                    offset: int) -> tuple[list[WebhookDelivery], int]:
    q = select(WebhookDelivery).where(WebhookDelivery.subscription_id == sub_id)
    if status is not None:
        q = q.where(WebhookDelivery.status == status)
    total = session.scalar(select(func.count()).select_from(q.subquery())) or 0
    rows = session.scalars(q.order_by(WebhookDelivery.id.desc()).limit(limit).offset(offset))
    return list(rows), total


def replay(session: Session, sub: WebhookSubscription, delivery_ids: Iterable[int] | None = None,
           *, statuses: Iterable[str] = (DEAD,)) -> int:
    """Send deliveries again from scratch (by id, or every one of ``statuses``)."""
    d = WebhookDelivery
    q = update(d).where(d.subscription_id == sub.id)
    q = q.where(d.id.in_(list(delivery_ids))) if delivery_ids is not None else \
        q.where(d.status.in_(list(statuses)))
    n = session.execute(q.values(status=PENDING, attempts=0,
                                 next_attempt_at=datetime.now(UTC))).rowcount
    sub.paused_until, sub.consecutive_failures = None, 0
    session.commit()
    return n


def purge_delivered(session: Session, older_than: datetime) -> int:
    n = session.execute(delete(WebhookDelivery).where(
        WebhookDelivery.status == DELIVERED, WebhookDelivery.delivered_at < older_than)).rowcount
    session.commit()
    return n


def erase_person(session: Session, person_id: int) -> int:
    """Erasure: the person's queued events and delivery log go too (caller commits)."""
    n = session.execute(delete(WebhookDelivery).where(
        WebhookDelivery.person_id == person_id)).rowcount
    n += session.execute(delete(NotifyOutbox).where(NotifyOutbox.person_id == person_id)).rowcount
    return n
