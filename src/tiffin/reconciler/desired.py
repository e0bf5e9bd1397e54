"""Reads the deployments' desired state from the store: their revisions, builds, Services and secrets."""

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
from tiffin.store.deployments import current_revision_uids, revisions_by_uid
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


@dataclass(frozen=True)
class _Revision:
    """What a revision needs that never changes once it exists: derived once, kept while it is current."""

    uid: str
    bento_tag: str
    manifest: dict[str, Any]
    config: dict[str, Any]
    replica_token_ciphertext: str
    build_request: BuildRequest
    settings: tuple[dc.ServiceSettings, ...]


class DesiredReader:
    """Reads every deployment's desired state in a few queries per step, whatever their number:
    current revisions in one query, each revision's settings and build derived once and kept, each
    secret decrypted once per version of its content."""

    def __init__(self, artifacts: ArtifactStore, secrets: SecretStore, catalog: list[InstanceType]) -> None:
        self._artifacts, self._secrets, self._catalog = artifacts, secrets, catalog
        self._revisions: dict[str, _Revision] = {}
        self._decrypted: dict[tuple[int, str], SecretMaterial] = {}  # by (secret id, its ciphertext)

    def read(self, session: Session, rows: list[Deployment]) -> list[Wanted]:
        current = current_revision_uids(session, rows)
        fresh = {
            r.uid: self._derive(r)
            for r in revisions_by_uid(session, set(current.values()) - set(self._revisions))
        }
        known = {**self._revisions, **fresh}
        revisions = {row.id: known[current[row.id]] for row in rows if row.id in current}
        self._revisions = {r.uid: r for r in revisions.values()}  # forget revisions no longer current
        secrets = self._named_secrets(session, list(revisions.values()))
        return [self._wanted(row, revisions.get(row.id), secrets) for row in rows]

    def _derive(self, revision: DeploymentRevision) -> _Revision:
        manifest = dict(revision.artifact.manifest or {})
        config = dict(revision.config)
        return _Revision(
            uid=revision.uid,
            bento_tag=_tag(revision),
            manifest=manifest,
            config=config,
            replica_token_ciphertext=revision.replica_token_ciphertext,
            build_request=_build_request(revision, self._artifacts),
            settings=tuple(dc.service_settings(config, manifest, self._catalog)),
        )

    def _named_secrets(self, session: Session, revisions: list[_Revision]) -> dict[str, SecretMaterial]:
        """Every secret some current revision names, decrypted, by name (one query, if any is named)."""
        names = sorted({str(n) for r in revisions for n in r.config.get("secrets") or []})
        if not names:
            return {}
        found = {}
        for secret in self._secrets.named_in_any_organization(session, names):
            key = (secret.id, secret.items_ciphertext)
            if key not in self._decrypted:
                items = {item.key: item.value for item in self._secrets.items(secret)}
                self._decrypted[key] = SecretMaterial(secret.mount_type, secret.path, items)
            found[f"{secret.organization_id}/{secret.name}"] = self._decrypted[key]
        return found

    def _wanted(
        self, row: Deployment, revision: _Revision | None, secrets: dict[str, SecretMaterial]
    ) -> Wanted:
        names = [str(n) for n in (revision.config.get("secrets") or [])] if revision else []
        return Wanted(
            name=row.name,
            active=row.lifecycle == "active" and revision is not None,
            revision=revision.uid if revision else "",
            bento_tag=revision.bento_tag if revision else "",
            manifest=revision.manifest if revision else {},
            config=revision.config if revision else {},
            port=row.port,
            internal_ports={k: int(v) for k, v in row.internal_ports.items()},
            replica_token_ciphertext=revision.replica_token_ciphertext if revision else "",
            status=DeploymentStatus(row.status),
            status_message=row.status_message,
            build_request=revision.build_request if revision else None,
            secrets=tuple(secrets[key] for n in names if (key := f"{row.organization_id}/{n}") in secrets),
            settings=revision.settings if revision else (),
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
