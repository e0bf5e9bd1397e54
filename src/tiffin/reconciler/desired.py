"""Reads one deployment's desired state from the store: its revision, build, Services and secrets."""

from dataclasses import dataclass
from typing import Any

from tiffin.artifacts.storage import ArtifactStore
from tiffin.builder import BuildRequest
from tiffin.builder.materialize import build_request
from tiffin.core import deployment_config as dc
from tiffin.core.bento_manifest import entry_service
from tiffin.core.deployment_status import DeploymentStatus
from tiffin.core.instance_types import InstanceType
from tiffin.reconciler.specs import SecretMaterial
from tiffin.store.db import Session
from tiffin.store.deployments import current_revision
from tiffin.store.models import Deployment, DeploymentRevision
from tiffin.store.secrets import SecretStore


@dataclass(frozen=True)
class Wanted:
    """A deployment as the reconciler needs it, detached from the database session."""

    name: str
    active: bool
    revision: str
    bento_tag: str
    manifest: dict[str, Any]
    config: dict[str, Any]
    port: int
    internal_ports: dict[str, int]
    replica_token_ciphertext: str  # the current revision's: every replica started is one of it
    status: DeploymentStatus
    status_message: str
    build_request: BuildRequest | None
    secrets: tuple[SecretMaterial, ...]
    settings: tuple[dc.ServiceSettings, ...]

    @property
    def entry_service(self) -> str:
        return entry_service(self.manifest)

    @property
    def protected(self) -> bool:
        return bool(self.config.get("access_authorization"))


def read_wanted(
    session: Session,
    row: Deployment,
    artifacts: ArtifactStore,
    secrets: SecretStore,
    catalog: list[InstanceType],
) -> Wanted:
    revision = current_revision(session, row)
    manifest = dict(revision.artifact.manifest or {}) if revision else {}
    config = dict(revision.config) if revision else {}
    return Wanted(
        name=row.name,
        active=row.lifecycle == "active" and revision is not None,
        revision=revision.uid if revision else "",
        bento_tag=_tag(revision),
        manifest=manifest,
        config=config,
        port=row.port,
        internal_ports={k: int(v) for k, v in row.internal_ports.items()},
        replica_token_ciphertext=revision.replica_token_ciphertext if revision else "",
        status=DeploymentStatus(row.status),
        status_message=row.status_message,
        build_request=_build_request(revision, artifacts) if revision else None,
        secrets=_secrets(session, row, config, secrets),
        settings=tuple(dc.service_settings(config, manifest, catalog)) if revision else (),
    )


def _tag(revision: DeploymentRevision | None) -> str:
    return f"{revision.artifact.repository.name}:{revision.artifact.version}" if revision else ""


def _build_request(revision: DeploymentRevision, artifacts: ArtifactStore) -> BuildRequest:
    return build_request(artifacts, _tag(revision), model_tags(revision.artifact.manifest or {}))


def model_tags(manifest: dict[str, Any]) -> list[str]:
    """Every model the bento uses, from its top-level list and its Services' lists."""
    tags = [str(t) for t in manifest.get("models") or [] if isinstance(t, str)]
    for service in manifest.get("services") or []:
        for model in (service or {}).get("models") or []:
            tag = model.get("tag") if isinstance(model, dict) else None
            if tag and (model.get("registry") or "bentoml") == "bentoml":
                tags.append(str(tag))
    return sorted({t for t in tags if ":" in t})


def _secrets(
    session: Session, row: Deployment, config: dict[str, Any], store: SecretStore
) -> tuple[SecretMaterial, ...]:
    names = [str(n) for n in config.get("secrets") or []]
    if not names:
        return ()
    rows = store.named(session, row.organization_id, names)
    return tuple(
        SecretMaterial(s.mount_type, s.path, {item.key: item.value for item in store.items(s)}) for s in rows
    )
