"""Owns the agent's long-running tasks: starts them, restarts a crashed one with backoff, cancels all on stop.

A task that raises is logged with its name and restarted after a jittered, capped delay; a task that
keeps crashing never stops the others. Cancellation of `run()` cancels every task and waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from edge.backoff import Backoff

log = logging.getLogger(__name__)

RESTART_DELAY_MS_INITIAL = 500
RESTART_DELAY_MS_MAX = 30_000


@dataclass
class TaskState:
    name: str
    factory: Callable[[], Awaitable[None]]
    restarts_total: int = 0
    last_error: str = ""
    running: bool = False
    backoff: Backoff | None = field(default=None, repr=False)


class Supervisor:
    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self.tasks: dict[str, TaskState] = {}

    def add(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        """Register a task; `factory` makes a fresh coroutine for each (re)start."""
        assert name not in self.tasks, name
        self.tasks[name] = TaskState(
            name,
            factory,
            backoff=Backoff(
                delay_ms_initial=RESTART_DELAY_MS_INITIAL, delay_ms_max=RESTART_DELAY_MS_MAX, rng=self._rng
            ),
        )

    async def run(self) -> None:
        """Run every task until cancelled."""
        async with asyncio.TaskGroup() as group:
            for state in self.tasks.values():
                group.create_task(self._keep_running(state), name=state.name)

    async def _keep_running(self, state: TaskState) -> None:
        assert state.backoff is not None
        while True:
            state.running = True
            try:
                await state.factory()
                state.last_error = "returned"
                log.warning("task ended; restarting", extra={"task": state.name})
            except Exception as exc:
                state.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("task crashed; restarting", extra={"task": state.name})
            finally:
                state.running = False
            state.restarts_total += 1
            await asyncio.sleep(state.backoff.next_delay_s())
