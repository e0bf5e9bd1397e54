"""Response bodies in the exact shapes the bentoml 1.4.38 client parses (bentocloud-api.md §2–3).

Every required key is present, lists are `[]` rather than null, and times are RFC 3339 in UTC.
"""

from typing import Any

from tiffin.core.timefmt import to_wire
from tiffin.store.models import (
    ApiToken,
    Artifact,
    Cluster,
    Deployment,
    DeploymentEvent,
    DeploymentRevision,
    Organization,
    Repository,
    Secret,
    Timestamped,
    User,
)
from tiffin.store.secrets import SecretItem

Json = dict[str, Any]


def resource(row: Timestamped, resource_type: str, name: str, labels: Any = None) -> Json:
    return {
        "uid": row.uid,
        "created_at": to_wire(row.created_at),
        "updated_at": to_wire(row.updated_at),
        "deleted_at": None,
        "name": name,
        "resource_type": resource_type,
        "labels": labels or [],
    }


def page(items: list[Json], start: int, total: int) -> Json:
    return {"start": start, "count": len(items), "total": total, "items": items}


def user(row: User) -> Json:
    return {
        "name": row.name,
        "email": row.email,
        "first_name": row.first_name,
        "last_name": row.last_name,
    }


def organization(row: Organization) -> Json:
    return {**resource(row, "organization", row.name), "description": row.description}


def cluster(row: Cluster) -> Json:
    return {
        **resource(row, "cluster", row.name),
        "description": row.description,
        "organization_name": row.organization.name,
        "creator": user(row.creator),
        "is_first": True,
    }


def repository(row: Repository, latest: Artifact | None, strategy: str | None) -> Json:
    latest_json = artifact(latest, strategy) if latest is not None else None
    return {
        **resource(row, f"{row.kind}_repository", row.name),
        "description": row.description,
        f"latest_{row.kind}": latest_json,
    }


def artifact(row: Artifact, strategy: str | None, **urls: str) -> Json:
    return {
        **resource(row, row.repository.kind, row.version, row.labels),
        "description": row.description,
        "version": row.version,
        "image_build_status": row.image_build_status,
        "upload_status": row.upload_status,
        "upload_finished_reason": row.upload_finished_reason,
        "presigned_upload_url": urls.get("upload", ""),
        "presigned_download_url": urls.get("download", ""),
        "manifest": row.manifest,
        "transmission_strategy": strategy,
        "upload_id": row.upload_id or "",
        "upload_started_at": to_wire(row.upload_started_at),
        "upload_finished_at": to_wire(row.upload_finished_at),
        "build_at": to_wire(row.build_at or row.created_at),
        "size_bytes": row.size_bytes,
    }


def artifact_with_repository(row: Artifact, strategy: str | None) -> Json:
    return {**artifact(row, strategy), "repository": repository(row.repository, None, strategy)}


def api_token(row: ApiToken, expired: bool, secret: str | None = None) -> Json:
    return {
        **resource(row, "api_token", row.name),
        "description": row.description,
        "scopes": list(row.scopes),
        "user": user(row.user),
        "organization": organization(row.user.organization),
        "expired_at": to_wire(row.expired_at),
        "last_used_at": to_wire(row.last_used_at),
        "is_expired": expired,
        "is_api_token": True,
        "is_organization_token": False,
        "is_global_access": False,
        "token": secret,
    }


def secret(row: Secret, items: list[SecretItem]) -> Json:
    """A secret with its keys; values are write-only and never sent back."""
    return {
        **resource(row, "secret", row.name),
        "description": row.description,
        "creator": user(row.creator),
        "content": {
            "type": row.mount_type,
            "items": [{"key": item.key, "sub_path": item.sub_path} for item in items],
            "path": row.path,
            "stage": row.stage,
        },
        "cluster": cluster(row.cluster),
    }


def deployment(row: Deployment, revision: DeploymentRevision | None, url: str, strategy: str | None) -> Json:
    """DeploymentFull (docs/bentocloud-api.md §3.5): the list item plus `urls`, which holds exactly one
    URL."""
    return {
        **resource(row, "deployment", row.name, row.labels),
        "status": row.status,
        "status_message": row.status_message,
        "kube_namespace": "tiffin",
        "creator": user(row.creator),
        "cluster": cluster(row.cluster),
        "latest_revision": _revision(revision, strategy) if revision is not None else None,
        "manifest": {"dev": row.dev, "routing": None},
        "urls": [url],
    }


def _revision(row: DeploymentRevision, strategy: str | None) -> Json:
    target = {
        **resource(row, "deployment_target", "main"),
        "creator": user(row.creator),
        "config": row.config,
        "bento": artifact_with_repository(row.artifact, strategy),
        "kube_resource_uid": "",
        "kube_resource_version": "",
    }
    return {
        **resource(row, "deployment_revision", row.uid),
        "creator": user(row.creator),
        "status": "active",
        "targets": [target],
    }


def revision_summary(row: DeploymentRevision, active: bool) -> Json:
    """One entry of a deployment's history: who made it, when, with which bento and config."""
    return {
        "uid": row.uid,
        "created_at": to_wire(row.created_at),
        "creator": user(row.creator),
        "bento": f"{row.artifact.repository.name}:{row.artifact.version}",
        "config": row.config,
        "active": active,
    }


def event(row: DeploymentEvent) -> Json:
    """One line of a deployment's timeline."""
    return {
        "time": to_wire(row.created_at),
        "kind": row.kind,
        "service": row.service,
        "message": row.message,
    }
