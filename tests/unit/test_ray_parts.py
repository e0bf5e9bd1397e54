"""The parts of the Ray backend that need no Ray: resources as actor options, why an actor waits, the
token nodes download with, and the node materializer's downloads (through a mock transport)."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from tiffin.backends.protocol import BentoRef, Resources
from tiffin.backends.ray.resources import (
    NodeOffer,
    Placed,
    actor_options,
    gpu_type_resource,
    required,
    spread_node,
    why_pending,
)
from tiffin.builder.builder import Builder
from tiffin.builder.fetch import TOKEN_HEADER, ApiMaterializer
from tiffin.core.settings import Settings
from tiffin.store.db import Database, migrate
from tiffin.store.identity import bootstrap
from tiffin.store.models import ApiToken
from tiffin.store.node_tokens import NODE_TOKEN_NAME, node_token
from tiffin.store.tokens import authenticate

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
GiB = 1024**3


def test_resources_become_actor_options() -> None:
    assert actor_options(Resources()) == {"num_cpus": 0.01}, "a sliver: Ray then honours preferences"
    assert actor_options(Resources(cpu_millicores=500, memory_bytes=2 * GiB)) == {
        "num_cpus": 0.5,
        "memory": 2 * GiB,
    }
    assert actor_options(Resources(gpus=2, gpu_type="NVIDIA A100-SXM4-80GB")) == {
        "num_cpus": 0.01,
        "num_gpus": 2,
        "resources": {"gpu-type:nvidia-tesla-a100": 2},
    }
    assert gpu_type_resource("nvidia-a100") == gpu_type_resource("nvidia-tesla-a100")
    assert actor_options(Resources(gpus=1)) == {"num_cpus": 0.01, "num_gpus": 1}


def test_why_an_actor_is_not_placed() -> None:
    nodes = [
        NodeOffer("10.0.0.1", {"CPU": 4.0, "memory": 8.0 * GiB, "GPU": 1.0, "gpu-type:nvidia-l4": 1.0}),
        NodeOffer("10.0.0.2", {"CPU": 1.0, "memory": 2.0 * GiB}),
    ]
    t4 = required(Resources(cpu_millicores=500, gpus=1, gpu_type="nvidia-tesla-t4"))
    assert why_pending(t4, nodes) == (
        "needs 1 nvidia-tesla-t4 GPU; none of the 2 alive Ray nodes offers them (a node advertises them"
        """ with `ray start --resources '{"gpu-type:nvidia-tesla-t4": N}'`)"""
    )
    big = required(Resources(cpu_millicores=8000))
    assert why_pending(big, nodes) == "needs 8 CPU; none of the 2 alive Ray nodes has that much"
    assert why_pending(required(Resources(cpu_millicores=2000)), nodes) == (
        "waiting for a Ray node with 2 CPU free"
    )
    apart = required(Resources(cpu_millicores=2000, memory_bytes=8 * GiB, gpus=1))
    nodes[0] = NodeOffer("10.0.0.1", {"CPU": 1.0, "memory": 8.0 * GiB, "GPU": 1.0})
    nodes[1] = NodeOffer("10.0.0.2", {"CPU": 4.0, "memory": 2.0 * GiB})
    assert why_pending(apart, nodes).startswith("no single Ray node has 2 CPU, 8 GiB of memory, 1 GPU")
    assert why_pending(big, []) == "no Ray node is alive"


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path / 't.db'}").database_url)
    migrate(database.engine)
    with database.session() as session:
        bootstrap(session, NOW, "admin-secret")
    return database


def test_the_node_token_is_made_once_reused_and_replaced_when_gone(db: Database) -> None:
    with db.session() as session:
        first = node_token(session, None, NOW)
    with db.session() as session:
        assert node_token(session, first, NOW) == first
        token = authenticate(session, first, NOW)
        assert (token.name, token.scopes) == (NODE_TOKEN_NAME, ["read_organization"])
        session.delete(token)  # a user revoked it
    with db.session() as session:
        second = node_token(session, first, NOW)
        assert second != first
        token = authenticate(session, second, NOW)
        token.expired_at = NOW - timedelta(seconds=1)
    with db.session() as session:
        third = node_token(session, second, NOW)
        names = session.scalars(select(ApiToken.name).where(ApiToken.name == NODE_TOKEN_NAME)).all()
    assert third not in (first, second) and names == [NODE_TOKEN_NAME]


def test_a_controller_with_a_home_of_its_own_leaves_the_others_token_valid(db: Database) -> None:
    with db.session() as session:
        first = node_token(session, None, NOW)
    with db.session() as session:
        other = node_token(session, None, NOW)  # another home: it knows no secret
    with db.session() as session:
        assert other != first
        assert authenticate(session, first, NOW).name == NODE_TOKEN_NAME
        assert node_token(session, first, NOW) == first


def test_the_node_materializer_downloads_archives_with_its_token(tmp_path: Path) -> None:
    asked: list[tuple[str, str | None]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append((request.url.path, request.headers.get(TOKEN_HEADER)))
        if "missing" in request.url.path:
            return httpx.Response(404, json={"message": "No bento missing:1.", "code": 404})
        return httpx.Response(200, content=b"archive bytes")

    fetch = ApiMaterializer("http://api.internal:3000/", "node-secret", transport=httpx.MockTransport(answer))
    fetch.download("bento", "echo:v1", tmp_path / "bento.tar")
    fetch.download("model", "weights:v2", tmp_path / "model.tar")

    assert (tmp_path / "bento.tar").read_bytes() == b"archive bytes"
    assert asked == [
        ("/api/v1/bento_repositories/echo/bentos/v1/download", "node-secret"),
        ("/api/v1/model_repositories/weights/models/v2/download", "node-secret"),
    ]
    with pytest.raises(OSError, match=r"could not download the bento missing:1 .*: HTTP 404: No bento"):
        fetch.download("bento", "missing:1", tmp_path / "missing.tar")
    assert "node-secret" not in repr(fetch)


def test_a_bento_unpacked_on_the_node_is_not_downloaded_again(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"unexpected download of {request.url}")

    fetch = ApiMaterializer("http://api.internal:3000", "s", transport=httpx.MockTransport(refuse))
    builder = Builder(tmp_path / "builds")
    builder.bento_dir("echo:v1").mkdir(parents=True)

    request = fetch._request(builder, BentoRef("echo:v1", ("weights:v2",)), tmp_path / "fetch")

    assert request.bento_tag == "echo:v1" and set(request.model_archives) == {"weights:v2"}


def test_an_actor_that_asks_for_nothing_waits_for_a_node_with_cpus() -> None:
    assert required(Resources()) == {"CPU": 0.01}
    assert why_pending(required(Resources()), [NodeOffer("10.0.0.1", {"CPU": 1.0})]) == (
        "waiting for a Ray node with 0.01 CPU free"
    )
    assert why_pending(required(Resources()), [NodeOffer("10.0.0.1", {"memory": 1.0})]) == (
        "needs 0.01 CPU; the one alive Ray node does not have that much"
    )


def test_a_services_replicas_prefer_the_nodes_with_fewest_of_them() -> None:
    head = NodeOffer("10.0.0.1", {"memory": 8.0 * GiB}, "head")
    a, b = (NodeOffer(f"10.0.0.{i}", {"CPU": 2.0, "memory": 8.0 * GiB}, f"node-{i}") for i in (2, 3))
    nodes, one_cpu = [head, a, b], {"CPU": 1.0}

    assert spread_node(one_cpu, nodes, []) in ("node-2", "node-3")
    assert spread_node(one_cpu, nodes, [Placed("node-2", True)]) == "node-3"
    assert spread_node(one_cpu, nodes, [Placed("node-2", True), Placed("node-3", False)]) == "node-3"
    assert spread_node(one_cpu, nodes, [Placed("node-2", False), Placed("node-3", True)]) == "node-2"
    nothing = required(Resources())
    assert spread_node(nothing, nodes, [Placed("node-2", True)]) == "node-3", "asks for nothing: not the head"
    assert spread_node(nothing, [head], []) is None, "a node without CPUs is not for replicas"
    assert spread_node({"GPU": 1.0}, nodes, []) is None, "no node is big enough: Ray explains"
    assert spread_node(one_cpu, [NodeOffer("10.0.0.9", {"CPU": 2.0})], []) is None, "no id known"
