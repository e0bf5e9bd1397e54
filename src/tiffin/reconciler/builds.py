"""Runs bento builds in the background so a reconcile step never waits for one.

A finished build calls `on_done` (the loop's nudge), so the next step comes at once rather than at the
next interval; builds of revisions no longer wanted are forgotten (`keep_only`).
"""

import logging
import time
from collections.abc import Callable, Collection
from concurrent.futures import Future, ThreadPoolExecutor

from tiffin.builder import Builder, BuildFailed, BuildRequest, BuiltBento
from tiffin.reconciler.status import BuildState

LOG_TAIL_IN_STATUS = 15
log = logging.getLogger("tiffin.builds")


class BuildTracker:
    """One build per revision; its outcome is kept, so a failed build is retried only by a new revision."""

    def __init__(self, builder: Builder, workers: int = 2) -> None:
        self._builder = builder
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tiffin-build")
        self._builds: dict[str, Future[BuiltBento]] = {}
        self.on_done: Callable[[], None] = lambda: None  # called on the build's thread

    def keep_only(self, revisions: Collection[str]) -> None:
        """Forget the builds of every other revision (a revision that comes back builds again, from the
        environment cache)."""
        self._builds = {r: f for r, f in self._builds.items() if r in revisions}

    def state(
        self, deployment: str, revision: str, request: BuildRequest
    ) -> tuple[BuildState, BuiltBento | None]:
        future = self._builds.get(revision)
        if future is None:
            future = self._builds[revision] = self._start(deployment, request)
        if not future.done():
            return BuildState("building"), None
        error = future.exception()
        if error is None:
            return BuildState("ready"), future.result()
        return BuildState("failed", _describe(error)), None

    def _start(self, deployment: str, request: BuildRequest) -> Future[BuiltBento]:
        extra = {"deployment": deployment}
        log.info("Building bento %s.", request.bento_tag, extra=extra)
        started = time.monotonic()
        future = self._pool.submit(self._builder.build, request)

        def finished(done: Future[BuiltBento]) -> None:
            took = time.monotonic() - started
            if done.cancelled() or done.exception() is None:
                log.info("Bento %s is ready (%.1f s).", request.bento_tag, took, extra=extra)
            else:
                what = _describe(done.exception() or Exception()).splitlines()[0]
                log.warning("Bento %s failed to build: %s", request.bento_tag, what, extra=extra)
            self.on_done()

        future.add_done_callback(finished)
        return future

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _describe(error: BaseException) -> str:
    if isinstance(error, BuildFailed):
        tail = "\n".join(error.log_tail.splitlines()[-LOG_TAIL_IN_STATUS:])
        return f"{error.message}\n{tail}"
    return f"The build failed: {error}"
