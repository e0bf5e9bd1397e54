"""Vet an uploaded bento or model tar before Tiffin accepts it, and read its manifest.

Archives arrive from the `bentoml` CLI, but the bytes are untrusted: a crafted tar can hold
absolute paths, `..` components, links leading out of the extraction directory, or device files
that would be harmful once the archive is unpacked on the server. This module walks every member
without extracting anything, refuses the whole upload at the first unsafe member with a
`BadRequest` naming it, and only then parses the manifest (`bento.yaml` or `model.yaml`) at the
archive root.
"""

import gzip
import lzma
import pathlib
import re
import tarfile
import zlib
from dataclasses import dataclass, field
from typing import Any

import yaml

from tiffin.core.errors import BadRequest

MAX_MANIFEST_BYTES = 1024 * 1024
"""The largest manifest accepted, in bytes (1 MiB)."""

_MAX_LINK_HOPS = 40
"""Symlink expansions allowed while resolving one link, as in Linux; more means a loop."""

_DRIVE = re.compile(r"^[A-Za-z]:")
_SEPARATORS = re.compile(r"[/\\]")
_SHOWN_NAME_LIMIT = 200

_UNREADABLE = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile)
"""What reading a damaged or non-tar upload raises, from tarfile or its decompressors."""


@dataclass
class _Scan:
    """What the member walk has learnt so far, keyed by normalised member path."""

    kind: str
    kinds_seen: dict[str, bool] = field(default_factory=dict)  # path -> is a directory
    files: set[str] = field(default_factory=set)
    symlinks: dict[str, str] = field(default_factory=dict)  # path -> raw link target
    symlink_members: list[tarfile.TarInfo] = field(default_factory=list)


def read_manifest(path: pathlib.Path, manifest_name: str) -> dict[str, Any]:
    """Check every member of the tar at `path` and return the parsed YAML manifest.

    `manifest_name` (`bento.yaml` or `model.yaml`) must sit at the archive root. Nothing is
    extracted to disk. Raises `BadRequest`, naming the offending member or manifest, if the upload
    is not a tar, holds any unsafe member, or lacks a readable manifest.
    """
    kind = "bento" if manifest_name == "bento.yaml" else "model"
    try:
        with tarfile.open(path, mode="r:*") as archive:
            return _read_checked(archive, manifest_name, kind)
    except _UNREADABLE as exc:
        raise BadRequest(
            f"The upload is not a tar archive or is damaged; push the {kind} again with the bentoml CLI."
        ) from exc


def _read_checked(archive: tarfile.TarFile, manifest_name: str, kind: str) -> dict[str, Any]:
    scan = _Scan(kind)
    manifest: tarfile.TarInfo | None = None
    for member in archive:
        parts = _check_member(member, scan)
        if parts == [manifest_name]:
            manifest = member
    _check_symlinks(scan)
    if manifest is None:
        raise BadRequest(
            f"The archive has no '{manifest_name}' at its root; push a {kind} archive made by "
            "the bentoml CLI."
        )
    return _parse_manifest(archive, manifest, manifest_name)


def _check_member(member: tarfile.TarInfo, scan: _Scan) -> list[str]:
    """Refuse `member` unless it is safe to unpack; return its path components."""
    parts = _checked_parts(member, scan.kind)
    key = "/".join(parts)
    _check_not_duplicate(member, key, scan)
    if member.issym():
        _check_link_text(member, scan.kind)
        scan.symlinks[key] = member.linkname
        scan.symlink_members.append(member)
    elif member.islnk():
        _check_hard_link(member, scan)
        scan.files.add(key)
    elif member.isreg():
        scan.files.add(key)
    elif not member.isdir():
        raise BadRequest(
            f"The archive member '{_shown(member.name)}' is a device, pipe or other special "
            "file; remove it and push again."
        )
    return parts


def _checked_parts(member: tarfile.TarInfo, kind: str) -> list[str]:
    name = member.name
    if "\x00" in name:
        raise BadRequest(
            f"The archive member '{_shown(name)}' has a NUL byte in its name; remove it and push again."
        )
    parts = _parts(name)
    if _is_absolute(name) or ".." in parts:
        raise BadRequest(
            f"The archive member '{_shown(name)}' points outside the {kind}; remove it and push again."
        )
    if not parts and not member.isdir():
        raise BadRequest(f"The archive member '{_shown(name)}' has no file name; remove it and push again.")
    return parts


