"""The root of facegrid's own exceptions, and the one ``(reason, detail)`` error.

Every exception class facegrid defines derives from :class:`FacegridError`
(keeping a builtin base such as ``ValueError`` where callers catch that).
Refusals that are counted or stored — a wire entry, a node token, a worker
check, a CameraNode spec — derive from :class:`ReasonError`: ``reason`` is a
bounded code (a metric label, a dead-letter reason, a condition reason) and
``detail`` says in words what exactly was wrong.
"""

from __future__ import annotations


class FacegridError(Exception):
    """Root of every exception facegrid raises on purpose."""


class ReasonError(FacegridError):
    """A refusal with a bounded ``reason`` code and a human ``detail``.

    ``str(error)`` is ``"<reason>: <detail>"`` (a ``StrEnum`` reason formats as its value).
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
