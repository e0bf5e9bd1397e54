"""Tests for tiffin.builder with uv faked in-process: keys, layout, caching, locking and failures."""

import io
import os
import sys
import tarfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

import pytest
import yaml

from tiffin.backends.commands import CommandTimedOut
from tiffin.builder import Builder, BuildFailed, BuildRequest
from tiffin.builder.envcache import COMPLETE_MARKER
from tiffin.builder.envspec import EnvSpec, WheelFile, env_key, names_bentoml, read_env_spec
from tiffin.builder.uvenv import install_cwd

PINNED = "--index-url https://pypi.org/simple\n\nbentoml==1.4.38\nsix==1.17.0\n"


class FakeUv:
    """Plays `uv python find`, `uv venv` and `uv pip install`, recording what it was asked."""

    def __init__(self, install_exit: int = 0, missing_python: bool = False) -> None:
        self.install_exit = install_exit
        self.missing_python = missing_python
        self.installs: list[list[str]] = []
        self.install_envs: list[Mapping[str, str]] = []
        self.install_started = threading.Event()
        self.release = threading.Event()
        self.release.set()
        self.install_output = b"Installed 2 packages\n"
        self.failures_before_native_tls = 0

    def __call__(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        output: IO[bytes],
        timeout_s: float,
    ) -> int:
        assert env["UV_PYTHON_DOWNLOADS"] == "never"
        command = list(argv[1:3])
        if command == ["python", "find"]:
            output.write(b"error: No interpreter found\n" if self.missing_python else b"/usr/bin/python3\n")
            return 2 if self.missing_python else 0
        if command[0] == "venv":
            return self._venv(Path(argv[-1]))
        assert command == ["pip", "install"]
        return self._install(list(argv), env, output)

    def _venv(self, target: Path) -> int:
        (target / "bin").mkdir(parents=True)
        (target / "bin" / "python").symlink_to(sys.executable)
        return 0

    def _install(self, argv: list[str], env: Mapping[str, str], output: IO[bytes]) -> int:
        self.installs.append(argv)
        self.install_envs.append(env)
        self.install_started.set()
        assert self.release.wait(10)
        if env.get("UV_NATIVE_TLS") != "1" and self.failures_before_native_tls:
            output.write(b"error: invalid peer certificate: UnknownIssuer\n")
            return 1
        output.write(self.install_output)
        return self.install_exit


