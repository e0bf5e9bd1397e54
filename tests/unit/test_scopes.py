"""Token scopes: defaults, validation, and which permissions each scope grants."""

import pytest

from tiffin.core.errors import BadRequest
from tiffin.core.scopes import Permission, grants, may_call_deployment, normalize_scopes


def test_no_scopes_means_api_and_protected_endpoint() -> None:
    assert normalize_scopes(None) == ["api", "protected_endpoint"]
    assert normalize_scopes([]) == ["api", "protected_endpoint"]


def test_duplicates_are_folded_in_order() -> None:
    assert normalize_scopes(["read_cluster", "api", "read_cluster"]) == ["read_cluster", "api"]


@pytest.mark.parametrize("scope", ["admin", "protected_endpoint:", "protected_endpoint:Bad Name", "API"])
def test_unknown_scopes_are_refused(scope: str) -> None:
    with pytest.raises(BadRequest, match="Unknown scope"):
        normalize_scopes([scope])


@pytest.mark.parametrize(
    ("scopes", "permission", "granted"),
    [
        (["api"], Permission.WRITE_CLUSTER, True),
        (["read_cluster"], Permission.READ_CLUSTER, True),
        (["read_cluster"], Permission.WRITE_CLUSTER, False),
        (["write_cluster"], Permission.READ_CLUSTER, True),
        (["read_organization"], Permission.READ_REGISTRY, True),
        (["read_organization"], Permission.WRITE_REGISTRY, False),
        (["write_organization"], Permission.WRITE_ORGANIZATION, True),
        (["read_cluster"], Permission.READ_ORGANIZATION, False),
        (["protected_endpoint"], Permission.READ_REGISTRY, False),
    ],
)
def test_permissions(scopes: list[str], permission: Permission, granted: bool) -> None:
    assert grants(scopes, permission) is granted


@pytest.mark.parametrize(
    ("scopes", "deployment", "allowed"),
    [
        (["protected_endpoint"], "any", True),
        (["protected_endpoint:summarizer"], "summarizer", True),
        (["protected_endpoint:summarizer"], "other", False),
        (["api"], "summarizer", False),
    ],
)
def test_calling_protected_deployments(scopes: list[str], deployment: str, allowed: bool) -> None:
    assert may_call_deployment(scopes, deployment) is allowed


def test_a_trailing_newline_is_not_a_valid_deployment_scope() -> None:
    with pytest.raises(BadRequest):
        normalize_scopes(["protected_endpoint:d1\n"])