def _check_not_duplicate(member: tarfile.TarInfo, key: str, scan: _Scan) -> None:
    """Refuse a repeated path, as a later entry could replace a checked one; dirs may repeat."""
    earlier_is_dir = scan.kinds_seen.get(key)
    if earlier_is_dir is not None and not (earlier_is_dir and member.isdir()):
        raise BadRequest(
            f"The archive member '{_shown(member.name)}' appears more than once; remove the "
            "duplicate and push again."
        )
    scan.kinds_seen[key] = member.isdir()


def _check_link_text(member: tarfile.TarInfo, kind: str) -> None:
    """Refuse a link whose target is empty, holds a NUL byte, or is an absolute path."""
    target = member.linkname
    if not target or "\x00" in target or _is_absolute(target):
        raise _outside_link(member, kind)


def _check_hard_link(member: tarfile.TarInfo, scan: _Scan) -> None:
    """Refuse a hard link unless it names, without `..`, a file that came earlier in the archive.

    Any `..` is refused, not only one that escapes lexically, because `..` after a symlinked
    directory can leave the root while the text alone looks inside.
    """
    _check_link_text(member, scan.kind)
    target_parts = _parts(member.linkname)
    if ".." in target_parts:
        raise _outside_link(member, scan.kind)
    if "/".join(target_parts) not in scan.files:
        raise BadRequest(
            f"The archive member '{_shown(member.name)}' is a hard link to "
            f"'{_shown(member.linkname)}', which is not an earlier file in the {scan.kind}; "
            "remove it and push again."
        )


def _check_symlinks(scan: _Scan) -> None:
    """Refuse any symlink that, followed through the archive's other symlinks, leaves the root.

    Run after the walk, so that links created later in the archive are taken into account.
    """
    for member in scan.symlink_members:
        pending = _parts(member.name)[:-1] + _parts(member.linkname)
        if _escapes(pending, scan.symlinks):
            raise _outside_link(member, scan.kind)


def _escapes(pending: list[str], symlinks: dict[str, str]) -> bool:
    """Walk `pending` from the root as a kernel would, expanding archive symlinks on the way."""
    resolved: list[str] = []
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if not resolved:
                return True
            resolved.pop()
            continue
        resolved.append(part)
        target = symlinks.get("/".join(resolved))
        if target is not None:
            hops += 1
            if hops > _MAX_LINK_HOPS:
                return True
            resolved.pop()
            pending = _parts(target) + pending
    return False


def _parse_manifest(archive: tarfile.TarFile, member: tarfile.TarInfo, manifest_name: str) -> dict[str, Any]:
    raw = _manifest_bytes(archive, member, manifest_name)
    try:
        data = yaml.safe_load(raw)
    except (yaml.YAMLError, RecursionError) as exc:
        raise BadRequest(f"The manifest '{manifest_name}' is not valid YAML; fix it and push again.") from exc
    if not isinstance(data, dict) or not all(isinstance(key, str) for key in data):
        raise BadRequest(
            f"The manifest '{manifest_name}' must be a YAML mapping with text keys; fix it and push again."
        )
    return data


def _manifest_bytes(archive: tarfile.TarFile, member: tarfile.TarInfo, manifest_name: str) -> bytes:
    if not member.isreg():
        raise BadRequest(f"The manifest '{manifest_name}' must be a regular file; replace it and push again.")
    stream = archive.extractfile(member)
    raw = b"" if stream is None else stream.read(MAX_MANIFEST_BYTES + 1)
    if member.size > MAX_MANIFEST_BYTES or len(raw) > MAX_MANIFEST_BYTES:
        raise BadRequest(f"The manifest '{manifest_name}' is larger than 1 MiB; shrink it and push again.")
    return raw


def _outside_link(member: tarfile.TarInfo, kind: str) -> BadRequest:
    return BadRequest(
        f"The archive member '{_shown(member.name)}' links to '{_shown(member.linkname)}', which "
        f"is outside the {kind}; remove it and push again."
    )


def _parts(path: str) -> list[str]:
    """Split a member path into components, dropping empty and `.` ones; `\\` counts as `/`."""
    return [part for part in _SEPARATORS.split(path) if part not in ("", ".")]


def _is_absolute(path: str) -> bool:
    return path.startswith(("/", "\\")) or _DRIVE.match(path) is not None


def _shown(text: str) -> str:
    """Make an untrusted name safe to put in a one-line message: escape control characters."""
    escaped = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
    if len(escaped) > _SHOWN_NAME_LIMIT:
        return escaped[:_SHOWN_NAME_LIMIT] + "..."
    return escaped
