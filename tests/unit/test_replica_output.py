"""What a replica's output says went wrong, and the output of ended replicas kept for a while."""

from pathlib import Path

from tiffin.backends.ended import EndedLogs, EndedReplica
from tiffin.backends.logfiles import MAX_EXCERPT, error_excerpt, failure_excerpt
from tiffin.backends.replica_dir import ReplicaPaths

BENTOML_INIT_FAILURE = """\
2026-11-27T08:09:43+0000 [INFO] [:1] Loading service from default location 'service.py'
2026-11-27T08:09:43+0000 [ERROR] [:1] Initializing service error
Traceback (most recent call last):
  File "/env/lib/python3.11/site-packages/_bentoml_impl/server/app.py", line 123, in __init__
    self._service_instance = self.service()
  File "/bento/src/service.py", line 6, in __init__
    raise RuntimeError('broken on purpose')
RuntimeError: broken on purpose
2026-11-27T08:09:43+0000 [ERROR] [:1] Application startup failed. Exiting.
"""
IMPORT_FAILURE = """\
Traceback (most recent call last):
  File "<frozen runpy>", line 198, in _run_module_as_main
ValueError: first

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/bento/src/service.py", line 1, in <module>
    import torchy
ModuleNotFoundError: No module named 'torchy'
[tiffin] replica ended: exited with code 1
"""


def test_the_exception_of_the_last_traceback_explains_a_failure() -> None:
    assert error_excerpt(BENTOML_INIT_FAILURE) == "RuntimeError: broken on purpose"
    assert failure_excerpt(IMPORT_FAILURE) == "ModuleNotFoundError: No module named 'torchy'"


def test_without_a_traceback_the_last_lines_explain_it_and_the_shims_notes_are_left_out() -> None:
    output = "starting\nloading weights\n\nout of disk space\ncannot continue\n[tiffin] replica ended: x\n"

    assert error_excerpt(output) == ""
    assert failure_excerpt(output) == "loading weights | out of disk space | cannot continue"
    assert failure_excerpt("") == ""


def test_an_excerpt_is_one_bounded_line() -> None:
    output = f"Traceback (most recent call last):\n  File x\nValueError: {'y' * 2000}\n"

    excerpt = failure_excerpt(output)

    assert excerpt.startswith("ValueError: yyy") and len(excerpt) == MAX_EXCERPT and "\n" not in excerpt


def replica_dir(root: Path, replica_id: str, output: str) -> ReplicaPaths:
    paths = ReplicaPaths(root / replica_id)
    paths.home.mkdir(parents=True)
    (paths.home / "secret.txt").write_text("s3cret")
    paths.output_log.write_text(output)
    paths.output_log.with_name("output.log.1").write_text("older\n")
    return paths


def ended(replica_id: str, at: float, service: str = "Svc", deployment: str = "d1") -> EndedReplica:
    return EndedReplica(replica_id, deployment, service, "rev1", "exited with code 1: boom", at)


def test_an_ended_replicas_logs_are_kept_and_nothing_else(tmp_path: Path) -> None:
    logs = EndedLogs(tmp_path, wall_time=lambda: 100.0)
    paths = replica_dir(tmp_path, "r1", "the end\n")

    logs.keep(paths, ended("r1", 100.0))

    kept = logs.output_log("r1")
    assert kept is not None and kept.read_text() == "the end\n"
    assert kept.with_name("output.log.1").read_text() == "older\n"
    assert not (kept.parent / "home").exists(), "secrets and homes are not kept"
    assert logs.of("d1") == [ended("r1", 100.0)]
    assert logs.of("d2") == [] and logs.output_log("r2") is None


def test_only_the_newest_per_service_and_recent_ones_are_kept(tmp_path: Path) -> None:
    now = [0.0]
    logs = EndedLogs(tmp_path, keep_per_service=2, keep_s=50.0, wall_time=lambda: now[0])
    for index in range(4):
        now[0] = float(index)
        logs.keep(replica_dir(tmp_path, f"a{index}", ""), ended(f"a{index}", now[0]))
    logs.keep(replica_dir(tmp_path, "b0", ""), ended("b0", 3.5, service="Other"))

    assert [e.replica_id for e in logs.of("d1")] == ["a2", "a3", "b0"]

    now[0] = 52.5
    logs.keep(replica_dir(tmp_path, "c0", ""), ended("c0", 52.5, deployment="d2"))
    assert [e.replica_id for e in logs.of("d1")] == ["a3", "b0"], "a2 ended too long ago"
