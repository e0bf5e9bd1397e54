"""Unpack a stored bento and its models into the directory replicas serve from.

bentoml serves a bento directory and loads models from `<bento>/models/<name>/<version>/` (with a
`models/<name>/latest` file naming the version) when that store is non-empty, so the unpacked bento
is self-contained. It is assembled in a temporary sibling directory and renamed into place in one
step: a reader sees either no bento directory or a complete one.
"""

import os
import shutil
import tarfile
import tempfile
from collections.abc import Mapping
from pathlib import Path

from tiffin.builder.contract import BuildFailed
from tiffin.core.tags import check_tag_part

TEMP_PREFIX = ".tmp-"
"""Directories being assembled start with this; leftovers of a crashed build are removed."""


def split_tag(tag: str, what: str) -> tuple[str, str]:
    """`name:version` -> (name, version), both valid tag parts (so safe as path components)."""
    name, _, version = tag.partition(":")
    return check_tag_part(name, f"{what} name"), check_tag_part(version, f"{what} version")


def unpack_bento(bento_archive: Path, model_archives: Mapping[str, Path], dest: Path) -> None:
    """Unpack the bento and its models into `dest`, which must not exist yet.

    The caller holds the bento's lock, so leftover temporary directories next to `dest` are dead.
    """
    remove_leftovers(dest.parent, f"{TEMP_PREFIX}{dest.name}-")
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{dest.name}-", dir=dest.parent))
    work.chmod(0o755)  # mkdtemp makes it private; the bento directory is not secret
    try:
        _extract(bento_archive, work, "bento.yaml", "bento")
        for tag, archive in sorted(model_archives.items()):
            unpack_model(tag, archive, work / "models")
        os.replace(work, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def unpack_model(tag: str, archive: Path, models_dir: Path) -> None:
    """Unpack one model into bentoml's store layout and point `latest` at it."""
    name, version = split_tag(tag, "model")
    _extract(archive, models_dir / name / version, "model.yaml", f"model {tag}")
    (models_dir / name / "latest").write_text(version, encoding="utf-8")


def remove_leftovers(folder: Path, prefix: str) -> None:
    """Delete directories in `folder` whose names start with `prefix` (only call under a lock)."""
    if folder.is_dir():
        for leftover in folder.glob(f"{prefix}*"):
            shutil.rmtree(leftover, ignore_errors=True)


def _extract(archive: Path, dest: Path, manifest: str, what: str) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, mode="r:*") as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as exc:
        raise BuildFailed(f"The stored archive of the {what} could not be unpacked ({exc}).") from exc
    if not (dest / manifest).is_file():
        raise BuildFailed(f"The stored archive of the {what} has no {manifest} at its root; push it again.")
