"""The real bentoml CLI and SDK, run in subprocesses, each with its own BENTOML_HOME."""

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

CLI_TIMEOUT_S = 300

SERVICE_SOURCE = """
import bentoml


@bentoml.service
class Echo:
    model = bentoml.models.BentoModel("tiny-model")

    @bentoml.api
    def echo(self, text: str) -> str:
        return text
"""

MAKE_MODEL = """
import bentoml
with bentoml.models.create("tiny-model") as model:
    with open(model.path_of("weights.txt"), "w") as handle:
        handle.write("tiny weights")
print(model.tag)
"""


@dataclass(frozen=True)
class BentomlCli:
    home: Path

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BENTO_CLOUD_")}
        env.update({"BENTOML_HOME": str(self.home), "BENTOML_DO_NOT_TRACK": "True", "COLUMNS": "200"})
        return env

    def run(
        self, *args: str, cwd: Path | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """`bentoml ARGS...`; with `check`, a non-zero exit fails with the CLI's output."""
        return self._run([sys.executable, "-m", "bentoml", *args], cwd, check)

    def tiffin(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The `tiffin` client commands, which reuse this home's `bentoml cloud login` context."""
        return self._run([sys.executable, "-m", "tiffin", *args], None, True)

    def python(self, source: str, cwd: Path | None = None) -> str:
        """Run `source` with the bentoml SDK in this home; returns its stdout."""
        return self._run([sys.executable, "-c", source], cwd, True).stdout.strip()

    def _run(self, argv: list[str], cwd: Path | None, check: bool) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            argv, cwd=cwd, env=self.env(), capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv[2:])} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result

    def build(self, project: Path) -> str:
        """`bentoml build` in `project`; returns the new bento's tag."""
        output = self.run("build", "-o", "tag", cwd=project).stdout
        return next(
            line.split("__tag__:", 1)[1].strip() for line in output.splitlines() if "__tag__:" in line
        )

    def login(self, endpoint: str, token: str) -> subprocess.CompletedProcess[str]:
        return self.run("cloud", "login", "--endpoint", endpoint, "--api-token", token)

    def build_echo_bento(self, project: Path) -> tuple[str, str]:
        """Save a model with `bentoml.models.create`, build a bento using it; returns (bento, model) tags."""
        project.mkdir(parents=True, exist_ok=True)
        (project / "service.py").write_text(SERVICE_SOURCE)
        (project / "bentofile.yaml").write_text('service: "service:Echo"\ninclude: ["*.py"]\n')
        model_tag = self.python(MAKE_MODEL, cwd=project)
        self.run("build", cwd=project)
        bento_tag = self.python("import bentoml; print(bentoml.bentos.list('echo')[0].tag)", cwd=project)
        return bento_tag, model_tag


TWO_SERVICE_SOURCE = """
import os

import bentoml
from bentoml._internal.configuration.containers import BentoMLContainer

ENV_NAMES = ("GLOBAL_ENV", "SHARED", "SVC_ENV", "SECRET_TOKEN")


def runtime_facts() -> dict:
    return {
        "env": {name: os.environ.get(name) for name in ENV_NAMES},
        "home": os.environ.get("BENTOML_HOME"),
        "timeout": BentoMLContainer.api_server_config.traffic.timeout.get(),
    }


@bentoml.service
class Model:
    @bentoml.api
    def predict(self, text: str) -> dict:
        return {"upper": text.upper(), **runtime_facts()}


@bentoml.service
class Front:
    model = bentoml.depends(Model)

    @bentoml.api
    async def shout(self, text: str) -> dict:
        inner = await self.model.to_async.predict(text=text)
        return {"inner": inner, **runtime_facts()}

    @bentoml.api
    async def hello(self) -> str:
        return "hello"  # answered by Front alone
"""


def write_project(project: Path, source: str, service: str, python_packages: tuple[str, ...] = ()) -> Path:
    """A bento project: `service.py` and a bentofile for `service:<service>`."""
    project.mkdir(parents=True, exist_ok=True)
    (project / "service.py").write_text(source)
    packages = "".join(f"\n    - {p}" for p in python_packages)
    python = f"python:\n  lock_packages: false\n  packages:{packages}\n" if python_packages else ""
    (project / "bentofile.yaml").write_text(f'service: "service:{service}"\ninclude: ["*.py"]\n{python}')
    return project


# A Service answering its version; {crash} runs in __init__, {fail} in the API ("pass"/"" for none).
VERSIONED_SOURCE = """
import bentoml

VERSION = "{version}"


@bentoml.service
class Ver:
    def __init__(self) -> None:
        {crash}

    @bentoml.api
    def version(self) -> str:
        {fail}
        return VERSION
"""


# The smallest Service: {service} answers POST /ping with "pong".
PING_SOURCE = """
import bentoml


@bentoml.service
class {service}:
    @bentoml.api
    def ping(self) -> str:
        return "pong"
"""
