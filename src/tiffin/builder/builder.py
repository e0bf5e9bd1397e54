"""Tiffin's "image build": from a stored bento to a directory and a Python that can serve it.

A build unpacks the bento (once per version) with its models, works out which environment it needs,
and takes that environment from the cache or builds it with uv. Every step is written to the bento's
build log, and any failure becomes one `BuildFailed` carrying a sentence and the end of that log.
"""

import os
from collections.abc import Mapping
from functools import partial
from pathlib import Path

from uv import find_uv_bin

from tiffin.backends.commands import CommandRunner, run_streaming
from tiffin.builder.buildlog import BuildLog, read_tail
from tiffin.builder.contract import BuildFailed, BuildRequest, BuiltBento
from tiffin.builder.envcache import EnvCache
from tiffin.builder.envspec import EnvSpec, describe, env_key, read_env_spec
from tiffin.builder.locks import exclusive_lock
from tiffin.builder.unpack import split_tag, unpack_bento
from tiffin.builder.uvenv import UvSession, make_env
from tiffin.core.clock import Clock, SystemClock

DEFAULT_COMMAND_TIMEOUT_S = 1800.0
LOG_TAIL_LINES = 40


class Builder:
    """Builds bentos under `root` (TIFFIN_HOME/builds): bentos/, envs/, logs/ and locks/.

    `uv` defaults to the binary of the `uv` package; `run_command` runs each uv command (tests pass a
    fake); `command_timeout_s` limits each command; `environ` is the environment uv starts from
    (default: this process's, read at each build); `env_cache` holds the built environments (default:
    `root`), and may be shared by several Tiffin homes.
    """

    def __init__(
        self,
        root: Path,
        *,
        uv: Path | None = None,
        run_command: CommandRunner = run_streaming,
        command_timeout_s: float = DEFAULT_COMMAND_TIMEOUT_S,
        clock: Clock | None = None,
        environ: Mapping[str, str] | None = None,
        env_cache: Path | None = None,
    ) -> None:
        self.root = root.absolute()  # bentoml reads a relative bento path as a module name
        self._uv = uv
        self._run = run_command
        self._timeout_s = command_timeout_s
        self._clock = clock or SystemClock()
        self._environ = environ
        self._envs = EnvCache((env_cache or self.root).absolute())

    def build(self, request: BuildRequest) -> BuiltBento:
        """Make the bento runnable (blocking); raises `BuildFailed` with a sentence and the log tail."""
        with BuildLog(self.log_path(request.bento_tag), self._clock) as log:
            log.step(f"Building bento {request.bento_tag}")
            try:
                built = self._build(request, log)
            except BuildFailed as exc:
                raise self._failed(log, exc.message) from exc
            except OSError as exc:
                raise self._failed(log, f"The build failed on a file system error ({exc}).") from exc
            log.step(f"Bento {request.bento_tag} is ready (environment {built.env_key})")
            return built

    def log_path(self, bento_tag: str) -> Path:
        repo, version = split_tag(bento_tag, "bento")
        return self.root / "logs" / repo / f"{version}.log"

    def read_log(self, bento_tag: str, tail: int | None = None) -> str:
        """The bento's build log (its last `tail` lines if given); "" if it was never built."""
        return read_tail(self.log_path(bento_tag), tail)

    def bento_dir(self, bento_tag: str) -> Path:
        repo, version = split_tag(bento_tag, "bento")
        return self.root / "bentos" / repo / version

    def _build(self, request: BuildRequest, log: BuildLog) -> BuiltBento:
        bento_dir = self._unpack(request, log)
        spec = read_env_spec(bento_dir)
        key = env_key(spec)
        log.step(f"Environment {key}: Python {spec.python_version}")
        build = partial(self._make_env, spec, bento_dir, log)
        env_dir = self._envs.ensure(key, build, log, describe(spec))
        return BuiltBento(bento_dir, env_dir / "bin" / "python", key, log.path)

    def _unpack(self, request: BuildRequest, log: BuildLog) -> Path:
        """Unpack the bento version once; later builds (and concurrent ones) reuse it."""
        dest = self.bento_dir(request.bento_tag)
        repo, version = dest.parent.name, dest.name
        log.step(f"Unpacking the bento into {dest}")
        with exclusive_lock(self.root / "locks" / "bentos" / repo / f"{version}.lock"):
            if dest.is_dir():
                log.note("Already unpacked; reusing it")
            else:
                unpack_bento(request.bento_archive, request.model_archives, dest)
                log.note(f"Unpacked with {len(request.model_archives)} model(s)")
        return dest

    def _make_env(self, spec: EnvSpec, bento_dir: Path, log: BuildLog, target: Path, scratch: Path) -> None:
        session = UvSession(
            uv=self._uv_path(),
            run=self._run,
            timeout_s=self._timeout_s,
            log=log,
            base_env=dict(os.environ) if self._environ is None else self._environ,
            scratch=scratch,
        )
        make_env(spec, bento_dir, target, session)

    def _uv_path(self) -> Path:
        if self._uv is None:
            try:
                self._uv = Path(find_uv_bin())
            except FileNotFoundError as exc:
                message = "The uv binary was not found; reinstall Tiffin with its uv dependency."
                raise BuildFailed(message) from exc
        return self._uv

    def _failed(self, log: BuildLog, message: str) -> BuildFailed:
        log.step(f"Build failed: {message}")
        return BuildFailed(message, log.tail(LOG_TAIL_LINES))
