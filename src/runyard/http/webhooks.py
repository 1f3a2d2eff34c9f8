"""A run's webhook: where it goes, how it stands, and every attempt so far (runyard's own).

The outbox keeps a webhook after its run is gone (a thread-less cron's run is
deleted when it ends), so the answer comes from it, not from the run.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from quart import Blueprint, Response, jsonify

from ..errors import NotFound
from ..model import JSON, DeliveryState
from ..wire import iso
from .context import owner, supervisor
from .routes import Routes
from .shapes import Shape, Timestamp

webhooks = Blueprint("webhooks", __name__)
route = Routes(webhooks)


class AttemptShape(Shape):
    attempt: int
    at: Timestamp
    outcome: Literal["delivered", "rejected", "timeout", "unreachable", "error", "refused"]
    status_code: int | None = Field(description="the receiver's answer, if it gave one")
    seconds: float


class WebhookShape(Shape):
    run_id: str
    url: str
    state: DeliveryState
    created_at: Timestamp
    updated_at: Timestamp
    next_attempt_at: Timestamp | None = Field(description="null once delivered or given up")
    attempts: list[AttemptShape]


@route(
    "/threads/<thread_id>/runs/<run_id>/webhook",
    "GET",
    summary="A run's webhook and its delivery attempts (runyard)",
    answers={200: WebhookShape},
    raises=(NotFound,),
)
@route(
    "/runs/<run_id>/webhook",
    "GET",
    summary="A run's webhook and its delivery attempts (runyard)",
    defaults={"thread_id": None},
    answers={200: WebhookShape},
    raises=(NotFound,),
)
async def get(thread_id: str | None, run_id: str) -> Response:
    delivery, attempts = await supervisor().webhooks.delivery(
        run_id, thread_id=thread_id, owner=owner()
    )
    pending = delivery.state is DeliveryState.PENDING
    found: dict[str, JSON] = {
        "run_id": delivery.run_id,
        "url": delivery.url,
        "state": str(delivery.state),
        "created_at": iso(delivery.created_at),
        "updated_at": iso(delivery.updated_at),
        "next_attempt_at": iso(delivery.next_attempt_at) if pending else None,
        "attempts": [
            {
                "attempt": a.attempt,
                "at": iso(a.at),
                "outcome": a.outcome,
                "status_code": a.status_code,
                "seconds": round(a.seconds, 6),
            }
            for a in attempts
        ],
    }
    return jsonify(found)
