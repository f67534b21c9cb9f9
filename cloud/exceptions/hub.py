"""Fan-out of exception changes to live subscribers (the Subscribe RPC), bounded per subscriber.

The engine publishes every committed change, in commit order, from one task at a time (its
write lock), so each subscriber receives changes in that order. Each subscriber has a queue of
at most `queue_max` changes. A subscriber that falls that far behind is cut off rather than
buffered without bound: its queue is emptied, it is marked `overflowed`, and its iterator
raises `SubscriberOverflow` (the service ends the stream with RESOURCE_EXHAUSTED; the client
resubscribes with a snapshot). Publishing never waits for a subscriber.

The engine feeds the hub from the database (`exception_transitions`, by transition_id; see
`cloud.exceptions.engine`), so with several aggregators on one PostgreSQL database a subscriber
sees every change that recorded a transition, whichever instance made it; a change that recorded
none (a priority moving) only reaches the subscribers of the instance that wrote it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from types import TracebackType

from cloud.errors import CloudError
from cloud.exceptions.models import ExceptionChange

__all__ = ["ExceptionHub", "Subscriber", "SubscriberOverflow"]

SUBSCRIBERS_MAX = 256  # concurrent Subscribe streams per aggregator


class SubscriberOverflow(CloudError):
    """The subscriber fell more than its queue behind and was cut off."""


class Subscriber:
    """One subscription: `async for change in subscriber` until closed; use it as a context manager."""

    def __init__(self, hub: ExceptionHub, queue_max: int) -> None:
        assert queue_max >= 1
        self._hub = hub
        self._queue: asyncio.Queue[ExceptionChange | None] = asyncio.Queue(maxsize=queue_max + 1)
        self._queue_max = queue_max
        self.overflowed = False
        self.closed = False

    def _offer(self, change: ExceptionChange) -> None:
        if self.closed:
            return
        if self._queue.qsize() >= self._queue_max:
            self.overflowed = True
            self._close_now()
            return
        self._queue.put_nowait(change)

    def _close_now(self) -> None:
        self.closed = True
        while not self._queue.empty():  # free what it will never read
            self._queue.get_nowait()
        self._queue.put_nowait(None)  # the extra slot: wakes a waiting reader
        self._hub._forget(self)

    def close(self) -> None:
        """End the subscription; the iterator stops."""
        if not self.closed:
            self._close_now()

    def __aiter__(self) -> AsyncIterator[ExceptionChange]:
        return self._changes()

    async def _changes(self) -> AsyncIterator[ExceptionChange]:
        while True:
            change = await self._queue.get()
            if change is None:
                if self.overflowed:
                    raise SubscriberOverflow(
                        f"more than {self._queue_max} changes waited for this subscriber; resubscribe"
                    )
                return
            yield change

    async def __aenter__(self) -> Subscriber:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


class ExceptionHub:
    """Subscribers and the publish side."""

    def __init__(self, queue_max: int = 1000, subscribers_max: int = SUBSCRIBERS_MAX) -> None:
        self._queue_max = queue_max
        self._subscribers_max = subscribers_max
        self._subscribers: list[Subscriber] = []

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> Subscriber:
        """A new subscriber receiving every change published from now on."""
        if len(self._subscribers) >= self._subscribers_max:
            raise SubscriberOverflow(f"already {self._subscribers_max} subscribers; try again later")
        subscriber = Subscriber(self, self._queue_max)
        self._subscribers.append(subscriber)
        return subscriber

    def publish(self, changes: Sequence[ExceptionChange]) -> None:
        """Hand changes to every subscriber, in order; never blocks."""
        for change in changes:
            for subscriber in list(self._subscribers):
                subscriber._offer(change)

    def close(self) -> None:
        """End every subscription (server stop)."""
        for subscriber in list(self._subscribers):
            subscriber.close()

    def _forget(self, subscriber: Subscriber) -> None:
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)
