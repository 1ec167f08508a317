"""The event stream's backlog and the dead-letter queue (view, replay, delete)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, status

from .. import metrics, streams
from ..deps import Admin, Ctx, Operator
from ..schemas import DeadLetterOut, Page, ReplayOut, StreamInfo
from .common import Limit, Offset

router = APIRouter(tags=["stream"])



def _entry_id(entry_id: str) -> str:
    try:
        return streams.check_entry_id(entry_id)
    except ValueError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e)) from None


def valid_entry_id(
    entry_id: Annotated[str, Path(pattern=streams.STREAM_ID_RE.pattern, max_length=41,
                                  description="Redis stream entry id, e.g. 1732486490123-0")],
) -> str:
    return _entry_id(entry_id)


EntryId = Annotated[str, Depends(valid_entry_id)]


@router.get("/stream", response_model=StreamInfo, dependencies=[Operator],
            summary="Backlog of the events stream: length, pending, lag per group")
def stream_info(ctx: Ctx) -> StreamInfo:
    return streams.stream_info(ctx.redis)


@router.get("/dead-letters", response_model=Page[DeadLetterOut], dependencies=[Operator],
            summary="Dead letters, newest first (no token or embedding is shown)")
def dead_letters(ctx: Ctx, limit: Limit = 100, offset: Offset = 0) -> Page[DeadLetterOut]:
    items, total = streams.list_dead_letters(ctx.redis, limit=limit, offset=offset)
    return Page[DeadLetterOut](items=items, total=total, limit=limit, offset=offset)


@router.get("/dead-letters/{entry_id}", response_model=DeadLetterOut,
            dependencies=[Operator])
def dead_letter(entry_id: EntryId, ctx: Ctx) -> DeadLetterOut:
    try:
        return streams.get_dead_letter(ctx.redis, entry_id)
    except streams.DeadLetterNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"no dead letter {entry_id}") from None


@router.post("/dead-letters/{entry_id}/replay", response_model=ReplayOut, dependencies=[Admin],
             responses={409: {"description": "the dead letter cannot be replayed as it is"}},
             summary="Put a dead letter's original event back on the stream, after a fix")
def replay(entry_id: EntryId, ctx: Ctx) -> ReplayOut:
    try:
        new_id = streams.replay_dead_letter(ctx.redis, entry_id)
    except streams.DeadLetterNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"no dead letter {entry_id}") from None
    except ValueError as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from None
    metrics.DEAD_LETTERS_REPLAYED.inc()
    return ReplayOut(dead_letter_id=entry_id, new_id=new_id, action="replayed")


@router.delete("/dead-letters/{entry_id}", response_model=ReplayOut, dependencies=[Admin],
               summary="Discard a dead letter")
def discard(entry_id: EntryId, ctx: Ctx) -> ReplayOut:
    try:
        streams.delete_dead_letter(ctx.redis, entry_id)
    except streams.DeadLetterNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"no dead letter {entry_id}") from None
    return ReplayOut(dead_letter_id=entry_id, new_id=None, action="deleted")
