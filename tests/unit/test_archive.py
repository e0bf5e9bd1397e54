"""Tests for tiffin.artifacts.archive: crafted tarballs, safe ones accepted, unsafe ones refused."""

import io
import pathlib
import random
import tarfile
from typing import Literal

import pytest

from tiffin.artifacts.archive import MAX_MANIFEST_BYTES, read_manifest
from tiffin.core.errors import BadRequest

BENTO_YAML = b"service: service:Summarizer\nname: summarizer\nlabels:\n  team: nlp\n"
MODEL_YAML = b"name: sentiment\nversion: v1\nmodule: bentoml.transformers\n"

Entry = tuple[tarfile.TarInfo, bytes | None]
WriteMode = Literal["w", "w:gz"]

# Long enough to travel in a PAX header, where a NUL byte survives (ustar fields stop at one).
NUL_NAME = "./" + "n" * 120 + "\x00.py"


def file(name: str, data: bytes = b"data\n") -> Entry:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def directory(name: str) -> Entry:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info, None


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> Entry:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def special(name: str, kind: bytes) -> Entry:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.devmajor, info.devminor = 1, 3
    return info, None


def write_tar(path: pathlib.Path, entries: list[Entry], mode: WriteMode = "w") -> pathlib.Path:
    with tarfile.open(path, mode, format=tarfile.PAX_FORMAT) as archive:
        for info, data in entries:
            archive.addfile(info, None if data is None else io.BytesIO(data))
    return path


def bento_entries() -> list[Entry]:
    """A bento as the CLI lays it out, plus links that stay inside."""
    return [
        directory("."),
        file("./bento.yaml", BENTO_YAML),
        directory("./src"),
        file("./src/service.py", b"import bentoml\n"),
        directory("./env"),
        directory("./env/python"),
        file("./env/python/requirements.txt", b"torch\n"),
        file("./b.txt", b"b\n"),
        directory("./a"),
        link("./a/link", "../b.txt"),
        link("./a/chain", "link"),
        link("./code", "src"),
        link("./a/deep", "../code/service.py"),
        link("./a/copy.txt", "./b.txt", tarfile.LNKTYPE),
    ]


@pytest.mark.parametrize("mode", ["w", "w:gz"])
def test_valid_bento_returns_manifest(tmp_path: pathlib.Path, mode: WriteMode) -> None:
    path = write_tar(tmp_path / "bento.tar", bento_entries(), mode)

    manifest = read_manifest(path, "bento.yaml")

    assert manifest == {
        "service": "service:Summarizer",
        "name": "summarizer",
        "labels": {"team": "nlp"},
    }


def test_valid_model_with_bare_member_names(tmp_path: pathlib.Path) -> None:
    entries = [file("model.yaml", MODEL_YAML), file("saved_model.bin", b"\x00\x01")]
    path = write_tar(tmp_path / "model.tar", entries)

    assert read_manifest(path, "model.yaml") == {
        "name": "sentiment",
        "version": "v1",
        "module": "bentoml.transformers",
    }


UNSAFE_MEMBERS: list[tuple[str, Entry, str]] = [
    ("absolute", file("/etc/cron.d/evil"), "/etc/cron.d/evil"),
    ("windows-drive", file("C:/Windows/evil.dll"), "C:/Windows/evil.dll"),
    ("dotdot", file("../evil"), "../evil"),
    ("dotdot-inside", file("./a/../../x"), "./a/../../x"),
    ("nul-byte", file(NUL_NAME), NUL_NAME.replace("\x00", "\\x00")),
    ("symlink-absolute", link("./passwd", "/etc/passwd"), "./passwd"),
    ("symlink-escapes", link("./x", "../../outside"), "./x"),
    ("symlink-subdir-escapes", link("./a/b/l", "../../../x"), "./a/b/l"),
    ("hardlink-absolute", link("./h", "/etc/passwd", tarfile.LNKTYPE), "./h"),
    ("hardlink-dotdot", link("./h", "../x", tarfile.LNKTYPE), "./h"),
    ("hardlink-unseen", link("./h", "./later.txt", tarfile.LNKTYPE), "./h"),
    ("char-device", special("./null", tarfile.CHRTYPE), "./null"),
    ("block-device", special("./sda", tarfile.BLKTYPE), "./sda"),
    ("fifo", special("./pipe", tarfile.FIFOTYPE), "./pipe"),
]


