"""What callers hand the builder and what they get back, kept apart from how a build is done.

The reconciler (or a CLI command) asks for a bento to be made runnable and receives the paths a
backend needs to start replicas; a failed build is one exception carrying a sentence for people and
the end of the build log for diagnosis.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class BuildRequest:
    """One bento to make runnable: its stored archive and those of the models it uses."""

    bento_tag: str  # "repo:version"
    bento_archive: Path  # the stored (uncompressed) tar, `bento.yaml` at its root
    model_archives: Mapping[str, Path] = field(default_factory=dict)  # "name:version" -> stored tar


@dataclass(frozen=True)
class BuiltBento:
    """A bento ready to serve: its unpacked directory and the Python of its environment."""

    bento_dir: Path  # unpacked bento with models/ populated: <root>/bentos/<repo>/<version>
    python: Path  # <env>/bin/python of the environment
    env_key: str  # hash of the environment's inputs
    log_path: Path  # the build log of this bento


class BuildFailed(Exception):
    """A build that could not finish: `message` is one sentence, `log_tail` the end of the log."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.log_tail = log_tail
