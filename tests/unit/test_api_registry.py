"""Bento and model registry (docs/bentocloud-api.md §3.2, §3.3, §4.2–4.4): push and pull in proxy, presigned
and multipart modes."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tiffin.core.settings import UploadMode

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import Api

BENTO_KEYS = (
    "description",
    "version",
    "image_build_status",
    "upload_status",
    "upload_finished_reason",
    "presigned_upload_url",
    "presigned_download_url",
)
REPOS = "/api/v1/bento_repositories"
ECHO = f"{REPOS}/echo/bentos"


def one(kind: str, repo: str, version: str) -> str:
    return f"/api/v1/{kind}_repositories/{repo}/{kind}s/{version}"


def assert_nothing_stored(api: Api, repo: str, version: str) -> None:
    assert not (api.settings.artifacts_dir / "bentos" / repo / f"{version}.tar").exists()
    assert list((api.settings.artifacts_dir / "staging").iterdir()) == []
    status = api.ok("GET", one("bento", repo, version))["upload_status"]
    assert status != "success"


@pytest.fixture
def presigned(make_api: Callable[..., Api]) -> Api:
    return make_api(upload_mode=UploadMode.PRESIGNED)


@pytest.fixture
def multipart(make_api: Callable[..., Api]) -> Api:
    return make_api(upload_mode=UploadMode.MULTIPART)


@pytest.mark.parametrize("kind", ["bento", "model"])
def test_proxy_push_then_pull_round_trips(api: Api, kind: str) -> None:
    data = api.push(kind, "echo", "v1")

    pushed = api.ok("GET", one(kind, "echo", "v1"))
    assert pushed["upload_status"] == "success"
    assert pushed["manifest"] == api.manifests[kind]
    assert pushed["labels"] == [{"key": "team", "value": "x"}]
    response = api.call("GET", one(kind, "echo", "v1") + "/download")
    assert response.status_code == 200
    assert response.content == data


def test_proxy_presign_calls_return_empty_urls(api: Api) -> None:
    api.register("bento", "echo", "v1")

    assert api.ok("PATCH", one("bento", "echo", "v1") + "/presign_upload_url")["presigned_upload_url"] == ""
    assert (
        api.ok("PATCH", one("bento", "echo", "v1") + "/presign_download_url")["presigned_download_url"] == ""
    )


def test_repository_and_bento_have_every_required_key(api: Api) -> None:
    api.push("bento", "echo", "v1")

    repo = api.ok("GET", f"{REPOS}/echo")
    bento = api.ok("GET", one("bento", "echo", "v1"))

    api.assert_resource(repo, "bento_repository")
    assert repo["description"] == ""
    assert repo["latest_bento"]["version"] == "v1"
    api.assert_resource(bento, "bento")
    assert all(bento[key] is not None for key in BENTO_KEYS)
    assert bento["name"] == bento["version"] == "v1"
    assert bento["build_at"].startswith("2025-12-31T00:00:00")


def test_version_list_is_newest_first(api: Api) -> None:
    api.push("bento", "echo", "v1")
    api.clock.advance(10)
    body = {"description": "", "version": "v2", "manifest": api.manifests["bento"], "labels": []}
    api.ok("POST", ECHO, json=body)

    page = api.ok("GET", f"{ECHO}?count=1")

    assert (page["start"], page["count"], page["total"]) == (0, 1, 2)
    assert [item["version"] for item in page["items"]] == ["v2"]
    assert api.ok("GET", f"{REPOS}/echo")["latest_bento"]["version"] == "v2"


def test_latest_model_of_unknown_repository_is_an_empty_list(api: Api) -> None:
    """docs/bentocloud-api.md §3.3 M4: the client reads an empty list as "not found" but a 404 as a hard
    error."""
    assert api.ok("GET", "/api/v1/model_repositories/nope/models?start=0&count=10")["items"] == []


def test_label_filter_picks_the_matching_version(api: Api) -> None:
    api.register("model", "m", "v1")
    api.ok("PATCH", one("model", "m", "v1"), json={"labels": [{"key": "stage", "value": "prod"}]})
    api.register_version("model", "m", "v2")
    models = "/api/v1/model_repositories/m/models?start=0&count=10"

    assert [m["version"] for m in api.ok("GET", models)["items"]] == ["v2", "v1"]
    assert [m["version"] for m in api.ok("GET", models + "&q=label:stage=prod")["items"]] == ["v1"]
    assert api.ok("GET", models + "&q=label:stage=dev")["items"] == []
    api.fails(400, "GET", models + "&q=label:stage")


def test_version_list_of_unknown_repository_is_404(api: Api) -> None:
    api.fails(404, "GET", f"{REPOS}/ghost/bentos?count=1")


def test_empty_query_values_are_absent(api: Api) -> None:
    api.push("bento", "echo", "v1")

    page = api.ok("GET", f"{ECHO}?start=&count=&search=")

    assert (page["start"], page["total"]) == (0, 1)
    assert [item["version"] for item in page["items"]] == ["v1"]
    assert api.ok("GET", "/api/v1/bentos?start=&count=&search=")["total"] == 1


@pytest.mark.parametrize("name", ["Bad Name", "-echo", "echo_", "e" * 64, ""])
def test_invalid_repository_name_is_400(api: Api, name: str) -> None:
    api.fails(400, "POST", REPOS, json={"name": name, "description": ""})

    assert api.ok("GET", REPOS)["total"] == 0


@pytest.mark.parametrize("version", ["Bad Version", "v1/x", ".v1", "v" * 64, ""])
def test_invalid_version_is_400(api: Api, version: str) -> None:
    api.ok("POST", REPOS, json={"name": "echo", "description": ""})

    api.fails(400, "POST", ECHO, json={"version": version, "manifest": api.manifests["bento"]})

    assert api.ok("GET", ECHO)["total"] == 0


def test_model_without_manifest_is_400(api: Api) -> None:
    api.ok("POST", "/api/v1/model_repositories", json={"name": "m", "description": ""})

    api.fails(400, "POST", "/api/v1/model_repositories/m/models", json={"version": "v1", "manifest": None})


MALICIOUS: dict[str, Callable[[Api], bytes]] = {
    "dotdot": lambda api: api.make_tar({"./bento.yaml": b"name: echo\nversion: v1\n", "../evil": b"x"}),
    "symlink": lambda api: api.make_tar(
        {"./bento.yaml": b"name: echo\nversion: v1\n"}, symlinks={"./passwd": "/etc/passwd"}
    ),
    "other-version": lambda api: api.artifact_tar("bento", "echo", "v2"),
    "other-name": lambda api: api.artifact_tar("bento", "other", "v1"),
    "no-manifest": lambda api: api.make_tar({"./src/service.py": b"x"}),
    "not-a-tar": lambda api: b"this is not a tar archive" * 100,
}


@pytest.mark.parametrize("case", MALICIOUS)
def test_bad_archive_is_refused_and_not_kept(api: Api, case: str) -> None:
    api.register("bento", "echo", "v1")
    api.ok("PATCH", one("bento", "echo", "v1") + "/start_upload")

    api.fails(400, "PUT", one("bento", "echo", "v1") + "/upload", content=MALICIOUS[case](api))

    assert_nothing_stored(api, "echo", "v1")
    api.fails(404, "GET", one("bento", "echo", "v1") + "/download")


def chunks(data: bytes, size: int = 512) -> Iterator[bytes]:
    for index in range(0, len(data), size):
        yield data[index : index + size]


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
def test_oversized_upload_is_413(make_api: Callable[..., Api], streamed: bool) -> None:
    api = make_api(max_upload_bytes=2048)
    api.register("bento", "echo", "v1")
    data = api.artifact_tar("bento", "echo", "v1", payload=b"x" * 4096)
    assert len(data) > 2048

    api.fails(413, "PUT", one("bento", "echo", "v1") + "/upload", content=chunks(data) if streamed else data)

    assert_nothing_stored(api, "echo", "v1")


def test_declared_oversize_is_refused_before_the_body_is_read(make_api: Callable[..., Api]) -> None:
    api = make_api(max_upload_bytes=64 * 1024)
    api.register("bento", "echo", "v1")
    data = api.artifact_tar("bento", "echo", "v1")
    headers = {"Content-Length": str(64 * 1024 + 1)}  # only the header is over the limit

    api.fails(413, "PUT", one("bento", "echo", "v1") + "/upload", content=data, headers=headers)

    assert_nothing_stored(api, "echo", "v1")


def test_upload_within_limit_is_accepted(make_api: Callable[..., Api]) -> None:
    api = make_api(max_upload_bytes=64 * 1024)

    api.push("bento", "echo", "v1")

    assert api.ok("GET", one("bento", "echo", "v1"))["upload_status"] == "success"


# Presigned single PUT (docs/bentocloud-api.md §4.2 step 8, "single presigned")


def test_presigned_push_and_pull(presigned: Api) -> None:
    api = presigned
    created = api.register("bento", "echo", "v1")
    assert created["transmission_strategy"] is None
    url = api.ok("PATCH", one("bento", "echo", "v1") + "/presign_upload_url")["presigned_upload_url"]
    assert url
    api.ok("PATCH", one("bento", "echo", "v1") + "/start_upload")
    data = api.artifact_tar("bento", "echo", "v1")

    assert api.call("PUT", url, token=None, content=data).status_code == 200
    assert api.ok("GET", one("bento", "echo", "v1"))["upload_status"] == "uploading"
    finished = api.ok(
        "PATCH", one("bento", "echo", "v1") + "/finish_upload", json={"status": "success", "reason": ""}
    )

    assert finished["upload_status"] == "success"
    download = api.ok("PATCH", one("bento", "echo", "v1") + "/presign_download_url")["presigned_download_url"]
    assert download
    response = api.call("GET", download, token=None)
    assert response.status_code == 200
    assert response.content == data


def test_presigned_put_checks_the_archive(presigned: Api) -> None:
    api = presigned
    api.register("bento", "echo", "v1")
    url = api.ok("PATCH", one("bento", "echo", "v1") + "/presign_upload_url")["presigned_upload_url"]

    api.fails(400, "PUT", url, token=None, content=MALICIOUS["dotdot"](api))

    assert_nothing_stored(api, "echo", "v1")


def tamper(url: str) -> str:
    head, ticket = url.rsplit("/", 1)
    middle = len(ticket) // 2
    flipped = "A" if ticket[middle] != "A" else "B"
    return f"{head}/{ticket[:middle]}{flipped}{ticket[middle + 1 :]}"


@pytest.mark.parametrize("action", ["upload", "download"])
def test_tampered_ticket_is_403(presigned: Api, action: str) -> None:
    api = presigned
    api.register("bento", "echo", "v1")
    url = api.ok("PATCH", one("bento", "echo", "v1") + f"/presign_{action}_url")[f"presigned_{action}_url"]
    method = "PUT" if action == "upload" else "GET"

    api.fails(403, method, tamper(url), token=None, content=api.artifact_tar("bento", "echo", "v1"))

    assert_nothing_stored(api, "echo", "v1")


def test_download_ticket_cannot_upload(presigned: Api) -> None:
    api = presigned
    api.register("bento", "echo", "v1")
    url = api.ok("PATCH", one("bento", "echo", "v1") + "/presign_download_url")["presigned_download_url"]

    api.fails(403, "PUT", url, token=None, content=api.artifact_tar("bento", "echo", "v1"))


def test_presigned_url_expires(presigned: Api) -> None:
    api = presigned
    api.register("bento", "echo", "v1")
    url = api.ok("PATCH", one("bento", "echo", "v1") + "/presign_upload_url")["presigned_upload_url"]
    api.clock.advance(api.settings.presign_ttl_seconds + 120)

    api.fails(403, "PUT", url, token=None, content=api.artifact_tar("bento", "echo", "v1"))


# Multipart (docs/bentocloud-api.md §4.2 step 8, "multipart")


def presign_part(api: Api, upload_id: str, number: int) -> str:
    body = {"upload_id": upload_id, "part_number": number}
    url: str = api.ok("PATCH", one("bento", "echo", "v1") + "/presign_multipart_upload_url", json=body)[
        "presigned_upload_url"
    ]
    assert url
    return url


def upload_parts(api: Api, data: bytes) -> tuple[str, list[dict[str, Any]]]:
    """start_upload → start_multipart_upload → presign and PUT two parts; returns upload id and parts."""
    api.ok("PATCH", one("bento", "echo", "v1") + "/start_upload")
    upload_id = api.ok("PATCH", one("bento", "echo", "v1") + "/start_multipart_upload")["upload_id"]
    assert upload_id
    half = len(data) // 2
    parts = []
    for number, piece in enumerate((data[:half], data[half:]), start=1):
        response = api.call("PUT", presign_part(api, upload_id, number), token=None, content=piece)
        assert response.status_code == 200, response.text
        assert response.headers["ETag"] == f'"{hashlib.md5(piece).hexdigest()}"'
        parts.append({"part_number": number, "etag": response.headers["ETag"]})
    return upload_id, parts


def test_multipart_push_and_pull(multipart: Api) -> None:
    api = multipart
    assert api.register("bento", "echo", "v1")["transmission_strategy"] == "presigned_url"
    data = api.artifact_tar("bento", "echo", "v1", payload=b"y" * 5000)
    upload_id, parts = upload_parts(api, data)

    body = {"parts": parts, "upload_id": upload_id}
    api.ok("PATCH", one("bento", "echo", "v1") + "/complete_multipart_upload", json=body)
    finish = {"status": "success", "reason": ""}
    assert api.ok("PATCH", one("bento", "echo", "v1") + "/finish_upload", json=finish)["upload_status"] == (
        "success"
    )

    download = api.ok("PATCH", one("bento", "echo", "v1") + "/presign_download_url")["presigned_download_url"]
    assert api.call("GET", download, token=None).content == data
    assert api.call("GET", one("bento", "echo", "v1") + "/download").content == data
    assert list((api.settings.artifacts_dir / "parts").iterdir()) == []


def test_multipart_wrong_etag_is_400(multipart: Api) -> None:
    api = multipart
    api.register("bento", "echo", "v1")
    upload_id, parts = upload_parts(api, api.artifact_tar("bento", "echo", "v1"))
    parts[1]["etag"] = '"' + "0" * 32 + '"'

    body = {"parts": parts, "upload_id": upload_id}
    api.fails(400, "PATCH", one("bento", "echo", "v1") + "/complete_multipart_upload", json=body)

    assert_nothing_stored(api, "echo", "v1")


def test_multipart_wrong_upload_id_is_400(multipart: Api) -> None:
    api = multipart
    api.register("bento", "echo", "v1")
    api.ok("PATCH", one("bento", "echo", "v1") + "/start_multipart_upload")

    body = {"upload_id": "not-it", "part_number": 1}
    api.fails(400, "PATCH", one("bento", "echo", "v1") + "/presign_multipart_upload_url", json=body)


def test_multipart_checks_the_assembled_archive(multipart: Api) -> None:
    api = multipart
    api.register("bento", "echo", "v1")
    upload_id, parts = upload_parts(api, api.artifact_tar("bento", "echo", "v2"))

    body = {"parts": parts, "upload_id": upload_id}
    api.fails(400, "PATCH", one("bento", "echo", "v1") + "/complete_multipart_upload", json=body)

    assert_nothing_stored(api, "echo", "v1")


def put_part(api: Api, upload_id: str, number: int, piece: bytes) -> int:
    return api.call("PUT", presign_part(api, upload_id, number), token=None, content=piece).status_code


def test_multipart_parts_share_the_size_limit(make_api: Callable[..., Api]) -> None:
    api = make_api(upload_mode=UploadMode.MULTIPART, max_upload_bytes=8000)
    api.register("bento", "echo", "v1")
    data = api.artifact_tar("bento", "echo", "v1")
    half = len(data) // 2
    assert half < 8000 < len(data)
    upload_id = api.ok("PATCH", one("bento", "echo", "v1") + "/start_multipart_upload")["upload_id"]

    assert put_part(api, upload_id, 1, data[:half]) == 200
    assert put_part(api, upload_id, 2, data[half:]) == 413


def test_multipart_retried_part_counts_once(make_api: Callable[..., Api]) -> None:
    api = make_api(upload_mode=UploadMode.MULTIPART, max_upload_bytes=12000)
    api.register("bento", "echo", "v1")
    data = api.artifact_tar("bento", "echo", "v1")
    half = len(data) // 2
    assert len(data) < 12000 < len(data) + half
    upload_id = api.ok("PATCH", one("bento", "echo", "v1") + "/start_multipart_upload")["upload_id"]

    attempts = [(1, data[:half]), (2, data[half:]), (1, data[:half])]  # part 1 sent again, as on a retry

    statuses = [put_part(api, upload_id, number, piece) for number, piece in attempts]

    assert statuses == [200, 200, 200]
    parts = [
        {"part_number": 1, "etag": f'"{hashlib.md5(data[:half]).hexdigest()}"'},
        {"part_number": 2, "etag": f'"{hashlib.md5(data[half:]).hexdigest()}"'},
    ]
    api.ok(
        "PATCH",
        one("bento", "echo", "v1") + "/complete_multipart_upload",
        json={"parts": parts, "upload_id": upload_id},
    )
    assert api.call("GET", one("bento", "echo", "v1") + "/download").content == data


def test_multipart_completion_checks_the_total_size(make_api: Callable[..., Api]) -> None:
    """Parts PUT in parallel each see room left, but together they must not exceed the limit."""
    api = make_api(upload_mode=UploadMode.MULTIPART, max_upload_bytes=6000)
    api.register("bento", "echo", "v1")
    upload_id = api.ok("PATCH", one("bento", "echo", "v1") + "/start_multipart_upload")["upload_id"]
    store = api.client.app.state.context.artifacts  # type: ignore[attr-defined]
    parts = []
    for number in (1, 2):  # as two concurrent PUTs would have left them
        store.part_path(upload_id, number).write_bytes(bytes([number]) * 3500)
        parts.append({"part_number": number, "etag": store.part_etag(upload_id, number)})

    body = {"upload_id": upload_id, "parts": parts}
    api.fails(413, "PATCH", one("bento", "echo", "v1") + "/complete_multipart_upload", json=body)
    assert not list((api.settings.artifacts_dir / "staging").iterdir())
    assert not (api.settings.artifacts_dir / "bentos" / "echo").exists()
