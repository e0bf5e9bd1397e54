"""Authentication and API tokens (docs/bentocloud-api.md §1.2, §1.4, §3.9): who may call what, and how tokens
are kept."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Api

ADMIN_TOKEN = "admin-token"

CLIENT_TIME = "%Y-%m-%d %H:%M:%S.%f"
REGISTRY_CALLS = [
    ("GET", "/api/v1/bento_repositories/echo"),
    ("POST", "/api/v1/bento_repositories"),
    ("GET", "/api/v1/model_repositories/m/models?start=0&count=10"),
    ("PUT", "/api/v1/bento_repositories/echo/bentos/v1/upload"),
]


@pytest.fixture(params=["EST+05", "JST-09"])
def local_zone(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run with the process in a zone other than UTC, either side of it."""
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(
    ("token", "words"), [(None, "no API token"), ("tfn_nope", "not valid"), ("", "no API token")]
)
def test_missing_or_unknown_token_is_401(api: Api, token: str | None, words: str) -> None:
    body = api.fails(401, "GET", "/api/v1/auth/current", token=token)
    assert words in body["message"]


def test_token_expires_at_the_local_time_the_client_sent(api: Api, local_zone: str) -> None:
    expiry = (api.clock.now() + timedelta(seconds=60)).astimezone()  # local wall-clock, as the client
    token = api.new_token(expired_at=expiry.strftime(CLIENT_TIME))["token"]
    assert api.call("GET", "/api/v1/auth/current", token=token).status_code == 200

    api.clock.advance(120)

    assert "expired" in api.fails(401, "GET", "/api/v1/auth/current", token=token)["message"]
    assert api.call("GET", "/api/v1/auth/current").status_code == 200


def test_expiry_in_the_past_is_refused(api: Api) -> None:
    past = (api.clock.now() - timedelta(hours=1)).astimezone().strftime(CLIENT_TIME)
    api.fails(400, "POST", "/api/v1/api_tokens", json={"name": "old", "expired_at": past})


def test_read_organization_scope_reads_but_cannot_push(api: Api) -> None:
    token = api.new_token(scopes=["read_organization"])["token"]
    body = {"name": "echo", "description": ""}

    api.fails(403, "POST", "/api/v1/bento_repositories", json=body, token=token)

    assert api.call("GET", "/api/v1/api_tokens", token=token).status_code == 200
    assert api.call("GET", "/api/v1/bento_repositories/echo").status_code == 404  # nothing was made


@pytest.mark.parametrize(("method", "path"), REGISTRY_CALLS)
def test_protected_endpoint_scope_has_no_registry_access(api: Api, method: str, path: str) -> None:
    token = api.new_token(scopes=["protected_endpoint"])["token"]
    json = {"name": "echo", "description": ""} if method == "POST" else None

    api.fails(403, method, path, token=token, json=json)


@pytest.mark.parametrize("path", ["/api/v1/auth/code", "/api/v1/auth/token?code=abc"])
def test_browser_login_is_501_without_a_token(api: Api, path: str) -> None:
    response = api.call("GET", path, token=None)

    assert response.status_code == 501
    api.assert_one_sentence(response.json())


@pytest.mark.parametrize("token", [ADMIN_TOKEN, None])
def test_unknown_route_is_json_404(api: Api, token: str | None) -> None:
    body = api.fails(404, "GET", "/api/v1/no_such_thing", token=token)
    assert "/api/v1/no_such_thing" in body["message"]


def test_created_token_shape_and_default_scopes(api: Api) -> None:
    created = api.new_token(name="ci", description="for CI")

    api.assert_resource(created, "api_token")
    assert created["scopes"] == ["api", "protected_endpoint"]
    assert created["token"]
    assert created["user"]["name"] == "admin"
    api.assert_resource(created["organization"], "organization")
    assert (created["expired_at"], created["last_used_at"], created["is_expired"]) == (None, None, False)
    listed = api.ok("GET", "/api/v1/api_tokens?start=0&count=100")
    assert listed["total"] == 2
    assert {item["name"] for item in listed["items"]} == {"admin", "ci"}
    assert all(item["token"] is None for item in listed["items"])


@pytest.mark.parametrize(
    ("scopes", "status"),
    [
        (["nope"], 400),
        (["api", "admin"], 400),
        (["protected_endpoint:"], 400),
        (["protected_endpoint:mydep"], 200),
        (["read_cluster", "write_cluster"], 200),
    ],
)
def test_scopes_are_validated(api: Api, scopes: list[str], status: int) -> None:
    body = {"name": "s", "description": None, "scopes": scopes, "expired_at": None}
    response = api.call("POST", "/api/v1/api_tokens", json=body)

    assert response.status_code == status, response.text
    if status == 200:
        assert response.json()["scopes"] == scopes
    else:
        api.assert_one_sentence(response.json())
        assert api.ok("GET", "/api/v1/api_tokens")["total"] == 1


def test_last_used_at_is_set_on_first_use(api: Api) -> None:
    created = api.new_token()
    path = f"/api/v1/api_tokens/{created['uid']}"
    assert api.ok("GET", path)["last_used_at"] is None

    api.clock.advance(5)
    api.ok("GET", "/api/v1/auth/current", token=created["token"])

    assert api.ok("GET", path)["last_used_at"] == "2026-01-01T00:00:05.000000Z"


def test_stored_tokens_are_hashed(api: Api) -> None:
    secret = api.new_token(name="hashed")["token"]

    rows = api.rows("api_tokens")

    assert len(rows) == 2
    dump = repr(rows)
    assert secret not in dump
    assert ADMIN_TOKEN not in dump
    assert hashlib.sha256(secret.encode()).hexdigest() in dump


def test_deleted_token_no_longer_works(api: Api) -> None:
    created = api.new_token()
    api.ok("GET", "/api/v1/auth/current", token=created["token"])

    api.ok("DELETE", f"/api/v1/api_tokens/{created['uid']}")

    api.fails(401, "GET", "/api/v1/auth/current", token=created["token"])
    api.fails(404, "GET", f"/api/v1/api_tokens/{created['uid']}")


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_unknown_token_uid_is_404(api: Api, method: str) -> None:
    api.fails(404, method, "/api/v1/api_tokens/nosuchuid")
