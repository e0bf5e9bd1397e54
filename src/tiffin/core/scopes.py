"""API token scopes and what each one permits.

Scopes are BentoCloud's (`api`, `read_organization`, ...) plus Tiffin's `protected_endpoint` and
`protected_endpoint:<deployment>`, which let a caller invoke protected deployments.
"""

import re
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

from tiffin.core.bento_manifest import manifest_services
from tiffin.core.errors import BadRequest

PROTECTED_ENDPOINT = "protected_endpoint"
_DEPLOYMENT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_PROTECTED_ENDPOINT_PREFIX = PROTECTED_ENDPOINT + ":"


class Scope(StrEnum):
    API = "api"
    READ_ORGANIZATION = "read_organization"
    WRITE_ORGANIZATION = "write_organization"
    READ_CLUSTER = "read_cluster"
    WRITE_CLUSTER = "write_cluster"


class Permission(StrEnum):
    """What a route needs; each is granted by the scopes listed in `_GRANTED_BY`."""

    READ_REGISTRY = "read bentos and models"
    WRITE_REGISTRY = "push bentos and models"
    READ_ORGANIZATION = "read organization settings (API tokens, secrets)"
    WRITE_ORGANIZATION = "change organization settings (API tokens, secrets)"
    READ_CLUSTER = "read clusters, instance types and deployments"
    WRITE_CLUSTER = "change deployments"


_GRANTED_BY: dict[Permission, frozenset[str]] = {
    Permission.READ_REGISTRY: frozenset({Scope.API, Scope.READ_ORGANIZATION, Scope.WRITE_ORGANIZATION}),
    Permission.WRITE_REGISTRY: frozenset({Scope.API, Scope.WRITE_ORGANIZATION}),
    Permission.READ_ORGANIZATION: frozenset({Scope.API, Scope.READ_ORGANIZATION, Scope.WRITE_ORGANIZATION}),
    Permission.WRITE_ORGANIZATION: frozenset({Scope.API, Scope.WRITE_ORGANIZATION}),
    Permission.READ_CLUSTER: frozenset({Scope.API, Scope.READ_CLUSTER, Scope.WRITE_CLUSTER}),
    Permission.WRITE_CLUSTER: frozenset({Scope.API, Scope.WRITE_CLUSTER}),
}

DEFAULT_SCOPES: tuple[str, ...] = (Scope.API.value, PROTECTED_ENDPOINT)


def normalize_scopes(requested: Iterable[str] | None) -> list[str]:
    """Validate requested scopes; none requested means `api` and `protected_endpoint`."""
    scopes = list(dict.fromkeys(requested or ()))
    if not scopes:
        return list(DEFAULT_SCOPES)
    for scope in scopes:
        if not _is_known(scope):
            raise BadRequest(
                f"Unknown scope {scope!r}: use one of {', '.join(_known_names())}, or"
                " protected_endpoint:<deployment-name>."
            )
    return scopes


def grants(scopes: Iterable[str], permission: Permission) -> bool:
    return not _GRANTED_BY[permission].isdisjoint(scopes)


def may_call_deployment(scopes: Iterable[str], deployment: str) -> bool:
    """Whether a token may call the protected deployment named `deployment`."""
    wanted = {PROTECTED_ENDPOINT, _PROTECTED_ENDPOINT_PREFIX + deployment}
    return not wanted.isdisjoint(scopes)


def _is_known(scope: str) -> bool:
    if scope in _known_names():
        return True
    target = scope.removeprefix(_PROTECTED_ENDPOINT_PREFIX)
    return scope.startswith(_PROTECTED_ENDPOINT_PREFIX) and bool(_DEPLOYMENT_NAME.fullmatch(target))


def _known_names() -> list[str]:
    return [*(s.value for s in Scope), PROTECTED_ENDPOINT]


def replica_scopes(deployment: str, manifest: dict[str, Any]) -> list[str]:
    """What replicas may do: look deployments up, call their own Services and the deployments they use."""
    targets = {deployment}
    for service in manifest_services(manifest):
        for dependency in service.get("dependencies") or []:
            if isinstance(dependency, dict) and dependency.get("deployment"):
                targets.add(str(dependency["deployment"]))
    return ["read_cluster", *(f"{PROTECTED_ENDPOINT}:{name}" for name in sorted(targets))]
