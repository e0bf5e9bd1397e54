"""Background builds: a finished build wakes the loop; builds of revisions no longer wanted are forgotten."""

import threading
from pathlib import Path

from tiffin.builder import BuildRequest, BuiltBento
from tiffin.reconciler.builds import BuildTracker


class CountingBuilder:
    def __init__(self, root: Path) -> None:
        self.root, self.built = root, 0

    def build(self, request: BuildRequest) -> BuiltBento:
        self.built += 1
        return BuiltBento(self.root, Path("/usr/bin/python3"), "key", self.root / "build.log")


def request() -> BuildRequest:
    return BuildRequest(bento_tag="echo:v1", bento_archive=Path("/nonexistent"), model_archives={})


def test_a_finished_build_wakes_the_loop(tmp_path: Path) -> None:
    tracker = BuildTracker(CountingBuilder(tmp_path))  # type: ignore[arg-type]
    woken = threading.Event()
    tracker.on_done = woken.set

    tracker.state("d1", "rev1", request())

    assert woken.wait(10), "on_done was not called"
    assert tracker.state("d1", "rev1", request())[0].phase == "ready"
    tracker.close()


def test_only_wanted_revisions_keep_their_builds(tmp_path: Path) -> None:
    builder = CountingBuilder(tmp_path)
    tracker = BuildTracker(builder)  # type: ignore[arg-type]
    done = threading.Semaphore(0)
    tracker.on_done = done.release
    for revision in ("rev1", "rev2"):
        tracker.state("d1", revision, request())
        assert done.acquire(timeout=10)

    tracker.keep_only({"rev2"})
    tracker.state("d1", "rev2", request())
    tracker.state("d1", "rev1", request())
    assert done.acquire(timeout=10)

    assert builder.built == 3, "rev2 was kept; rev1 was forgotten and built again"
    tracker.close()