@pytest.mark.parametrize(
    ("entry", "shown"),
    [pytest.param(entry, shown, id=case) for case, entry, shown in UNSAFE_MEMBERS],
)
def test_unsafe_member_is_refused(tmp_path: pathlib.Path, entry: Entry, shown: str) -> None:
    entries = [file("./bento.yaml", BENTO_YAML), entry, file("./later.txt")]
    path = write_tar(tmp_path / "bento.tar", entries)

    with pytest.raises(BadRequest) as caught:
        read_manifest(path, "bento.yaml")

    assert f"'{shown}'" in caught.value.message
    assert "model" not in caught.value.message


@pytest.mark.parametrize(
    ("entries", "shown"),
    [
        pytest.param(
            [directory("./a"), link("./up", "."), link("./a/esc", "../up/..")],
            "./a/esc",
            id="symlink-escapes-through-other-symlink",
        ),
        pytest.param(
            [link("./early", "later/.."), link("./later", ".")],
            "./early",
            id="symlink-escapes-through-later-symlink",
        ),
        pytest.param([link("./loop1", "loop2"), link("./loop2", "loop1")], "./loop1", id="symlink-loop"),
        pytest.param([file("./x"), link("./x", "/tmp")], "./x", id="duplicate-path"),
    ],
)
def test_unsafe_link_combination_is_refused(tmp_path: pathlib.Path, entries: list[Entry], shown: str) -> None:
    path = write_tar(tmp_path / "bento.tar", [file("./bento.yaml", BENTO_YAML), *entries])

    with pytest.raises(BadRequest) as caught:
        read_manifest(path, "bento.yaml")

    assert f"'{shown}'" in caught.value.message


@pytest.mark.parametrize(
    "entries",
    [
        pytest.param([file("./src/service.py")], id="missing"),
        pytest.param([file("./sub/bento.yaml", BENTO_YAML)], id="only-in-subdirectory"),
        pytest.param([file("./bento.yaml", b"name: [unclosed\n")], id="invalid-yaml"),
        pytest.param([file("./bento.yaml", b"- a\n- b\n")], id="yaml-list"),
        pytest.param([file("./bento.yaml", b"")], id="empty-manifest"),
        pytest.param([file("./bento.yaml", b"1: one\n")], id="non-text-keys"),
        pytest.param([file("./bento.yaml", b"\xff\xfe\xfa")], id="not-text"),
        pytest.param([file("./bento.yaml", b"#" * (MAX_MANIFEST_BYTES + 1))], id="larger-than-1-mib"),
        pytest.param([directory("./bento.yaml")], id="directory"),
        pytest.param([file("./real.yaml", BENTO_YAML), link("./bento.yaml", "real.yaml")], id="symlink"),
    ],
)
def test_bad_manifest_is_refused(tmp_path: pathlib.Path, entries: list[Entry]) -> None:
    path = write_tar(tmp_path / "bento.tar", [directory("."), *entries])

    with pytest.raises(BadRequest) as caught:
        read_manifest(path, "bento.yaml")

    assert "'bento.yaml'" in caught.value.message


def test_model_messages_say_model(tmp_path: pathlib.Path) -> None:
    path = write_tar(tmp_path / "model.tar", [file("model.yaml", MODEL_YAML), file("../evil")])

    with pytest.raises(BadRequest, match=r"'\.\./evil' points outside the model;"):
        read_manifest(path, "model.yaml")


def test_missing_model_manifest_names_it(tmp_path: pathlib.Path) -> None:
    path = write_tar(tmp_path / "model.tar", [file("bento.yaml", BENTO_YAML)])

    with pytest.raises(BadRequest, match=r"no 'model\.yaml' at its root; push a model"):
        read_manifest(path, "model.yaml")


def truncated_gzip() -> bytes:
    buffer = io.BytesIO()
    data = random.Random(1).randbytes(64 * 1024)
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for info, payload in [file("./bento.yaml", BENTO_YAML), file("./big.bin", data)]:
            archive.addfile(info, None if payload is None else io.BytesIO(payload))
    return buffer.getvalue()[:-20000]


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(random.Random(0).randbytes(4096), id="random-bytes"),
        pytest.param(b"", id="empty-file"),
        pytest.param(b"bento.yaml: not a tar\n", id="text"),
        pytest.param(truncated_gzip(), id="truncated-gzip"),
    ],
)
def test_non_tar_is_refused(tmp_path: pathlib.Path, content: bytes) -> None:
    path = tmp_path / "upload.tar"
    path.write_bytes(content)

    with pytest.raises(BadRequest, match=r"^The upload is not a tar archive .*the bento again"):
        read_manifest(path, "bento.yaml")