def tar_of(entries: Mapping[str, bytes], path: Path) -> Path:
    """An uncompressed tar rooted at `./`, like the bentoml client makes."""
    with tarfile.open(path, "w") as archive:
        for name, data in entries.items():
            info = tarfile.TarInfo(f"./{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def bento_yaml(version: str, python_version: str | None = "3.11", bentoml_version: str = "1.4.38") -> bytes:
    manifest: dict[str, object] = {"name": "echo", "version": version, "bentoml_version": bentoml_version}
    if python_version is not None:
        manifest["image"] = {"python_version": python_version}
    return yaml.safe_dump(manifest).encode()


def make_bento(
    tmp_path: Path,
    version: str = "v1",
    requirements: str | None = PINNED,
    python_version: str | None = "3.11",
    extra: Mapping[str, bytes] | None = None,
) -> Path:
    entries = {"bento.yaml": bento_yaml(version, python_version), "src/service.py": b"import bentoml\n"}
    if requirements is not None:
        entries["env/python/requirements.txt"] = requirements.encode()
    entries.update(extra or {})
    return tar_of(entries, tmp_path / f"bento-{version}-{len(os.listdir(tmp_path))}.tar")


def make_model(tmp_path: Path, name: str = "tiny-model", version: str = "m1") -> Path:
    entries = {"model.yaml": f"name: {name}\nversion: {version}\n".encode(), "weights.txt": b"tiny weights"}
    return tar_of(entries, tmp_path / f"model-{name}-{version}.tar")


def request(tmp_path: Path, version: str = "v1", **bento: object) -> BuildRequest:
    archive = make_bento(tmp_path, version, **bento)  # type: ignore[arg-type]
    return BuildRequest(f"echo:{version}", archive, {"tiny-model:m1": make_model(tmp_path)})


def spec(**changes: object) -> EnvSpec:
    values: dict[str, object] = {
        "python_version": "3.11",
        "requirements": PINNED,
        "extra_requirements": (),
        "wheels": (WheelFile(Path("/b/env/python/wheels/a-1-py3-none-any.whl"), "0" * 64, True),),
    }
    values.update(changes)
    return EnvSpec(**values)  # type: ignore[arg-type]


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "condition not met within 10 s"
        time.sleep(0.01)


@pytest.fixture
def fake_uv() -> FakeUv:
    return FakeUv()


@pytest.fixture
def builder(tmp_path: Path, fake_uv: FakeUv) -> Builder:
    return Builder(tmp_path / "builds", uv=Path("/fake/uv"), run_command=fake_uv, environ={})


# --- environment keys ------------------------------------------------------------------------------


def test_same_inputs_give_the_same_key() -> None:
    assert env_key(spec()) == env_key(spec())
    assert len(env_key(spec())) == 16


@pytest.mark.parametrize(
    "change",
    [
        {"python_version": "3.12"},
        {"requirements": PINNED.replace("six==1.17.0", "six==1.16.0")},
        {"extra_requirements": ("bentoml==1.4.37",)},
        {"wheels": (WheelFile(Path("/b/env/python/wheels/a-1-py3-none-any.whl"), "1" * 64, True),)},
    ],
)
def test_a_changed_input_gives_another_key(change: dict[str, object]) -> None:
    assert env_key(spec(**change)) != env_key(spec())


def test_the_wheel_location_does_not_change_the_key() -> None:
    moved = WheelFile(Path("/elsewhere/env/python/wheels/a-1-py3-none-any.whl"), "0" * 64, True)
    assert env_key(spec(wheels=(moved,))) == env_key(spec())


def unpacked(tmp_path: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


def test_read_env_spec_of_a_pinned_bento(tmp_path: Path) -> None:
    bento = unpacked(
        tmp_path, {"bento.yaml": bento_yaml("v1").decode(), "env/python/requirements.txt": PINNED}
    )
    read = read_env_spec(bento)
    assert (read.python_version, read.requirements, read.extra_requirements) == ("3.11", PINNED, ())


def test_without_requirements_txt_the_bentoml_version_is_pinned_on_requirements_in(tmp_path: Path) -> None:
    files = {
        "bento.yaml": bento_yaml("v1", python_version="3.12.4").decode(),
        "env/python/requirements.in": "six\n",
    }
    read = read_env_spec(unpacked(tmp_path, files))
    assert (read.python_version, read.requirements, read.extra_requirements) == (
        "3.12",
        "six\n",
        ("bentoml==1.4.38",),
    )


def test_python_version_falls_back_to_version_txt_then_this_interpreter(tmp_path: Path) -> None:
    bento = unpacked(tmp_path, {"bento.yaml": bento_yaml("v1", python_version=None).decode()})
    assert read_env_spec(bento).python_version == f"{sys.version_info.major}.{sys.version_info.minor}"
    (bento / "env/python").mkdir(parents=True)
    (bento / "env/python/version.txt").write_text("3.10.13")
    assert read_env_spec(bento).python_version == "3.10"


def test_wheels_are_hashed_and_offered(tmp_path: Path) -> None:
    bento = unpacked(
        tmp_path,
        {"bento.yaml": bento_yaml("v1").decode(), "env/python/wheels/a-1-py3-none-any.whl": "wheel"},
    )
    first = read_env_spec(bento)
    (bento / "env/python/wheels/a-1-py3-none-any.whl").write_text("another wheel")
    second = read_env_spec(bento)
    assert env_key(first) != env_key(second)
    assert first.direct_wheels == (bento / "env/python/wheels/a-1-py3-none-any.whl",)
    assert first.wheel_dirs == (bento / "env/python/wheels",)


@pytest.mark.parametrize(
    ("requirements", "fixed"),
    [
        ("bentoml==1.4.38\n", True),
        ("BentoML[io] >= 1.4\n", True),
        ("bentoml @ https://example.com/bentoml.tar.gz\n", True),
        ("./wheels/bentoml-1.4.39.dev0.tar.gz\n", True),
        ("bentoml\n", False),
        ("bentoml-extras==1\n# bentoml==1.0\n", False),
        ("", False),
    ],
)
def test_names_bentoml(requirements: str, fixed: bool) -> None:
    assert names_bentoml(requirements) is fixed


def test_a_bad_python_version_fails_with_a_sentence(tmp_path: Path) -> None:
    bento = unpacked(tmp_path, {"bento.yaml": bento_yaml("v1", python_version="latest").decode()})
    with pytest.raises(BuildFailed, match=r"not a version like 3\.11"):
        read_env_spec(bento)


def test_install_runs_where_relative_wheel_paths_resolve(tmp_path: Path) -> None:
    (tmp_path / "env/python").mkdir(parents=True)
    assert install_cwd(tmp_path) == tmp_path / "env/python"
    (tmp_path / "src").mkdir()
    assert install_cwd(tmp_path) == tmp_path / "src"
    (tmp_path / "env/python/wheels").mkdir()
    assert install_cwd(tmp_path) == tmp_path / "env/python"


# --- unpacking -------------------------------------------------------------------------------------


def test_build_unpacks_the_bento_and_its_models(tmp_path: Path, builder: Builder) -> None:
    built = builder.build(request(tmp_path))

    assert built.bento_dir == tmp_path / "builds/bentos/echo/v1"
    assert (built.bento_dir / "bento.yaml").is_file()
    assert (built.bento_dir / "src/service.py").read_text() == "import bentoml\n"
    model = built.bento_dir / "models/tiny-model/m1"
    assert (model / "model.yaml").is_file()
    assert (model / "weights.txt").read_text() == "tiny weights"
    assert (built.bento_dir / "models/tiny-model/latest").read_text() == "m1"
    assert [p.name for p in built.bento_dir.parent.iterdir()] == ["v1"]  # no temporary directory left


def test_a_bento_version_is_unpacked_once(tmp_path: Path, builder: Builder) -> None:
    first = builder.build(request(tmp_path))
    (first.bento_dir / "marker").write_text("kept")
    second = builder.build(request(tmp_path))
    assert (second.bento_dir / "marker").read_text() == "kept"
    assert "Already unpacked; reusing it" in builder.read_log("echo:v1")


def test_an_archive_without_bento_yaml_fails(tmp_path: Path, builder: Builder) -> None:
    archive = tar_of({"README.md": b"hi"}, tmp_path / "bad.tar")
    with pytest.raises(BuildFailed, match=r"has no bento\.yaml at its root"):
        builder.build(BuildRequest("echo:v1", archive, {}))
    assert not (tmp_path / "builds/bentos/echo/v1").exists()
    assert list((tmp_path / "builds/bentos/echo").iterdir()) == []


# --- building and caching environments -------------------------------------------------------------


def test_build_creates_a_complete_env_and_logs_each_step(
    tmp_path: Path, builder: Builder, fake_uv: FakeUv
) -> None:
    built = builder.build(request(tmp_path))

    env_dir = tmp_path / "builds/envs" / built.env_key
    assert built.python == env_dir / "bin/python"
    assert (env_dir / COMPLETE_MARKER).is_file()
    assert built.log_path == tmp_path / "builds/logs/echo/v1.log"
    log = builder.read_log("echo:v1")
    assert "==> Creating a Python 3.11 virtualenv" in log
    assert "Installed 2 packages" in log
    assert "cache miss" in log
    [argv] = fake_uv.installs
    assert argv[3:5] == ["--compile-bytecode", "--python"], "modules are compiled at build, not first start"
    assert Path(argv[5]).parent.parent.parent.parent == env_dir.parent  # built in envs/.tmp-<key>-*/env
    assert "bentoml==1.4.38" not in argv  # requirements.txt already pins it


def test_bentoml_is_added_when_the_requirements_lack_it(
    tmp_path: Path, builder: Builder, fake_uv: FakeUv
) -> None:
    builder.build(request(tmp_path, requirements="six==1.17.0\n"))
    assert "bentoml==1.4.38" in fake_uv.installs[0]


def test_a_second_build_is_a_cache_hit(tmp_path: Path, builder: Builder, fake_uv: FakeUv) -> None:
    first = builder.build(request(tmp_path, "v1"))
    second = builder.build(request(tmp_path, "v2"))  # another bento needing the same environment

    assert second.env_key == first.env_key
    assert second.python == first.python
    assert len(fake_uv.installs) == 1
    assert "cache hit" in builder.read_log("echo:v2")


def test_a_half_built_env_and_leftovers_are_rebuilt(
    tmp_path: Path, builder: Builder, fake_uv: FakeUv
) -> None:
    key = builder.build(request(tmp_path)).env_key
    envs = tmp_path / "builds/envs"
    (envs / key / COMPLETE_MARKER).unlink()
    (envs / f".tmp-{key}-crashed").mkdir()

    builder.build(request(tmp_path))

    assert len(fake_uv.installs) == 2
    assert sorted(p.name for p in envs.iterdir()) == [key]


def test_a_failed_install_leaves_no_env_and_a_retry_succeeds(tmp_path: Path, fake_uv: FakeUv) -> None:
    fake_uv.install_exit = 1
    fake_uv.install_output = b"error: No solution found when resolving dependencies\n"
    builder = Builder(tmp_path / "builds", uv=Path("/fake/uv"), run_command=fake_uv, environ={})

    with pytest.raises(BuildFailed) as failure:
        builder.build(request(tmp_path))

    assert failure.value.message == "Installing the bento's Python requirements failed (exit 1)."
    assert str(failure.value) == failure.value.message
    assert "No solution found" in failure.value.log_tail
    assert "Build failed: Installing" in failure.value.log_tail
    assert list((tmp_path / "builds/envs").iterdir()) == []

    fake_uv.install_exit = 0
    built = builder.build(request(tmp_path))
    assert (built.python.parent.parent / COMPLETE_MARKER).is_file()


def test_a_missing_python_names_the_version_to_install(tmp_path: Path, fake_uv: FakeUv) -> None:
    fake_uv.missing_python = True
    builder = Builder(tmp_path / "builds", uv=Path("/fake/uv"), run_command=fake_uv, environ={})
    with pytest.raises(BuildFailed, match=r"needs Python 3\.9, which is not installed"):
        builder.build(request(tmp_path, python_version="3.9"))
    assert fake_uv.installs == []


def test_a_timeout_fails_the_build(tmp_path: Path) -> None:
    def hang(argv: Sequence[str], **_: object) -> int:
        raise CommandTimedOut("uv ran too long")

    builder = Builder(tmp_path / "builds", uv=Path("/fake/uv"), run_command=hang, command_timeout_s=5)
    with pytest.raises(BuildFailed, match=r"took longer than 5 s and was stopped"):
        builder.build(request(tmp_path))


def test_a_uv_that_cannot_start_fails_with_a_sentence(tmp_path: Path) -> None:
    def missing(argv: Sequence[str], **_: object) -> int:
        raise FileNotFoundError(2, "No such file or directory")

    builder = Builder(tmp_path / "builds", uv=Path("/fake/uv"), run_command=missing)
    with pytest.raises(BuildFailed, match=r"could not start /fake/uv \(No such file or directory\)"):
        builder.build(request(tmp_path))


def test_a_certificate_failure_is_retried_with_system_certificates(
    tmp_path: Path, builder: Builder, fake_uv: FakeUv
) -> None:
    fake_uv.failures_before_native_tls = 1
    builder.build(request(tmp_path))
    assert len(fake_uv.installs) == 2
    assert fake_uv.install_envs[1]["UV_NATIVE_TLS"] == "1"
    assert "retrying with the system's certificate store" in builder.read_log("echo:v1")


def test_two_threads_needing_one_env_install_it_once(
    tmp_path: Path, builder: Builder, fake_uv: FakeUv
) -> None:
    fake_uv.release.clear()
    requests = [request(tmp_path, "v1"), request(tmp_path, "v2")]
    results: dict[str, str] = {}

    def build(one: BuildRequest) -> None:
        results[one.bento_tag] = builder.build(one).env_key

    first = threading.Thread(target=build, args=(requests[0],))
    first.start()
    assert fake_uv.install_started.wait(10)
    second = threading.Thread(target=build, args=(requests[1],))
    second.start()
    wait_for(lambda: "waiting for it" in builder.read_log("echo:v2"))
    fake_uv.release.set()
    first.join(10)
    second.join(10)

    assert len(fake_uv.installs) == 1
    assert results["echo:v1"] == results["echo:v2"]
    assert "cache hit" in builder.read_log("echo:v2")


def test_threads_building_one_bento_version_share_its_unpacking_and_env(
    tmp_path: Path, builder: Builder, fake_uv: FakeUv
) -> None:
    one = request(tmp_path)
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(builder.build(one))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)

    assert len(results) == 4
    assert len(set(results)) == 1  # type: ignore[arg-type]
    assert len(fake_uv.installs) == 1
    assert [p.name for p in (tmp_path / "builds/bentos/echo").iterdir()] == ["v1"]
    assert builder.read_log("echo:v1").count("Unpacked with 1 model(s)") == 1


# --- the log ---------------------------------------------------------------------------------------


def test_read_log_tail_and_a_never_built_bento(tmp_path: Path, builder: Builder) -> None:
    assert builder.read_log("echo:v1") == ""
    builder.build(request(tmp_path))
    whole = builder.read_log("echo:v1")
    assert builder.read_log("echo:v1", tail=2) == "".join(whole.splitlines(keepends=True)[-2:])
    assert whole.splitlines()[0].endswith("==> Building bento echo:v1")


def test_logs_append_across_builds(tmp_path: Path, builder: Builder) -> None:
    builder.build(request(tmp_path))
    builder.build(request(tmp_path))
    assert builder.read_log("echo:v1").count("==> Building bento echo:v1") == 2
