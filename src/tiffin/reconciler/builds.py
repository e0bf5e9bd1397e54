"""Runs bento builds in the background so a reconcile step never waits for one."""

from concurrent.futures import Future, ThreadPoolExecutor

from tiffin.builder import Builder, BuildFailed, BuildRequest, BuiltBento
from tiffin.reconciler.status import BuildState

LOG_TAIL_IN_STATUS = 15


class BuildTracker:
    """One build per revision; its outcome is kept, so a failed build is retried only by a new revision."""

    def __init__(self, builder: Builder, workers: int = 2) -> None:
        self._builder = builder
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tiffin-build")
        self._builds: dict[str, Future[BuiltBento]] = {}

    def state(self, revision: str, request: BuildRequest) -> tuple[BuildState, BuiltBento | None]:
        future = self._builds.get(revision)
        if future is None:
            future = self._builds[revision] = self._pool.submit(self._builder.build, request)
        if not future.done():
            return BuildState("building"), None
        error = future.exception()
        if error is None:
            return BuildState("ready"), future.result()
        return BuildState("failed", _describe(error)), None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _describe(error: BaseException) -> str:
    if isinstance(error, BuildFailed):
        tail = "\n".join(error.log_tail.splitlines()[-LOG_TAIL_IN_STATUS:])
        return f"{error.message}\n{tail}"
    return f"The build failed: {error}"
