"""In-process API fixtures: a Tiffin app on a temporary home, driven through FastAPI's TestClient.

Tests reach every helper through the `api` fixture (`api.make_tar`, `api.push`, ...) rather than by
importing this module, which pytest loads under a name that depends on the directory layout.
"""

import io
import re
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, text

from tiffin.core.clock import FakeClock
from tiffin.core.domain import Domain
from tiffin.core.settings import DEFAULT_MAX_UPLOAD_BYTES, Settings, UploadMode
from tiffin.server.wiring import build

ADMIN_TOKEN = "admin-token"
TOKEN_HEADER = "X-YATAI-API-TOKEN"
RESOURCE_KEYS = ("uid", "created_at", "updated_at", "deleted_at", "name", "resource_type", "labels")
MANIFESTS: dict[str, dict[str, Any]] = {
    "bento": {"service": "service:Echo", "bentoml_version": "1.4.38", "size_bytes": 10, "name": "echo"},
    "model": {"module": "", "api_version": "v1", "bentoml_version": "1.4.38", "size_bytes": 0},
}


def make_tar(members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> bytes:
    """An uncompressed tar, in memory, of regular files (and optional symlinks name -> target)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (symlinks or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)
    return buffer.getvalue()


def artifact_tar(kind: str, repo: str, version: str, payload: bytes = b"print('hi')\n") -> bytes:
    """A bento or model archive as the CLI makes it: the manifest at the root, rooted at `./`."""
    manifest = f"name: {repo}\nversion: {version}\n".encode()
    return make_tar({f"./{kind}.yaml": manifest, "./src/service.py": payload})


def assert_one_sentence(body: Any) -> None:
    message = body["message"]
    assert isinstance(message, str)
    assert "\n" not in message
    assert message.endswith("."), message
    assert not re.search(r"[.!?]\s+[A-Z]", message), message


def assert_resource(obj: dict[str, Any], resource_type: str) -> None:
    missing = [key for key in RESOURCE_KEYS if key not in obj]
    assert not missing, missing
    assert obj["uid"] and obj["created_at"] and obj["name"]
    assert obj["resource_type"] == resource_type
    assert isinstance(obj["labels"], list)


@dataclass
class Api:
    """The app under test plus helpers that send the token the way the bentoml client does."""

    client: TestClient
    clock: FakeClock
    settings: Settings
    engines: list[Engine] = field(default_factory=list)

    admin_token = ADMIN_TOKEN
    manifests = MANIFESTS
    make_tar = staticmethod(make_tar)
    artifact_tar = staticmethod(artifact_tar)
    assert_one_sentence = staticmethod(assert_one_sentence)
    assert_resource = staticmethod(assert_resource)

    def call(self, method: str, path: str, token: str | None = ADMIN_TOKEN, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if token is not None:
            headers[TOKEN_HEADER] = token
        return self.client.request(method, path, headers=headers, **kwargs)

    def ok(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.call(method, path, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()

    def fails(self, status: int, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = self.call(method, path, **kwargs)
        assert response.status_code == status, response.text
        body: dict[str, Any] = response.json()
        assert_one_sentence(body)
        return body

    def new_token(self, **fields: Any) -> dict[str, Any]:
        body = {"name": "t", "description": None, "scopes": None, "expired_at": None, **fields}
        created: dict[str, Any] = self.ok("POST", "/api/v1/api_tokens", json=body)
        return created

    def rows(self, table: str) -> list[dict[str, Any]]:
        """Every row of a table, read straight from the database."""
        engine = create_engine(self.settings.database_url)
        self.engines.append(engine)
        with engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(text(f"SELECT * FROM {table}"))]

    def register(self, kind: str, repo: str, version: str, manifest: dict[str, Any] | None = None) -> Any:
        """Steps 2–4 of docs/bentocloud-api.md §4.2: repository and version looked up (404), then created."""
        repos = f"/api/v1/{kind}_repositories"
        assert self.call("GET", f"{repos}/{repo}").status_code == 404
        created = self.ok("POST", repos, json={"name": repo, "description": ""})
        assert created["name"] == repo
        return self.register_version(kind, repo, version, manifest)

    def register_version(
        self, kind: str, repo: str, version: str, manifest: dict[str, Any] | None = None
    ) -> Any:
        """Step 4 of docs/bentocloud-api.md §4.2 in an existing repository: the version is looked up (404),
        then created."""
        repos = f"/api/v1/{kind}_repositories"
        one = f"{repos}/{repo}/{kind}s/{version}"
        assert self.call("GET", one).status_code == 404
        body = {
            "description": "",
            "version": version,
            "manifest": manifest or MANIFESTS[kind],
            "build_at": "2025-12-31 00:00:00.000000",
            "labels": [{"key": "team", "value": "x"}],
        }
        return self.ok("POST", f"{repos}/{repo}/{kind}s", json=body)

    def push(self, kind: str, repo: str, version: str, data: bytes | None = None) -> bytes:
        """The whole proxy push of docs/bentocloud-api.md §4.2; returns the uploaded archive."""
        data = data if data is not None else artifact_tar(kind, repo, version)
        assert self.register(kind, repo, version)["transmission_strategy"] == "proxy"
        one = f"/api/v1/{kind}_repositories/{repo}/{kind}s/{version}"
        assert self.ok("PATCH", f"{one}/start_upload")["upload_status"] == "uploading"
        headers = {"Content-Type": "application/octet-stream"}
        self.ok("PUT", f"{one}/upload", content=data, headers=headers)
        return data


@pytest.fixture
def make_api(tmp_path: Path) -> Iterator[Callable[..., Api]]:
    """Build apps with settings overrides; each gets its own home under tmp_path."""
    made: list[tuple[Api, Any]] = []

    def make(
        upload_mode: UploadMode = UploadMode.PROXY,
        max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
        domain: Domain | None = None,
    ) -> Api:
        home = tmp_path / f"home{len(made)}"
        settings = Settings(
            home=home,
            database_url=f"sqlite:///{home}/t.db",
            bootstrap_token=ADMIN_TOKEN,
            max_upload_bytes=max_upload_bytes,
            upload_mode=upload_mode,
            domain=domain,
        )
        clock = FakeClock()
        tiffin = build(settings, clock=clock)
        api = Api(TestClient(tiffin.app), clock, settings)
        made.append((api, tiffin.db))
        return api

    yield make
    for api, db in made:
        api.client.close()
        for engine in api.engines:
            engine.dispose()
        db.dispose()


@pytest.fixture
def api(make_api: Callable[..., Api]) -> Api:
    return make_api()
