"""Deployments (docs/bentocloud-api.md §3.5, §4.5–4.7, §5): the API in-process, without the runtime, so
nothing runs.

Statuses stay as the API sets them; every refusal must leave nothing behind.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from tiffin.core.deployment_config import check_deployment_name
from tiffin.core.domain import Domain

if TYPE_CHECKING:
    from conftest import Api

DEPLOYMENTS = "/api/v2/deployments"
LIST_QUERY = "?cluster=&all=true&count=&q=&search=&start="
CONFIG_KEYS = ("access_authorization", "envs", "labels", "secrets", "services", "canary")
USER_KEYS = ("name", "email", "first_name", "last_name")
BENTO_KEYS = (
    "description",
    "version",
    "image_build_status",
    "upload_status",
    "upload_finished_reason",
    "presigned_upload_url",
    "presigned_download_url",
    "manifest",
)
DUO_MANIFEST: dict[str, Any] = {
    "name": "duo",
    "service": "service:Front",
    "bentoml_version": "1.4.38",
    "size_bytes": 10,
    "entry_service": "Front",
    "services": [
        {"name": "Front", "dependencies": [{"service": "Model"}], "config": {}},
        {"name": "Model", "dependencies": [], "config": {}},
    ],
}


def service_config(**changes: Any) -> dict[str, Any]:
    """A ServiceConfig as the CLI fills it in flag mode (docs/bentocloud-api.md §5.2)."""
    return {
        "instance_type": None,
        "scaling": {"min_replicas": 1, "max_replicas": 1, "policy": None},
        "envs": None,
        "deployment_strategy": None,
        "extras": None,
        "cold_start_timeout": None,
        "config_overrides": {},
        **changes,
    }


def create_body(name: str | None = "d1", **changes: Any) -> dict[str, Any]:
    """CreateDeployment with every key, unset ones null, as the client sends it (docs/bentocloud-api.md
    §3.5)."""
    return {
        "access_authorization": False,
        "envs": None,
        "labels": None,
        "secrets": None,
        "services": {"Front": service_config()},
        "canary": None,
        "bento": "duo:v1",
        "name": name,
        "dev": False,
        **changes,
    }


def update_body(**changes: Any) -> dict[str, Any]:
    """UpdateDeployment: CreateDeployment without `name` and `dev`."""
    body = create_body(**changes)
    del body["name"], body["dev"]
    return body


RICH_BODY = create_body(
    access_authorization=True,
    envs=[{"name": "A", "value": "1"}, {"name": "FOO", "value": "bar"}],
    labels=[{"key": "team", "value": "ml"}],
    services={
        "Front": service_config(
            instance_type="cpu.2",
            scaling={
                "min_replicas": 0,
                "max_replicas": 5,
                "policy": {
                    "metrics": [{"type": "cpu", "value": 80}],
                    "scale_down_behavior": "disabled",
                    "scale_up_behavior": "fast",
                    "scale_down_stabilization_window": 600,
                    "scale_up_stabilization_window": None,
                },
            },
            envs=[{"name": "SVC_ENV", "value": "s"}],
            deployment_strategy="RampedSlowRollout",
            extras={"bento_function_overrides": None, "bento_request_overrides": None},
            cold_start_timeout=900,
            config_overrides={"traffic": {"timeout": 120}},
        ),
        "Model": service_config(scaling={"min_replicas": None, "max_replicas": 2, "policy": None}),
    },
)


def push_bento(api: Api, repo: str, version: str, manifest: dict[str, Any], *, first: bool = True) -> None:
    """Register the bento with `manifest` and complete a proxy upload, like `api.push`
    (docs/bentocloud-api.md §4.2)."""
    if first:
        api.register("bento", repo, version, manifest=manifest)
    else:
        api.register_version("bento", repo, version, manifest=manifest)
    one = f"/api/v1/bento_repositories/{repo}/bentos/{version}"
    assert api.ok("PATCH", f"{one}/start_upload")["upload_status"] == "uploading"
    headers = {"Content-Type": "application/octet-stream"}
    api.ok("PUT", f"{one}/upload", content=api.artifact_tar("bento", repo, version), headers=headers)
    assert api.ok("GET", one)["upload_status"] == "success"


@pytest.fixture
def duo(api: Api) -> Api:
    """The API with bento duo:v1 (Services Front and Model) pushed completely."""
    push_bento(api, "duo", "v1", DUO_MANIFEST)
    return api


def create(api: Api, body: dict[str, Any] | None = None, query: str = "?cluster=") -> dict[str, Any]:
    created: dict[str, Any] = api.ok("POST", f"{DEPLOYMENTS}{query}", json=body or create_body())
    return created


def listed(api: Api, query: str = LIST_QUERY) -> dict[str, Any]:
    page: dict[str, Any] = api.ok("GET", f"{DEPLOYMENTS}{query}")
    return page


def names(page: dict[str, Any]) -> list[str]:
    return [item["name"] for item in page["items"]]


def replica_tokens(api: Api) -> list[dict[str, Any]]:
    tokens = api.ok("GET", "/api/v1/api_tokens?start=0&count=100")["items"]
    return [t for t in tokens if t["name"].startswith("replica:")]


def assert_config_echoed(deployment: dict[str, Any], body: dict[str, Any]) -> None:
    (target,) = deployment["latest_revision"]["targets"]
    assert target["config"] == {key: body[key] for key in CONFIG_KEYS}


def assert_deployment_full(api: Api, deployment: dict[str, Any]) -> None:
    """Every key docs/bentocloud-api.md §3.5 and Appendix A require, with the types the client needs."""
    api.assert_resource(deployment, "deployment")
    assert isinstance(deployment["status"], str) and deployment["status"]
    assert isinstance(deployment["kube_namespace"], str) and deployment["kube_namespace"]
    assert all(isinstance(deployment["creator"][key], str) for key in USER_KEYS)
    cluster = deployment["cluster"]
    api.assert_resource(cluster, "cluster")
    assert cluster["name"] == "default"
    assert isinstance(cluster["description"], str) and cluster["organization_name"]
    assert all(isinstance(cluster["creator"][key], str) for key in USER_KEYS)
    assert deployment["manifest"] == {"dev": False, "routing": None}
    (url,) = deployment["urls"]
    low, high = api.settings.deployment_ports
    match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)", url)
    assert match and low <= int(match[1]) <= high, url
    revision = deployment["latest_revision"]
    api.assert_resource(revision, "deployment_revision")
    assert "creator" in revision and revision["status"] == "active"
    (target,) = revision["targets"]
    api.assert_resource(target, "deployment_target")
    assert target["name"] == "main" and "creator" in target
    assert isinstance(target["config"], dict) and isinstance(target["config"]["services"], dict)
    bento = target["bento"]
    api.assert_resource(bento, "bento")
    assert all(key in bento for key in BENTO_KEYS)
    assert bento["name"] == bento["version"]
    assert bento["upload_status"] == "success"
    api.assert_resource(bento["repository"], "bento_repository")
    assert "description" in bento["repository"]


# --- create, get, list -----------------------------------------------------------------------------


def test_create_returns_a_full_deployment_echoing_the_config(duo: Api) -> None:
    deployment = create(duo, RICH_BODY)

    assert_deployment_full(duo, deployment)
    assert deployment["name"] == "d1"
    assert deployment["status"] == "deploying"
    assert deployment["labels"] == [{"key": "team", "value": "ml"}]
    assert deployment["creator"]["name"] == "admin"
    assert_config_echoed(deployment, RICH_BODY)
    bento = deployment["latest_revision"]["targets"][0]["bento"]
    assert bento["repository"]["name"] == "duo"
    assert (bento["name"], bento["version"]) == ("v1", "v1")
    assert bento["manifest"] == DUO_MANIFEST


def test_create_with_the_minimal_flag_mode_body(duo: Api) -> None:
    body = create_body()

    deployment = create(duo, body, query="?cluster=default")

    assert_deployment_full(duo, deployment)
    assert_config_echoed(deployment, body)
    assert deployment["labels"] == []


def test_each_deployment_gets_its_own_url(duo: Api) -> None:
    first = create(duo, create_body("d1"))
    second = create(duo, create_body("d2"))

    assert first["urls"] != second["urls"]


@pytest.mark.parametrize(
    ("domain", "url"),
    [
        (Domain("apps.example.test", port=8080), "http://shop.apps.example.test:8080"),
        (Domain("apps.example.test", "https"), "https://shop.apps.example.test"),
    ],
)
def test_with_a_domain_the_url_is_the_deployment_host_name(
    make_api: Callable[..., Api], domain: Domain, url: str
) -> None:
    api = make_api(domain=domain)
    push_bento(api, "duo", "v1", DUO_MANIFEST)

    created = create(api, create_body("shop"))

    assert created["urls"] == [url]
    assert api.ok("GET", f"{DEPLOYMENTS}/shop?cluster=")["urls"] == [url]


def test_a_null_name_gets_a_generated_valid_name(duo: Api) -> None:
    deployment = create(duo, create_body(name=None))

    name = deployment["name"]
    assert name.startswith("duo-")
    assert check_deployment_name(name) == name
    assert duo.ok("GET", f"{DEPLOYMENTS}/{name}?cluster=")["uid"] == deployment["uid"]


def test_get_by_name(duo: Api) -> None:
    created = create(duo, RICH_BODY)

    for query in ("?cluster=", "?cluster=default", ""):
        got = duo.ok("GET", f"{DEPLOYMENTS}/d1{query}")
        assert_deployment_full(duo, got)
        assert got["uid"] == created["uid"]
        assert got["latest_revision"]["uid"] == created["latest_revision"]["uid"]
        assert_config_echoed(got, RICH_BODY)


def test_get_unknown_deployment_is_404(duo: Api) -> None:
    body = duo.fails(404, "GET", f"{DEPLOYMENTS}/nope?cluster=")

    assert "nope" in body["message"]


def test_list_is_newest_first_with_an_exact_total(duo: Api) -> None:
    assert listed(duo) == {"start": 0, "count": 0, "total": 0, "items": []}
    for name, team in (("d1", "ml"), ("d2", "web"), ("d3", "ml")):
        create(duo, create_body(name, labels=[{"key": "team", "value": team}]))

    page = listed(duo)

    assert (page["start"], page["count"], page["total"]) == (0, 3, 3)
    assert names(page) == ["d3", "d2", "d1"]
    for item in page["items"]:
        duo.assert_resource(item, "deployment")
        (target,) = item["latest_revision"]["targets"]
        assert target["bento"]["repository"]["name"] == "duo"
        assert item["cluster"]["name"] == "default"


def test_list_honours_count_and_start(duo: Api) -> None:
    for name in ("d1", "d2", "d3"):
        create(duo, create_body(name))

    two = listed(duo, "?cluster=&all=true&count=2&q=&search=&start=")
    rest = listed(duo, "?cluster=&all=true&count=2&q=&search=&start=2")
    everything = listed(duo, "?cluster=&all=true&count=3&q=&search=&start=")

    assert (names(two), two["count"], two["total"]) == (["d3", "d2"], 2, 3)
    assert (names(rest), rest["count"], rest["total"]) == (["d1"], 1, 3)
    assert names(everything) == ["d3", "d2", "d1"]


def test_list_filters_by_label_and_search(duo: Api) -> None:
    for name, team in (("alpha", "ml"), ("beta", "web"), ("alpha-two", "ml")):
        create(duo, create_body(name, labels=[{"key": "team", "value": team}]))

    ml = listed(duo, "?cluster=&all=true&count=&q=label:team=ml&search=&start=")
    web = listed(duo, "?cluster=&all=true&count=&q=label:team%3Dweb&search=&start=")
    nobody = listed(duo, "?cluster=&all=true&count=&q=label:team=ops&search=&start=")
    searched = listed(duo, "?cluster=&all=true&count=&q=&search=alpha&start=")
    both = listed(duo, "?cluster=&all=true&count=&q=label:team=ml&search=two&start=")

    assert (names(ml), ml["total"]) == (["alpha-two", "alpha"], 2)
    assert (names(web), web["total"]) == (["beta"], 1)
    assert (names(nobody), nobody["total"]) == ([], 0)
    assert (names(searched), searched["total"]) == (["alpha-two", "alpha"], 2)
    assert names(both) == ["alpha-two"]


def test_list_in_a_named_cluster(duo: Api) -> None:
    create(duo)

    assert names(listed(duo, "?cluster=default&all=&search=")) == ["d1"]
    duo.fails(404, "GET", f"{DEPLOYMENTS}?cluster=nope&all=&search=")


# --- update, void_update, terminate, delete ------------------------------------------------------------


def test_update_makes_a_new_revision_and_null_labels_keep_the_labels(duo: Api) -> None:
    created = create(duo, RICH_BODY)
    body = update_body(
        labels=None,
        envs=[{"name": "B", "value": "2"}],
        secrets=None,
        services={"Front": service_config(scaling={"min_replicas": 2, "max_replicas": 4, "policy": None})},
    )

    updated = duo.ok("PUT", f"{DEPLOYMENTS}/d1?cluster=default", json=body)

    assert_deployment_full(duo, updated)
    assert updated["uid"] == created["uid"]
    assert updated["latest_revision"]["uid"] != created["latest_revision"]["uid"]
    assert updated["labels"] == [{"key": "team", "value": "ml"}]
    assert updated["status"] == "deploying"
    assert_config_echoed(updated, {**body, "labels": None})
    assert updated["urls"] == created["urls"]
    got = duo.ok("GET", f"{DEPLOYMENTS}/d1?cluster=default")
    assert got["latest_revision"]["uid"] == updated["latest_revision"]["uid"]
    assert len(duo.rows("deployment_revisions")) == 2


def test_update_with_labels_replaces_them(duo: Api) -> None:
    create(duo, RICH_BODY)

    updated = duo.ok(
        "PUT", f"{DEPLOYMENTS}/d1?cluster=", json=update_body(labels=[{"key": "a", "value": "b"}])
    )

    assert updated["labels"] == [{"key": "a", "value": "b"}]


def test_update_to_another_bento_version(duo: Api) -> None:
    create(duo)
    push_bento(duo, "duo", "v2", DUO_MANIFEST, first=False)

    updated = duo.ok("PUT", f"{DEPLOYMENTS}/d1?cluster=", json=update_body(bento="duo:v2"))

    bento = updated["latest_revision"]["targets"][0]["bento"]
    assert (bento["repository"]["name"], bento["name"], bento["version"]) == ("duo", "v2", "v2")


def test_update_of_an_unknown_deployment_is_404(duo: Api) -> None:
    duo.fails(404, "PUT", f"{DEPLOYMENTS}/nope?cluster=", json=update_body())

    assert duo.rows("deployments") == []


def test_a_refused_update_changes_nothing(duo: Api) -> None:
    created = create(duo, RICH_BODY)
    body = update_body(services={"Front": service_config(instance_type="cpu.huge")}, labels=[])

    message = duo.fails(400, "PUT", f"{DEPLOYMENTS}/d1?cluster=", json=body)["message"]

    assert "services.Front.instance_type" in message
    got = duo.ok("GET", f"{DEPLOYMENTS}/d1?cluster=")
    assert got["latest_revision"]["uid"] == created["latest_revision"]["uid"]
    assert got["labels"] == created["labels"]
    assert_config_echoed(got, RICH_BODY)
    assert len(duo.rows("deployment_revisions")) == 1


def test_void_update_makes_a_new_revision_with_the_same_config(duo: Api) -> None:
    created = create(duo, RICH_BODY)

    redeployed = duo.ok("PUT", f"{DEPLOYMENTS}/d1/void_update?cluster=default")

    assert_deployment_full(duo, redeployed)
    assert redeployed["latest_revision"]["uid"] != created["latest_revision"]["uid"]
    assert_config_echoed(redeployed, RICH_BODY)
    old_bento = created["latest_revision"]["targets"][0]["bento"]
    assert redeployed["latest_revision"]["targets"][0]["bento"]["uid"] == old_bento["uid"]
    assert redeployed["status"] == "deploying"


def test_terminate(duo: Api) -> None:
    create(duo)

    terminated = duo.ok("POST", f"{DEPLOYMENTS}/d1/terminate?cluster=default")

    assert_deployment_full(duo, terminated)
    assert terminated["status"] == "terminating"
    assert duo.ok("GET", f"{DEPLOYMENTS}/d1?cluster=default")["status"] == "terminating"
    assert listed(duo)["total"] == 1


def test_delete_returns_the_full_object_then_it_is_gone(duo: Api) -> None:
    created = create(duo, RICH_BODY)

    deleted = duo.ok("DELETE", f"{DEPLOYMENTS}/d1?cluster=default")

    assert_deployment_full(duo, deleted)
    assert (deleted["name"], deleted["uid"]) == ("d1", created["uid"])
    assert_config_echoed(deleted, RICH_BODY)
    duo.fails(404, "GET", f"{DEPLOYMENTS}/d1?cluster=default")
    duo.fails(404, "DELETE", f"{DEPLOYMENTS}/d1?cluster=default")
    assert listed(duo)["total"] == 0
    assert duo.rows("deployments") == []
    assert duo.rows("deployment_revisions") == []


def test_a_deleted_name_can_be_used_again(duo: Api) -> None:
    create(duo)
    duo.ok("DELETE", f"{DEPLOYMENTS}/d1?cluster=")

    again = create(duo)

    assert again["name"] == "d1"
    assert [t["name"] for t in replica_tokens(duo)] == [f"replica:d1:{again['latest_revision']['uid']}"]


def test_replicas_is_empty_without_a_runtime(duo: Api) -> None:
    create(duo)

    assert duo.ok("GET", f"{DEPLOYMENTS}/d1/replicas?cluster=") == {"items": [], "services": {}}
    duo.fails(404, "GET", f"{DEPLOYMENTS}/nope/replicas?cluster=")


def test_logs_without_a_runtime_are_501(duo: Api) -> None:
    create(duo)

    body = duo.fails(501, "GET", f"{DEPLOYMENTS}/d1/logs?cluster=")

    assert "logs" in body["message"]


# --- the replica token -------------------------------------------------------------------------------


def test_each_revision_gets_a_replica_token_scoped_to_the_deployment_all_deleted_with_it(duo: Api) -> None:
    first = create(duo)["latest_revision"]["uid"]

    (token,) = replica_tokens(duo)

    assert token["name"] == f"replica:d1:{first}"
    assert sorted(token["scopes"]) == ["protected_endpoint:d1", "read_cluster"]
    assert token["token"] is None
    second = duo.ok("PUT", f"{DEPLOYMENTS}/d1?cluster=", json=update_body())["latest_revision"]["uid"]
    third = duo.ok("PUT", f"{DEPLOYMENTS}/d1/void_update")["latest_revision"]["uid"]
    fourth = duo.ok("POST", f"{DEPLOYMENTS}/d1/rollback", json={"revision": first})["latest_revision"]["uid"]
    names = sorted(t["name"] for t in replica_tokens(duo))
    assert names == sorted(f"replica:d1:{uid}" for uid in (first, second, third, fourth)), (
        "old revisions keep theirs until the reconciler sees their replicas gone"
    )
    ciphertexts = [row["replica_token_ciphertext"] for row in duo.rows("deployment_revisions")]
    assert all(ciphertexts) and len(set(ciphertexts)) == 4
    duo.ok("DELETE", f"{DEPLOYMENTS}/d1?cluster=")
    assert replica_tokens(duo) == []
    assert [t["name"] for t in duo.rows("api_tokens")] == ["admin"]


def test_terminate_and_restore_keep_the_current_revision_token(duo: Api) -> None:
    revision = create(duo)["latest_revision"]["uid"]
    duo.ok("POST", f"{DEPLOYMENTS}/d1/terminate")
    duo.ok("POST", f"{DEPLOYMENTS}/d1/restore")

    assert [t["name"] for t in replica_tokens(duo)] == [f"replica:d1:{revision}"]


def test_each_deployment_has_its_own_replica_token(duo: Api) -> None:
    one = create(duo, create_body("d1"))["latest_revision"]["uid"]
    two = create(duo, create_body("d2"))["latest_revision"]["uid"]

    scopes = {t["name"]: sorted(t["scopes"]) for t in replica_tokens(duo)}

    assert scopes == {
        f"replica:d1:{one}": ["protected_endpoint:d1", "read_cluster"],
        f"replica:d2:{two}": ["protected_endpoint:d2", "read_cluster"],
    }
    duo.ok("DELETE", f"{DEPLOYMENTS}/d1?cluster=")
    assert [t["name"] for t in replica_tokens(duo)] == [f"replica:d2:{two}"]


# --- refusals: a 4xx naming the field, nothing created -------------------------------------------------


def snapshot(api: Api) -> tuple[int, int, int, int]:
    return (
        listed(api)["total"],
        len(api.rows("deployments")),
        len(api.rows("deployment_revisions")),
        len(api.rows("api_tokens")),
    )


def assert_refused(
    api: Api, status: int, body: dict[str, Any], words: tuple[str, ...], query: str = "?cluster=", **kw: Any
) -> None:
    before = snapshot(api)

    message = api.fails(status, "POST", f"{DEPLOYMENTS}{query}", json=body, **kw)["message"]

    assert all(word in message for word in words), message
    assert snapshot(api) == before


REFUSED_BODIES: list[tuple[str, int, dict[str, Any], tuple[str, ...]]] = [
    ("unknown repository", 404, create_body(bento="nope:v1"), ("nope",)),
    ("unknown version", 404, create_body(bento="duo:v9"), ("duo:v9",)),
    (
        "unknown service",
        400,
        create_body(services={"Nope": service_config()}),
        ("services.Nope", "Front", "Model"),
    ),
    (
        "unknown instance type",
        400,
        create_body(services={"Front": service_config(instance_type="cpu.small")}),
        ("services.Front.instance_type", "cpu.small"),
    ),
    (
        "min above max",
        400,
        create_body(
            services={"Model": service_config(scaling={"min_replicas": 3, "max_replicas": 2, "policy": None})}
        ),
        ("services.Model.scaling.min_replicas",),
    ),
    (
        "negative min",
        400,
        create_body(
            services={
                "Front": service_config(scaling={"min_replicas": -1, "max_replicas": 2, "policy": None})
            }
        ),
        ("services.Front.scaling.min_replicas",),
    ),
    (
        "max zero",
        400,
        create_body(services={"Front": service_config(scaling={"max_replicas": 0})}),
        ("services.Front.scaling.max_replicas",),
    ),
    (
        "scaling not a mapping",
        400,
        create_body(services={"Front": service_config(scaling=[1, 2])}),
        ("services.Front.scaling",),
    ),
    (
        "unknown strategy",
        400,
        create_body(services={"Front": service_config(deployment_strategy="BlueGreen")}),
        ("services.Front.deployment_strategy",),
    ),
    (
        "bad override resources",
        400,
        create_body(services={"Model": service_config(config_overrides={"resources": {"cpu": "lots"}})}),
        ("services.Model.config_overrides.resources.cpu",),
    ),
    (
        "bad env name",
        400,
        create_body(envs=[{"name": "NOT-VALID", "value": "1"}]),
        ("envs[0].name",),
    ),
    ("bad name", 400, create_body(name="Bad_Name"), ("`name`", "Bad_Name")),
    ("unknown secret", 400, create_body(secrets=["nope"]), ("secrets[0]", "nope")),
    (
        "canary",
        400,
        create_body(canary={"route_type": "random", "route_by": None, "versions": {}}),
        ("canary",),
    ),
    ("services not a mapping", 400, create_body(services=["Front"]), ("services",)),
]


@pytest.mark.parametrize(
    ("status", "body", "words"),
    [case[1:] for case in REFUSED_BODIES],
    ids=[case[0] for case in REFUSED_BODIES],
)
def test_refused_bodies_create_nothing(
    duo: Api, status: int, body: dict[str, Any], words: tuple[str, ...]
) -> None:
    create(duo, create_body("existing"))

    assert_refused(duo, status, copy.deepcopy(body), words)


def test_a_bento_whose_upload_is_not_complete_is_refused(duo: Api) -> None:
    duo.register("bento", "half", "v1", manifest=DUO_MANIFEST)
    one = "/api/v1/bento_repositories/half/bentos/v1"

    assert_refused(duo, 400, create_body(bento="half:v1"), ("half:v1", "bento"))
    duo.ok("PATCH", f"{one}/start_upload")
    assert_refused(duo, 400, create_body(bento="half:v1"), ("half:v1", "bento"))


def test_a_duplicate_name_is_409(duo: Api) -> None:
    first = create(duo)

    assert_refused(duo, 409, create_body(), ("d1",))

    got = duo.ok("GET", f"{DEPLOYMENTS}/d1?cluster=")
    assert got["latest_revision"]["uid"] == first["latest_revision"]["uid"]


def test_a_second_unknown_secret_is_named_by_its_index(duo: Api) -> None:
    secret = {
        "name": "s1",
        "content": {
            "type": "env",
            "items": [{"key": "A", "sub_path": None, "value": "v"}],
            "path": None,
            "stage": "runtime",
        },
        "description": None,
    }
    duo.ok("POST", "/api/v1/org_secrets", json=secret)

    assert_refused(duo, 400, create_body(secrets=["s1", "nope"]), ("secrets[1]", "nope"))
    assert create(duo, create_body(secrets=["s1"]))["name"] == "d1"


def test_an_unknown_cluster_is_404(duo: Api) -> None:
    assert_refused(duo, 404, create_body(), ("nope", "cluster"), query="?cluster=nope")


def test_a_missing_token_is_401(duo: Api) -> None:
    assert_refused(duo, 401, create_body(), ("token",), token=None)
    duo.fails(401, "GET", f"{DEPLOYMENTS}{LIST_QUERY}", token=None)


def test_a_read_cluster_token_may_read_but_not_write(duo: Api) -> None:
    create(duo)
    reader = duo.new_token(name="reader", scopes=["read_cluster"])["token"]

    assert_refused(duo, 403, create_body("d2"), ("reader",), token=reader)
    assert names(duo.ok("GET", f"{DEPLOYMENTS}{LIST_QUERY}", token=reader)) == ["d1"]
    assert duo.ok("GET", f"{DEPLOYMENTS}/d1?cluster=", token=reader)["name"] == "d1"
    duo.fails(403, "PUT", f"{DEPLOYMENTS}/d1?cluster=", json=update_body(), token=reader)
    duo.fails(403, "POST", f"{DEPLOYMENTS}/d1/terminate?cluster=", token=reader)
    duo.fails(403, "DELETE", f"{DEPLOYMENTS}/d1?cluster=", token=reader)
    assert duo.ok("GET", f"{DEPLOYMENTS}/d1?cluster=")["status"] == "deploying"


# Revisions, rollback and restore


def revisions(api: Api, name: str = "d1") -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = api.ok("GET", f"{DEPLOYMENTS}/{name}/revisions")["items"]
    return items


def test_revisions_are_listed_newest_first_with_the_active_one_marked(duo: Api) -> None:
    create(duo)
    duo.ok("PUT", f"{DEPLOYMENTS}/d1", json=update_body(envs=[{"name": "A", "value": "2"}]))
    history = revisions(duo)
    assert [r["active"] for r in history] == [True, False]
    assert (
        history[0]["config"]["envs"] == [{"name": "A", "value": "2"}] and history[1]["config"]["envs"] is None
    )
    assert {r["bento"] for r in history} == {"duo:v1"} and history[0]["creator"]["name"] == "admin"


def test_rollback_makes_a_new_revision_equal_to_the_chosen_one(duo: Api) -> None:
    create(duo)
    duo.ok("PUT", f"{DEPLOYMENTS}/d1", json=update_body(envs=[{"name": "A", "value": "2"}]))
    first = revisions(duo)[-1]
    rolled = duo.ok("POST", f"{DEPLOYMENTS}/d1/rollback", json={"revision": first["uid"]})
    history = revisions(duo)
    assert len(history) == 3 and history[0]["active"] and history[0]["uid"] != first["uid"]
    assert history[0]["config"] == first["config"]
    assert rolled["latest_revision"]["targets"][0]["config"] == first["config"]


def test_rollback_to_an_unknown_revision_is_404_and_changes_nothing(duo: Api) -> None:
    create(duo)
    body = duo.fails(404, "POST", f"{DEPLOYMENTS}/d1/rollback", json={"revision": "nope"})
    assert "nope" in body["message"] and len(revisions(duo)) == 1


def test_restore_brings_a_terminated_deployment_back(duo: Api) -> None:
    create(duo)
    duo.fails(409, "POST", f"{DEPLOYMENTS}/d1/restore")
    duo.ok("POST", f"{DEPLOYMENTS}/d1/terminate")
    restored = duo.ok("POST", f"{DEPLOYMENTS}/d1/restore")
    assert restored["status"] == "deploying" and len(revisions(duo)) == 1
