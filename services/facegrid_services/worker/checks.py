"""Checks on each stream entry: wire format, node token, embedding, model id.

:meth:`EntryChecker.check` returns the decoded :class:`facegrid.wire.Event` or
raises :class:`Rejected` with a bounded ``reason`` (a wire :class:`~facegrid.wire.Reason`,
``token_<TokenReason>`` or ``model_mismatch``) that the worker puts on the
dead-letter entry and the ``facegrid_worker_dead_lettered_total`` label.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from facegrid import wire
from facegrid.tokens import TokenError, TokenVerifier

MODEL_MISMATCH = "model_mismatch"
#: A valid entry the store refused on its own (the batch was split until it was alone).
STORE_REJECTED = "store_rejected"
#: Delivered more than ``max_deliveries`` times without being acknowledged (it may crash
#: or hang the worker): parked without being looked at again.
POISON = "poison"
#: A check raised something other than a refusal (a bug, or input nobody foresaw).
CHECK_FAILED = "check_failed"
#: A Lamport value far above the fleet's maximum (it would poison every node's clock).
LAMPORT_JUMP = "lamport_jump"


class Rejected(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class EntryChecker:
    """``model``: the gallery's model id, or None to accept any (empty, unpinned gallery)."""

    def __init__(self, verifier: TokenVerifier, model: str | None) -> None:
        self.verifier = verifier
        self.model = model

    def check(self, fields: Mapping[Any, Any], *, at: float | None = None) -> wire.Event:
        """Decode and verify one entry; ``at``: its arrival (epoch s) for token validity."""
        try:
            event = wire.decode(fields)
        except wire.WireError as e:
            raise Rejected(e.reason.value, e.detail) from None
        try:
            self.verifier.verify(event.token, node_id=event.payload.node_id, at=at)
        except TokenError as e:
            raise Rejected(f"token_{e.reason.value}", e.detail) from None
        if self.model is not None and event.payload.model != self.model:
            raise Rejected(MODEL_MISMATCH, f"event model {event.payload.model!r} is not the "
                                           f"gallery's {self.model!r}")
        return event
