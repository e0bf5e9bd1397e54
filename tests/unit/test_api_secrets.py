"""Organization secrets (docs/bentocloud-api.md §3.8): write-only values, kept encrypted, listed without
paging."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import Api

SECRETS = "/api/v1/org_secrets"
ENV_VALUE = "s3cr3t-env-value"
FILE_VALUE = '{"password": "hunter2-file-value"}'


def env_secret(name: str = "s1", value: str = ENV_VALUE, **content: Any) -> dict[str, Any]:
    return {
        "name": name,
        "content": {
            "type": "env",
            "items": [{"key": "API_KEY", "sub_path": None, "value": value}],
            "path": None,
            "stage": "runtime",
            **content,
        },
        "description": None,
    }


MOUNTFILE = {
    "name": "f1",
    "content": {
        "type": "mountfile",
        "items": [{"key": "cfg.json", "sub_path": None, "value": FILE_VALUE}],
        "path": "$BENTOML_HOME",
        "stage": "all",
    },
    "description": "desc",
}


def assert_secret(api: Api, body: dict[str, Any], name: str) -> None:
    api.assert_resource(body, "secret")
    assert body["name"] == name
    assert isinstance(body["description"], str)
    assert body["creator"]["name"] == "admin"
    assert body["cluster"]["name"] == "default"
    assert all("value" not in item for item in body["content"]["items"])


def test_create_env_and_mountfile_secrets(api: Api) -> None:
    env = api.ok("POST", SECRETS, json=env_secret())
    mounted = api.ok("POST", f"{SECRETS}?cluster=default", json=MOUNTFILE)

    assert_secret(api, env, "s1")
    assert env["content"] == {
        "type": "env",
        "items": [{"key": "API_KEY", "sub_path": None}],
        "path": None,
        "stage": "runtime",
    }
    assert_secret(api, mounted, "f1")
    assert mounted["description"] == "desc"
    assert mounted["content"]["type"] == "mountfile"
    assert mounted["content"]["path"] == "$BENTOML_HOME"
    assert mounted["content"]["stage"] == "all"
    assert [item["key"] for item in mounted["content"]["items"]] == ["cfg.json"]


def test_list_ignores_count(api: Api) -> None:
    for index in range(12):
        api.ok("POST", SECRETS, json=env_secret(f"s{index}"))

    page = api.ok("GET", f"{SECRETS}?count=10&q=&search=&start=0&all=true")

    assert (page["total"], page["count"], len(page["items"])) == (12, 12, 12)
    assert {item["name"] for item in page["items"]} == {f"s{index}" for index in range(12)}
    assert api.ok("GET", f"{SECRETS}?count=10&search=s1")["total"] == 3  # s1, s10, s11


def test_get_patch_delete(api: Api) -> None:
    api.ok("POST", SECRETS, json=env_secret())
    assert_secret(api, api.ok("GET", f"{SECRETS}/s1"), "s1")
    update = env_secret(value="new-value", stage="build")
    update["description"] = "rotated"
    del update["name"]
    api.clock.advance(60)

    patched = api.ok("PATCH", f"{SECRETS}/s1", json=update)

    assert patched["description"] == "rotated"
    assert patched["content"]["stage"] == "build"
    assert patched["updated_at"] == "2026-01-01T00:01:00.000000Z"
    assert api.ok("GET", f"{SECRETS}/s1")["content"]["stage"] == "build"
    api.ok("DELETE", f"{SECRETS}/s1")
    api.fails(404, "GET", f"{SECRETS}/s1")
    api.fails(404, "DELETE", f"{SECRETS}/s1")
    api.fails(404, "PATCH", f"{SECRETS}/s1", json=update)


def test_values_never_leave_or_rest_in_plaintext(api: Api) -> None:
    responses = [
        api.call("POST", SECRETS, json=env_secret()),
        api.call("POST", SECRETS, json=MOUNTFILE),
        api.call("GET", SECRETS),
        api.call("GET", f"{SECRETS}/s1"),
        api.call("GET", f"{SECRETS}/f1"),
        api.call("PATCH", f"{SECRETS}/f1", json={"content": MOUNTFILE["content"], "description": None}),
    ]
    assert all(response.status_code == 200 for response in responses)
    for response in responses:
        assert ENV_VALUE not in response.text
        assert "hunter2" not in response.text

    stored = repr(api.rows("secrets"))

    assert "API_KEY" not in stored
    assert ENV_VALUE not in stored
    assert "hunter2" not in stored


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"type": "file"}, "content.type"),
        ({"stage": "deploy"}, "content.stage"),
        ({"items": [{"key": "1BAD", "sub_path": None, "value": "x"}]}, "environment variable"),
        ({"items": [{"key": "A-B", "sub_path": None, "value": "x"}]}, "environment variable"),
        ({"items": []}, "at least one"),
        ({"items": [{"key": "A", "value": "1"}, {"key": "A", "value": "2"}]}, "only once"),
    ],
)
def test_invalid_content_is_400(api: Api, change: dict[str, Any], words: str) -> None:
    body = api.fails(400, "POST", SECRETS, json=env_secret(**change))

    assert words in body["message"]
    assert api.ok("GET", SECRETS)["total"] == 0


@pytest.mark.parametrize("name", ["Upper", "has space", "-lead", "x" * 64, ""])
def test_invalid_name_is_400(api: Api, name: str) -> None:
    api.fails(400, "POST", SECRETS, json=env_secret(name))

    assert api.ok("GET", SECRETS)["total"] == 0


def test_invalid_patch_is_400_and_changes_nothing(api: Api) -> None:
    api.ok("POST", SECRETS, json=env_secret())

    api.fails(400, "PATCH", f"{SECRETS}/s1", json={"content": {"type": "env", "items": [], "stage": "all"}})

    assert api.ok("GET", f"{SECRETS}/s1")["content"]["stage"] == "runtime"


def test_duplicate_name_is_409(api: Api) -> None:
    api.ok("POST", SECRETS, json=env_secret())

    body = api.fails(409, "POST", SECRETS, json=env_secret())

    assert "s1" in body["message"]
    assert api.ok("GET", SECRETS)["total"] == 1


def test_unknown_cluster_is_404(api: Api) -> None:
    body = api.fails(404, "POST", f"{SECRETS}?cluster=nope", json=env_secret())

    assert "nope" in body["message"]
    assert api.ok("GET", SECRETS)["total"] == 0


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_unknown_cluster_is_404_on_every_call(api: Api, method: str) -> None:
    api.ok("POST", SECRETS, json=env_secret())
    body = {"content": env_secret()["content"], "description": None} if method == "PATCH" else None

    api.fails(404, method, f"{SECRETS}/s1?cluster=nope", json=body)
    api.fails(404, "GET", f"{SECRETS}?cluster=nope")
    assert api.ok("GET", f"{SECRETS}/s1?cluster=")["name"] == "s1"
