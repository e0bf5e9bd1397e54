"""The builder with the real uv: a bento built by the real bentoml CLI becomes a runnable environment."""

import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from tests.support.bentoml_cli import BentomlCli
from tiffin.backends.commands import CommandTimedOut, run_streaming
from tiffin.builder import Builder, BuildRequest
from tiffin.builder.envcache import COMPLETE_MARKER

pytestmark = pytest.mark.integration

Built = tuple[BentomlCli, str, str]


def tar_like_the_client(source: Path, archive: Path) -> Path:
    """Uncompressed, rooted at `./`, without a `models/` directory."""

    def without_models(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        return None if info.name == "./models" or info.name.startswith("./models/") else info

    with tarfile.open(archive, "w") as tar:
        tar.add(source, arcname="./", filter=without_models)
    return archive


def run_python(python: Path, source: str, cwd: Path) -> str:
    result = subprocess.run(
        [str(python), "-c", source], cwd=cwd, capture_output=True, text=True, timeout=120, check=True
    )
    return result.stdout.strip()


def test_a_real_bento_builds_with_uv_and_is_reused(tmp_path: Path, built_bento: Built) -> None:
    cli, bento_tag, model_tag = built_bento
    bento_archive = tar_like_the_client(cli.home / "bentos" / bento_tag.replace(":", "/"), tmp_path / "b.tar")
    model_archive = tar_like_the_client(cli.home / "models" / model_tag.replace(":", "/"), tmp_path / "m.tar")
    builder = Builder(tmp_path / "builds")
    build_request = BuildRequest(bento_tag, bento_archive, {model_tag: model_archive})

    built = builder.build(build_request)

    assert run_python(built.python, "import bentoml; print(bentoml.__version__)", tmp_path) == "1.4.38"
    model_name, model_version = model_tag.split(":")
    assert (built.bento_dir / "models" / model_name / model_version / "model.yaml").is_file()
    assert (built.bento_dir / "models" / model_name / "latest").read_text() == model_version
    bentoml_script = built.python.parent / "bentoml"  # console scripts survive the rename into the cache
    assert (
        "1.4.38"
        in subprocess.run(
            [str(bentoml_script), "--version"], capture_output=True, text=True, timeout=120, check=True
        ).stdout
    )
    marker = (built.python.parent.parent / COMPLETE_MARKER).stat()

    again = builder.build(build_request)

    assert again == built
    assert "cache hit" in builder.read_log(bento_tag, tail=5)
    after = (built.python.parent.parent / COMPLETE_MARKER).stat()
    assert (after.st_ino, after.st_mtime_ns) == (marker.st_ino, marker.st_mtime_ns)


def test_run_streaming_writes_output_to_the_file(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    with log.open("ab") as output:
        status = run_streaming(
            [sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"],
            cwd=tmp_path,
            env={},
            output=output,
            timeout_s=60,
        )
    assert status == 3
    assert sorted(log.read_text().split()) == ["err", "out"]


def test_run_streaming_kills_the_whole_session_on_timeout(tmp_path: Path) -> None:
    child_pid = tmp_path / "child.pid"
    source = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(child_pid)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(60)\n"
    )
    with (tmp_path / "out.log").open("ab") as output, pytest.raises(CommandTimedOut):
        run_streaming([sys.executable, "-c", source], cwd=tmp_path, env={}, output=output, timeout_s=2)
    pid = int(child_pid.read_text())
    deadline = time.monotonic() + 10
    while is_alive(pid):  # SIGKILL is delivered asynchronously
        assert time.monotonic() < deadline, f"process {pid}, started by the command, survived its timeout"
        time.sleep(0.05)


def is_alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in {"Z", "X"}
