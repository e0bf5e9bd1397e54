"""How one environment is made with uv: find the Python, create a virtualenv, install requirements.

uv never downloads a Python here (`UV_PYTHON_DOWNLOADS=never`, `--python-preference only-system`):
a missing interpreter is a clear failure naming the version to install. The virtualenv is created
`--relocatable` because it is built in a temporary directory and renamed into the cache afterwards;
otherwise its console scripts would point at the temporary path. uv's default cache is used on
purpose: a warm cache is what makes later builds fast.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tiffin.backends.commands import CommandRunner, CommandTimedOut
from tiffin.builder.buildlog import BuildLog
from tiffin.builder.contract import BuildFailed
from tiffin.builder.envspec import DIRECT_WHEELS, EnvSpec

CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
_DROPPED_VARIABLES = ("VIRTUAL_ENV", "CONDA_PREFIX", "PYTHONHOME", "PYTHONPATH")
"""Variables of Tiffin's own environment that must not steer uv toward Tiffin's interpreter."""


@dataclass(frozen=True)
class UvSession:
    """Everything needed to run uv for one build."""

    uv: Path
    run: CommandRunner
    timeout_s: float
    log: BuildLog
    base_env: Mapping[str, str]
    scratch: Path  # a private directory of this build (also the cwd of uv's interpreter lookups)


def make_env(spec: EnvSpec, bento_dir: Path, target: Path, session: UvSession) -> None:
    """Create the environment `spec` describes at `target` (which must not exist)."""
    find_python(spec.python_version, session)
    create_venv(spec.python_version, target, session)
    install_requirements(spec, bento_dir, target, session)


def find_python(version: str, session: UvSession) -> None:
    argv = [str(session.uv), "python", "find", "--system", "--no-project"]
    argv += ["--python-preference", "only-system", version]
    if _step(f"Finding Python {version}", argv, session.scratch, session) != 0:
        raise BuildFailed(
            f"The bento needs Python {version}, which is not installed on this machine; install "
            f"Python {version} where uv can find it (Tiffin does not download interpreters)."
        )


def create_venv(version: str, target: Path, session: UvSession) -> None:
    argv = [str(session.uv), "venv", "--python", version, "--python-preference", "only-system"]
    argv += ["--no-project", "--relocatable", str(target)]
    status = _step(f"Creating a Python {version} virtualenv", argv, session.scratch, session)
    if status != 0:
        raise BuildFailed(f"Creating the Python {version} virtualenv failed (exit {status}).")


def install_requirements(spec: EnvSpec, bento_dir: Path, target: Path, session: UvSession) -> None:
    requirements = session.scratch / "requirements.txt"
    requirements.write_text(spec.requirements, encoding="utf-8")
    argv = install_argv(spec, session.uv, target, requirements)
    cwd = install_cwd(bento_dir)
    start = session.log.position()
    status = _step("Installing the bento's Python requirements", argv, cwd, session)
    if status != 0 and session.log.mentions(b"certificate", since=start):
        session.log.note("uv failed a certificate check; retrying with the system's certificate store")
        status = _step("Installing (system certificates)", argv, cwd, session, system_certs=True)
    if status != 0:
        raise BuildFailed(f"Installing the bento's Python requirements failed (exit {status}).")


def install_argv(spec: EnvSpec, uv: Path, target: Path, requirements: Path) -> list[str]:
    """`--compile-bytecode`: a replica's first start would otherwise compile ~1000 modules (≈1.5 s)."""
    python = str(target / "bin" / "python")
    argv = [str(uv), "pip", "install", "--compile-bytecode", "--python", python, "-r", str(requirements)]
    for folder in spec.wheel_dirs:
        argv += ["--find-links", str(folder)]
    return argv + list(spec.extra_requirements) + [str(path) for path in spec.direct_wheels]


def install_cwd(bento_dir: Path) -> Path:
    """Where relative paths in requirements.txt (`./wheels/...`) resolve, as in bentoml's images."""
    if (bento_dir / DIRECT_WHEELS).is_dir() or not (bento_dir / "src").is_dir():
        return bento_dir / "env" / "python"
    return bento_dir / "src"


def uv_environment(base: Mapping[str, str], *, system_certs: bool = False) -> dict[str, str]:
    env = {name: value for name, value in base.items() if name not in _DROPPED_VARIABLES}
    env.update(UV_PYTHON_DOWNLOADS="never", UV_NO_PROGRESS="1", NO_COLOR="1")
    if system_certs:
        env.update(UV_NATIVE_TLS="1", UV_SYSTEM_CERTS="1")
        if CA_BUNDLE.is_file():
            env.setdefault("SSL_CERT_FILE", str(CA_BUNDLE))
    return env


def _step(
    title: str, argv: Sequence[str], cwd: Path, session: UvSession, *, system_certs: bool = False
) -> int:
    session.log.step(f"{title}: {' '.join(argv)}")
    env = uv_environment(session.base_env, system_certs=system_certs)
    try:
        status = session.run(argv, cwd=cwd, env=env, output=session.log.output, timeout_s=session.timeout_s)
    except CommandTimedOut:
        raise BuildFailed(f"{title} took longer than {session.timeout_s:g} s and was stopped.") from None
    except OSError as exc:
        raise BuildFailed(f"{title} could not start {argv[0]} ({exc.strerror}).") from exc
    session.log.note(f"exit {status}")
    return status
