"""`ExceptionService`: list, inspect, acknowledge, resolve, shelve and subscribe to exceptions.

Status codes: INVALID_ARGUMENT for a bad request (page_size above 1000, a page_token not ours,
empty exception_id or actor, shelve duration 0, an unknown state or severity number);
NOT_FOUND for an unknown exception id; FAILED_PRECONDITION for a transition the exception's
state does not allow (the message says which state it is in); UNAVAILABLE when the store fails;
RESOURCE_EXHAUSTED when a subscriber fell more than `[exceptions] subscriber_queue_max` changes
behind (or too many subscribe at once).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import grpc
from grpc import aio
from tallyport.v1 import exceptions_pb2, exceptions_pb2_grpc

from cloud.errors import StoreError, ValidationError
from cloud.exceptions import store as repo
from cloud.exceptions.engine import ExceptionEngine, ExceptionNotFound
from cloud.exceptions.hub import SubscriberOverflow
from cloud.exceptions.lifecycle import LifecycleError
from cloud.exceptions.models import SEVERITIES, STATES, ExceptionChange, ExceptionRecord, Severity, State, Transition
from cloud.timestamps import from_micros

__all__ = ["PAGE_SIZE_DEFAULT", "PAGE_SIZE_MAX", "ExceptionService", "exception_message", "transition_message"]

log = logging.getLogger(__name__)

PAGE_SIZE_DEFAULT = 100
PAGE_SIZE_MAX = 1000
SNAPSHOT_MAX = 10_000  # unresolved exceptions sent at subscribe; beyond that the list is the tool
ACTOR_LENGTH_MAX = 200
REASON_LENGTH_MAX = 2000

Answer = TypeVar("Answer")
Context = aio.ServicerContext[Any, Any]

_STATE_NUMBER: dict[State, int] = {state: number for number, state in enumerate(STATES, start=1)}
_SEVERITY_NUMBER: dict[Severity, int] = {severity: number for number, severity in enumerate(SEVERITIES, start=1)}
assert exceptions_pb2.ExceptionState.Name(_STATE_NUMBER["resolved"]) == "EXCEPTION_STATE_RESOLVED"  # type: ignore[arg-type]
assert exceptions_pb2.ExceptionSeverity.Name(_SEVERITY_NUMBER["critical"]) == "EXCEPTION_SEVERITY_CRITICAL"  # type: ignore[arg-type]


def _time(micros: int | None, message: Any, name: str) -> None:
    if micros is not None:
        getattr(message, name).CopyFrom(from_micros(micros))


def exception_message(record: ExceptionRecord) -> exceptions_pb2.InventoryException:
    """An exception as the contract describes it."""
    message = exceptions_pb2.InventoryException(
        exception_id=record.exception_id,
        rule=record.rule,
        subject=record.subject,
        state=_STATE_NUMBER[record.state],  # type: ignore[arg-type]
        severity=_SEVERITY_NUMBER[record.severity],  # type: ignore[arg-type]
        priority=record.priority,
        value_at_stake=record.value_at_stake,
        quantity_at_stake=record.quantity_at_stake,
        service_weight=record.service_weight,
        gtin=record.gtin,
        location=record.location,
        details=record.details,
        owner_role=record.owner_role,
        escalation_level=record.escalation_level,
        occurrences=record.occurrences,
        active=record.active,
        acknowledged=record.acknowledged,
        version=record.version,
    )
    for micros, name in (
        (record.response_due_us, "response_due"),
        (record.raised_at_us, "raised_at"),
        (record.last_seen_us, "last_seen"),
        (record.updated_at_us, "updated_at"),
        (record.cleared_at_us, "cleared_at"),
        (record.resolved_at_us, "resolved_at"),
        (record.shelved_until_us, "shelved_until"),
    ):
        _time(micros, message, name)
    return message


def transition_message(transition: Transition) -> exceptions_pb2.ExceptionTransition:
    """One audit trail line as the contract describes it."""
    return exceptions_pb2.ExceptionTransition(
        at=from_micros(transition.at_us),
        actor=transition.actor,
        action=transition.action,
        from_state=_STATE_NUMBER[transition.from_state] if transition.from_state else 0,  # type: ignore[arg-type]
        to_state=_STATE_NUMBER[transition.to_state],  # type: ignore[arg-type]
        reason=transition.reason,
        escalation_level=transition.escalation_level,
        owner_role=transition.owner_role,
    )


def _update(change: ExceptionChange) -> exceptions_pb2.ExceptionUpdate:
    kind = (
        exceptions_pb2.EXCEPTION_UPDATE_KIND_RAISED if change.created else exceptions_pb2.EXCEPTION_UPDATE_KIND_CHANGED
    )
    return exceptions_pb2.ExceptionUpdate(
        kind=kind,
        exception=exception_message(change.record),
        transitions=[transition_message(item) for item in change.transitions],
    )


class ExceptionService(exceptions_pb2_grpc.ExceptionServiceServicer):
    """The gRPC face of the exception engine."""

    def __init__(self, engine: ExceptionEngine) -> None:
        self._engine = engine

    async def ListExceptions(
        self, request: exceptions_pb2.ListExceptionsRequest, context: Context
    ) -> exceptions_pb2.ListExceptionsResponse:
        """Exceptions by priority, highest first, filtered and paged."""
        try:
            size, where, after = _list_query(request)
        except ValidationError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        rows = await _answer(context, self._engine.list_exceptions(where, size + 1, after))
        page = rows[:size]
        token = repo.encode_page_token(page[-1].priority, page[-1].exception_id) if len(rows) > size else ""
        return exceptions_pb2.ListExceptionsResponse(
            exceptions=[exception_message(record) for record in page], next_page_token=token
        )

    async def GetException(
        self, request: exceptions_pb2.GetExceptionRequest, context: Context
    ) -> exceptions_pb2.GetExceptionResponse:
        """One exception and its audit trail."""
        if not request.exception_id:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "exception_id is empty")
        record, transitions = await _answer(context, self._engine.get(request.exception_id))
        return exceptions_pb2.GetExceptionResponse(
            exception=exception_message(record), transitions=[transition_message(item) for item in transitions]
        )

    async def AcknowledgeException(
        self, request: exceptions_pb2.AcknowledgeExceptionRequest, context: Context
    ) -> exceptions_pb2.InventoryException:
        """open -> acknowledged, cleared -> resolved."""
        await _check_action(context, request.exception_id, request.actor, request.reason)
        change = await _answer(context, self._engine.acknowledge(request.exception_id, request.actor, request.reason))
        return exception_message(change.record)

    async def ResolveException(
        self, request: exceptions_pb2.ResolveExceptionRequest, context: Context
    ) -> exceptions_pb2.InventoryException:
        """Close by hand."""
        await _check_action(context, request.exception_id, request.actor, request.reason)
        change = await _answer(context, self._engine.resolve(request.exception_id, request.actor, request.reason))
        return exception_message(change.record)

    async def ShelveException(
        self, request: exceptions_pb2.ShelveExceptionRequest, context: Context
    ) -> exceptions_pb2.InventoryException:
        """Shelve for a capped duration."""
        await _check_action(context, request.exception_id, request.actor, request.reason)
        if request.duration_s == 0:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "duration_s must be above 0")
        change = await _answer(
            context,
            self._engine.shelve(request.exception_id, request.actor, request.reason, float(request.duration_s)),
        )
        return exception_message(change.record)

    async def Subscribe(
        self, request: exceptions_pb2.SubscribeExceptionsRequest, context: Context
    ) -> AsyncIterator[exceptions_pb2.ExceptionUpdate]:
        """Live changes in commit order, after an optional snapshot of the unresolved exceptions."""
        try:
            subscriber = self._engine.hub.subscribe()
        except SubscriberOverflow as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))
        # Subscribed before the snapshot is read: a change committed meanwhile arrives after the
        # snapshot too (clients keep the highest version per exception), never not at all.
        async with subscriber:
            if request.include_snapshot:
                rows = await _answer(context, self._engine.list_exceptions(repo.ExceptionFilter(), SNAPSHOT_MAX))
                for record in rows:
                    yield exceptions_pb2.ExceptionUpdate(
                        kind=exceptions_pb2.EXCEPTION_UPDATE_KIND_SNAPSHOT, exception=exception_message(record)
                    )
                yield exceptions_pb2.ExceptionUpdate(kind=exceptions_pb2.EXCEPTION_UPDATE_KIND_SNAPSHOT_DONE)
            try:
                async for change in subscriber:
                    yield _update(change)
            except SubscriberOverflow as exc:
                log.warning("exception subscriber too slow; cut off", extra={"peer": context.peer()})
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc))


async def _answer(context: Context, work: Awaitable[Answer]) -> Answer:
    """Await engine work, turning our errors into status codes."""
    try:
        return await work
    except ExceptionNotFound as exc:
        await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
    except LifecycleError as exc:
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
    except ValidationError as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    except StoreError as exc:
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"the store failed: {exc}")


async def _check_action(context: Context, exception_id: str, actor: str, reason: str) -> None:
    if not exception_id:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "exception_id is empty")
    if not actor.strip():
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "actor is empty: say who acts")
    if len(actor) > ACTOR_LENGTH_MAX:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"actor is longer than {ACTOR_LENGTH_MAX} characters")
    if len(reason) > REASON_LENGTH_MAX:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"reason is longer than {REASON_LENGTH_MAX} characters")


def _list_query(
    request: exceptions_pb2.ListExceptionsRequest,
) -> tuple[int, repo.ExceptionFilter, tuple[float, str] | None]:
    size = request.page_size or PAGE_SIZE_DEFAULT
    if size > PAGE_SIZE_MAX:
        raise ValidationError(f"page_size {size} is above the maximum {PAGE_SIZE_MAX}")
    states: list[State] = []
    for number in request.states:
        if not 1 <= number <= len(STATES):
            raise ValidationError(f"states: unknown state number {number}")
        states.append(STATES[number - 1])
    min_severity: Severity | None = None
    if request.min_severity:
        if not 1 <= request.min_severity <= len(SEVERITIES):
            raise ValidationError(f"min_severity: unknown severity number {request.min_severity}")
        min_severity = SEVERITIES[request.min_severity - 1]
    where = repo.ExceptionFilter(
        states=tuple(states),
        rule=request.rule,
        location=request.location,
        gtin=request.gtin,
        owner_role=request.owner_role,
        min_severity=min_severity,
    )
    after = repo.decode_page_token(request.page_token) if request.page_token else None
    return size, where, after
