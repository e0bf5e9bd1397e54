"""What a bento's Python environment is made of, and the key that names it.

Two bentos with the same Python version, the same requirement text and the same wheels get the same
environment, so it is built once and shared. The key hashes exactly those inputs (plus a recipe
version, bumped whenever the way environments are built changes) and nothing else: not the bento's
name, not its source files, not where it was unpacked.
"""

import hashlib
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tiffin.builder.contract import BuildFailed

RECIPE_VERSION = "1"
"""Bump when `uvenv` changes how an environment is made, so old environments are not reused."""

KEY_LENGTH = 16

PYTHON_DIR = "env/python"
DIRECT_WHEELS = "env/python/wheels"
"""Wheels bentoml ships to be installed by path (bentos built from a bentofile's `python.wheels`)."""
LINKED_WHEELS = "src/wheels"
"""Wheels and sdists that requirements.txt names by relative path (bentos built with an image spec)."""

_PACKAGE_SUFFIXES = (".whl", ".tar.gz", ".zip")
_MAJOR_MINOR = re.compile(r"^\s*(\d+)\.(\d+)")
_NAMES_BENTOML = re.compile(
    r"^\s*bentoml\s*(\[[^\]]*\])?\s*(===|==|~=|>=|<=|!=|<|>|@)"  # bentoml with a version or URL
    r"|(^|/)bentoml-[^/\s]*\.(whl|tar\.gz)\s*$",  # a bentoml wheel or sdist shipped in the bento
    re.IGNORECASE,
)


@dataclass(frozen=True)
class WheelFile:
    path: Path
    sha256: str
    direct: bool  # installed by path, not only offered to the resolver


@dataclass(frozen=True)
class EnvSpec:
    """The inputs of one environment."""

    python_version: str  # major.minor, e.g. "3.11"
    requirements: str  # the exact text handed to `uv pip install -r`
    extra_requirements: tuple[str, ...]  # added by Tiffin, e.g. ("bentoml==1.4.38",)
    wheels: tuple[WheelFile, ...]  # shipped in the bento, sorted by path

    @property
    def direct_wheels(self) -> tuple[Path, ...]:
        """Wheels installed by path (bentoml's `env/python/wheels`)."""
        return tuple(w.path for w in self.wheels if w.direct)

    @property
    def wheel_dirs(self) -> tuple[Path, ...]:
        """Directories to offer to the resolver with `--find-links`."""
        return tuple(sorted({w.path.parent for w in self.wheels}))


def env_key(spec: EnvSpec) -> str:
    """A short, stable hash of the environment's inputs."""
    return hashlib.sha256(describe(spec).encode()).hexdigest()[:KEY_LENGTH]


def describe(spec: EnvSpec) -> str:
    """The hashed inputs as canonical JSON (also kept in the environment, for people to read)."""
    payload = {
        "recipe": RECIPE_VERSION,
        "python": spec.python_version,
        "requirements": spec.requirements,
        "extra_requirements": list(spec.extra_requirements),
        "wheels": [[w.path.name, w.sha256, w.direct] for w in spec.wheels],
    }
    return json.dumps(payload, sort_keys=True, indent=1)


def read_env_spec(bento_dir: Path) -> EnvSpec:
    """Read the environment inputs of the unpacked bento at `bento_dir`."""
    manifest = read_bento_manifest(bento_dir)
    python_dir = bento_dir / PYTHON_DIR
    requirements = _requirements_text(python_dir)
    return EnvSpec(
        python_version=_python_version(manifest, python_dir),
        requirements=requirements,
        extra_requirements=_bentoml_pin(requirements, manifest.get("bentoml_version")),
        wheels=_wheels(bento_dir),
    )


def read_bento_manifest(bento_dir: Path) -> Mapping[str, Any]:
    try:
        loaded = yaml.safe_load((bento_dir / "bento.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise BuildFailed(f"The bento's bento.yaml could not be read ({exc}); push the bento again.") from exc
    if not isinstance(loaded, dict):
        raise BuildFailed("The bento's bento.yaml is not a mapping; push a bento built by the bentoml CLI.")
    return loaded


def names_bentoml(requirements: str) -> bool:
    """Whether a requirements text already fixes bentoml (with a version, URL or shipped file).

    A bare `bentoml` (or `bentoml[extra]`) does not count: the bento's own version is added to it.
    """
    lines = (line.split(" #", 1)[0] for line in requirements.splitlines())
    return any(_NAMES_BENTOML.search(line) for line in lines if not line.lstrip().startswith("#"))


def _requirements_text(python_dir: Path) -> str:
    """The pinned `requirements.txt`; failing that, the user's `requirements.in` (or nothing)."""
    for name in ("requirements.txt", "requirements.in"):
        path = python_dir / name
        if path.is_file():
            return path.read_text(encoding="utf-8")
    return ""


def _bentoml_pin(requirements: str, bentoml_version: object) -> tuple[str, ...]:
    if names_bentoml(requirements):
        return ()
    if not isinstance(bentoml_version, str) or not bentoml_version.strip():
        raise BuildFailed(
            "The bento names no bentoml version (no bentoml_version in bento.yaml, no bentoml "
            "requirement); rebuild it with the bentoml CLI and push it again."
        )
    return (f"bentoml=={bentoml_version.strip()}",)


def _python_version(manifest: Mapping[str, Any], python_dir: Path) -> str:
    """major.minor from bento.yaml's image, else env/python/version.txt, else this interpreter."""
    image = manifest.get("image")
    declared = image.get("python_version") if isinstance(image, dict) else None
    if declared is None and (python_dir / "version.txt").is_file():
        declared = (python_dir / "version.txt").read_text(encoding="utf-8")
    if declared is None:
        return f"{sys.version_info.major}.{sys.version_info.minor}"
    match = _MAJOR_MINOR.match(str(declared))
    if match is None:
        raise BuildFailed(
            f"The bento asks for Python {str(declared).strip()!r}, which is not a version like 3.11; "
            "set image.python_version in the bento and push it again."
        )
    return f"{match[1]}.{match[2]}"


def _wheels(bento_dir: Path) -> tuple[WheelFile, ...]:
    direct = sorted((bento_dir / DIRECT_WHEELS).glob("*.whl"))
    linked = sorted(p for p in (bento_dir / LINKED_WHEELS).glob("*") if p.name.endswith(_PACKAGE_SUFFIXES))
    return tuple(
        [WheelFile(path, _sha256(path), direct=True) for path in direct]
        + [WheelFile(path, _sha256(path), direct=False) for path in linked]
    )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as reader:
        while chunk := reader.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()
