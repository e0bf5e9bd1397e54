"""Turning a create/update request into a checked revision: bento resolved, config validated.

Nothing is stored unless every check passes, so a refused request leaves the store unchanged.
"""

import secrets as pysecrets
from dataclasses import dataclass
from typing import Any

from tiffin.api.bodies import DeploymentBody
from tiffin.api.context import ApiContext
from tiffin.core import deployment_config as dc
from tiffin.core.bento_manifest import manifest_services
from tiffin.core.errors import BadRequest, NotFound
from tiffin.store.db import Session
from tiffin.store.models import Artifact, Organization, User
from tiffin.store.registry import Kind, UploadStatus, find_artifact, find_repository, latest_artifact


@dataclass(frozen=True)
class CheckedRequest:
    artifact: Artifact
    config: dict[str, Any]
    service_names: list[str]


def check_request(session: Session, context: ApiContext, user: User, body: DeploymentBody) -> CheckedRequest:
    artifact = resolve_bento(session, user.organization, body.bento)
    manifest = artifact.manifest or {}
    names = [str(s["name"]) for s in manifest_services(manifest)]
    config = body.config()
    dc.validate(config, names, context.instance_types)
    for index, name in enumerate(body.secrets or []):
        try:
            context.secrets.get(session, user, name)
        except NotFound:
            raise BadRequest(f"`secrets[{index}]`: there is no secret {name!r}; create it first.") from None
    return CheckedRequest(artifact, config, names)


def resolve_bento(session: Session, org: Organization, tag: str) -> Artifact:
    repo_name, _, version = tag.partition(":")
    repo = find_repository(session, org, Kind.BENTO, repo_name)
    artifact = (
        latest_artifact(session, repo) if version in ("", "latest") else find_artifact(session, repo, version)
    )
    if artifact is None or artifact.upload_status != UploadStatus.SUCCESS:
        raise BadRequest(f"The bento {tag!r} has not been pushed completely: run `bentoml push {tag}` first.")
    return artifact


def new_name(body_name: str | None, artifact: Artifact) -> str:
    if body_name:
        return dc.check_deployment_name(body_name)
    return f"{artifact.repository.name[:40].strip('-._')}-{pysecrets.token_hex(3)}".replace("_", "-").replace(
        ".", "-"
    )
