"""People and their enrolled embeddings; erasure (GDPR)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Response, status

from facegrid_services.store import queries
from facegrid_services.store.models import Person

from .. import people_admin
from ..deps import Admin, Ctx, DbSession, Operator, Viewer
from ..schemas import (
    EmbeddingIn,
    EmbeddingOut,
    ErasedOut,
    ModelId,
    Page,
    PersonCreate,
    PersonOut,
    PersonUpdate,
)
from .common import Limit, Offset, PersonId

router = APIRouter(prefix="/people", tags=["people"])


def _get(session, person_id: int) -> Person:
    person = session.get(Person, person_id)
    if person is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"person {person_id} does not exist")
    return person


def _out(session, person: Person) -> PersonOut:
    counts = queries.embedding_counts(session, [person.id])
    return people_admin.person_out(person, counts[person.id])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=PersonOut,
             dependencies=[Operator],
             responses={404: {"description": "no such schedule"},
                        409: {"description": "name or external_id already taken"}})
def create_person(body: PersonCreate, session: DbSession) -> PersonOut:
    try:
        person = people_admin.create_person(session, body)
    except people_admin.Conflict as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from None
    except people_admin.MissingSchedule as e:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(e)) from None
    return _out(session, person)


@router.get("", response_model=Page[PersonOut], dependencies=[Viewer])
def list_people(
    session: DbSession, limit: Limit = 100, offset: Offset = 0,
    name: Annotated[str | None, Query(max_length=200, description="Exact name")] = None,
    q: Annotated[str | None, Query(max_length=200, description="Name contains")] = None,
) -> Page[PersonOut]:
    page = queries.list_people(session, name=name, search=q, limit=limit, offset=offset)
    counts = queries.embedding_counts(session, [p.id for p in page.items])
    return Page[PersonOut](items=[people_admin.person_out(p, counts[p.id]) for p in page.items],
                           total=page.total, limit=limit, offset=offset)


@router.get("/{person_id}", response_model=PersonOut, dependencies=[Viewer])
def get_person(person_id: PersonId, session: DbSession) -> PersonOut:
    return _out(session, _get(session, person_id))


@router.patch("/{person_id}", response_model=PersonOut, dependencies=[Operator],
              responses={409: {"description": "name or external_id already taken"}})
def update_person(person_id: PersonId, body: PersonUpdate, session: DbSession,
                  ctx: Ctx) -> PersonOut:
    person = _get(session, person_id)
    try:
        people_admin.update_person(session, person, body)
    except people_admin.Conflict as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from None
    except people_admin.MissingSchedule as e:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(e)) from None
    people_admin.announce(ctx.redis, "updated", person.id)
    return _out(session, person)


@router.delete("/{person_id}", response_model=ErasedOut, dependencies=[Admin],
               summary="Erase a person completely: embeddings, sightings, attendance, dead letters")
def erase_person(person_id: PersonId, session: DbSession, ctx: Ctx) -> ErasedOut:
    person = _get(session, person_id)
    return people_admin.erase_person(session, person, ctx.redis)


@router.get("/{person_id}/embeddings", response_model=Page[EmbeddingOut],
            dependencies=[Operator],
            summary="Enrolled embeddings (metadata only, never the vectors)")
def list_embeddings(person_id: PersonId, session: DbSession,
                    model: Annotated[ModelId | None, Query()] = None,
                    limit: Limit = 100, offset: Offset = 0) -> Page[EmbeddingOut]:
    _get(session, person_id)
    page = queries.list_embeddings(session, person_id, model, limit=limit, offset=offset)
    return Page[EmbeddingOut](
        items=[EmbeddingOut(id=e.id, person_id=e.person_id, model=e.model,
                            image_hash=e.image_hash, created_at=e.created_at, created=False)
               for e in page.items], total=page.total, limit=limit, offset=offset)


@router.post("/{person_id}/embeddings", response_model=EmbeddingOut,
             dependencies=[Operator],
             status_code=status.HTTP_201_CREATED,
             responses={200: {"model": EmbeddingOut,
                              "description": "this image was already enrolled"}},
             summary="Enroll one face embedding (deduplicated by person, model, image_hash)")
def add_embedding(person_id: PersonId, body: EmbeddingIn, session: DbSession, ctx: Ctx,
                  response: Response) -> EmbeddingOut:
    person = _get(session, person_id)
    try:
        row, created = people_admin.add_embedding(session, person, body)
    except people_admin.InvalidEmbedding as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"invalid embedding: {e}") from None
    if created:
        people_admin.announce(ctx.redis, "enrolled", person.id)
    else:
        response.status_code = status.HTTP_200_OK
    return EmbeddingOut(id=row.id, person_id=row.person_id, model=row.model,
                        image_hash=row.image_hash, created_at=row.created_at, created=created)


@router.delete("/{person_id}/embeddings/{embedding_id}", dependencies=[Operator],
               status_code=status.HTTP_204_NO_CONTENT)
def delete_embedding(person_id: PersonId,
                     embedding_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
                     session: DbSession, ctx: Ctx) -> Response:
    person = _get(session, person_id)
    if not people_admin.delete_embedding(session, person, embedding_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"person {person_id} has no embedding {embedding_id}")
    people_admin.announce(ctx.redis, "embedding_deleted", person_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
