"""Webhook subscriptions, their delivery log and replay (admin).  ``facegrid notifier`` sends."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Response, status

from facegrid_services.notify import webhooks

from ..deps import Admin, CurrentPrincipal, DbSession
from ..schemas import (
    DeliveryOut,
    Page,
    ReplayedOut,
    WebhookCreate,
    WebhookCreated,
    WebhookOut,
    WebhookUpdate,
)
from .common import Limit, Offset

router = APIRouter(prefix="/webhooks", tags=["webhooks"], dependencies=[Admin])
SubId = Annotated[int, Path(ge=1, le=2**31 - 1, description="Subscription id")]
DeliveryId = Annotated[int, Path(ge=1, le=2**62, description="Delivery id")]


def _get(session, sub_id: int):
    try:
        return webhooks.get(session, sub_id)
    except webhooks.NotFound as e:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(e)) from None


def _out(session, sub) -> WebhookOut:
    return WebhookOut(id=sub.id, name=sub.name, url=sub.url, events=list(sub.events),
                      include_names=sub.include_names, active=sub.active,
                      created_at=sub.created_at, created_by=sub.created_by,
                      consecutive_failures=sub.consecutive_failures,
                      paused_until=sub.paused_until,
                      deliveries=webhooks.counts(session, [sub.id])[sub.id])


@router.get("", response_model=Page[WebhookOut], summary="Webhook subscriptions (no secrets)")
def list_webhooks(session: DbSession, limit: Limit = 100,
                  offset: Offset = 0) -> Page[WebhookOut]:
    rows = webhooks.list_subscriptions(session, limit=limit, offset=offset)
    return Page[WebhookOut](items=[_out(session, s) for s in rows], limit=limit, offset=offset,
                            total=webhooks.count_subscriptions(session))


@router.post("", response_model=WebhookCreated, status_code=status.HTTP_201_CREATED,
             responses={409: {"description": "the name is taken"}},
             summary="Subscribe a URL to events; the signing secret is shown only here")
def create_webhook(body: WebhookCreate, session: DbSession,
                   principal: CurrentPrincipal) -> WebhookCreated:
    try:
        sub = webhooks.create_subscription(session, name=body.name, url=body.url,
                                           events=body.events,
                                           include_names=body.include_names,
                                           created_by=principal.name)
    except webhooks.SubscriptionConflict as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from None
    except ValueError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e)) from None
    return WebhookCreated(**_out(session, sub).model_dump(), secret=sub.secret)


@router.get("/{subscription_id}", response_model=WebhookOut)
def get_webhook(subscription_id: SubId, session: DbSession) -> WebhookOut:
    return _out(session, _get(session, subscription_id))


@router.patch("/{subscription_id}", response_model=WebhookOut,
              summary="Change URL, events or privacy; pause (active=false) or resume")
def update_webhook(subscription_id: SubId, body: WebhookUpdate,
                   session: DbSession) -> WebhookOut:
    sub = _get(session, subscription_id)
    try:
        webhooks.update_subscription(session, sub, url=body.url, events=body.events,
                                     include_names=body.include_names, active=body.active)
    except ValueError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(e)) from None
    return _out(session, sub)


@router.delete("/{subscription_id}", status_code=status.HTTP_204_NO_CONTENT,
               summary="Delete a subscription and its delivery log")
def delete_webhook(subscription_id: SubId, session: DbSession) -> Response:
    webhooks.delete_subscription(session, _get(session, subscription_id))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{subscription_id}/deliveries", response_model=Page[DeliveryOut],
            summary="The delivery log, newest first (status=dead: the dead letters)")
def list_deliveries(subscription_id: SubId, session: DbSession, limit: Limit = 100,
                    offset: Offset = 0,
                    status_: Annotated[Literal["pending", "delivered", "dead"] | None,
                                       Query(alias="status")] = None) -> Page[DeliveryOut]:
    _get(session, subscription_id)
    rows, total = webhooks.list_deliveries(session, subscription_id, status=status_,
                                           limit=limit, offset=offset)
    return Page[DeliveryOut](items=[DeliveryOut.model_validate(r, from_attributes=True)
                                    for r in rows], total=total, limit=limit, offset=offset)


@router.post("/{subscription_id}/deliveries/{delivery_id}/replay", response_model=ReplayedOut,
             summary="Send one delivery again (any status), attempts from zero")
def replay_delivery(subscription_id: SubId, delivery_id: DeliveryId,
                    session: DbSession) -> ReplayedOut:
    sub = _get(session, subscription_id)
    n = webhooks.replay(session, sub, [delivery_id])
    if not n:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"subscription {subscription_id} has no delivery {delivery_id}")
    return ReplayedOut(replayed=n)


@router.post("/{subscription_id}/replay", response_model=ReplayedOut,
             summary="Send every dead letter of the subscription again")
def replay_dead(subscription_id: SubId, session: DbSession) -> ReplayedOut:
    return ReplayedOut(replayed=webhooks.replay(session, _get(session, subscription_id)))
