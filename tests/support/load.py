"""Background load and deadline polling for end-to-end tests.

`steady_load` calls a deployment back to back on a thread and records every answer (or failure) with
the text that served it; `wait_for` polls a condition with a deadline instead of sleeping.
"""

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import httpx

TIMEOUT_S = 240
LOAD_LIMIT_S = 300


@dataclass
class Load:
    """Calls `url` back to back until stopped; records (status or error, version) per request."""

    url: str
    results: list[tuple[str, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        deadline = time.monotonic() + LOAD_LIMIT_S
        with httpx.Client(timeout=30) as client:
            while not self.stop.is_set() and time.monotonic() < deadline:
                try:
                    response = client.post(f"{self.url}/version", json={})
                    self.results.append((str(response.status_code), response.text.strip('"')))
                except httpx.HTTPError as exc:
                    self.results.append((type(exc).__name__, ""))
                time.sleep(0.01)

    @property
    def failures(self) -> list[tuple[str, str]]:
        return [r for r in self.results if r[0] != "200"]

    def versions(self) -> list[str]:
        return [text for status, text in self.results if status == "200"]


class Runner(Protocol):
    stop: threading.Event

    def run(self) -> None: ...


R = TypeVar("R", bound=Runner)


@contextmanager
def in_background(runner: R) -> Iterator[R]:
    """`runner.run()` on a thread for the duration of the block; stopped and joined after it."""
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        yield runner
    finally:
        runner.stop.set()
        thread.join(timeout=60)


def steady_load(url: str) -> AbstractContextManager[Load]:
    return in_background(Load(url))


def wait_for(
    check: Callable[[], bool], what: str, timeout: float = TIMEOUT_S, describe: Callable[[], str] = str
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}: {describe()}")
