"""What a replica of one Service is started with: env (platform, secrets, envs), dependency URLs,
resources, mounted secret files and the bentoml config overrides.

Precedence of env vars, lowest first: env-type secrets, the bento's own defaults, deployment-wide
`envs`, per-Service `envs`; Tiffin's platform variables always win.
"""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tiffin.backends.protocol import BentoRef, MountedFile, ReplicaSpec, Resources
from tiffin.core.bento_manifest import manifest_services
from tiffin.core.deployment_config import ServiceSettings
from tiffin.reconciler.admission import replica_overrides

NAMESPACE = "tiffin"
_HOME_PREFIX = "$BENTOML_HOME"


@dataclass(frozen=True)
class SecretMaterial:
    """A decrypted secret: env vars, or files under `path`."""

    mount_type: str
    path: str | None
    items: Mapping[str, str]


@dataclass(frozen=True)
class RuntimeContext:
    """Per-deployment facts every replica of it needs."""

    deployment: str
    revision: str
    bento: BentoRef
    manifest: Mapping[str, Any]
    internal_ports: Mapping[str, int]
    api_endpoint: str
    replica_token: str
    secrets: Sequence[SecretMaterial] = ()
    gateway_host: str = "127.0.0.1"  # where replicas reach a gateway's internal routes


def replica_template(runtime: RuntimeContext, settings: ServiceSettings) -> ReplicaSpec:
    """A spec with an empty `replica_id`; the reconciler names each replica it starts."""
    return ReplicaSpec(
        replica_id="",
        deployment=runtime.deployment,
        service=settings.name,
        revision=runtime.revision,
        bento=runtime.bento,
        env=_env(runtime, settings),
        depends=_depends(runtime, settings.name),
        resources=Resources(settings.cpu_millicores, settings.memory_bytes, settings.gpus, settings.gpu_type),
        files=_files(runtime.secrets),
    )


def _env(runtime: RuntimeContext, settings: ServiceSettings) -> dict[str, str]:
    env: dict[str, str] = {}
    for secret in runtime.secrets:
        if secret.mount_type == "env":
            env.update(secret.items)
    env.update(settings.envs)
    env.update(
        BENTO_CLOUD_API_ENDPOINT=runtime.api_endpoint,
        BENTO_CLOUD_API_KEY=runtime.replica_token,
        YATAI_BENTO_DEPLOYMENT_NAME=runtime.deployment,
        YATAI_BENTO_DEPLOYMENT_NAMESPACE=NAMESPACE,
    )
    overrides = replica_overrides(settings)
    if overrides:
        env["BENTOML_CONFIG_OVERRIDES"] = json.dumps({"services": {settings.name: overrides}})
    return env


def _depends(runtime: RuntimeContext, service: str) -> dict[str, str]:
    """Each Service this one depends on, at its internal route (never a single replica)."""
    names = _dependency_names(runtime.manifest, service)
    return {
        name: f"http://{runtime.gateway_host}:{runtime.internal_ports[name]}"
        for name in names
        if name in runtime.internal_ports
    }


def _dependency_names(manifest: Mapping[str, Any], service: str) -> list[str]:
    for entry in manifest_services(manifest):
        if entry["name"] == service:
            return [
                str(d["service"])
                for d in entry.get("dependencies") or []
                if isinstance(d, Mapping) and d.get("service")
            ]
    return []


def _files(secrets: Sequence[SecretMaterial]) -> tuple[MountedFile, ...]:
    return tuple(
        MountedFile(_file_path(secret.path, key), value)
        for secret in secrets
        if secret.mount_type == "mountfile"
        for key, value in secret.items.items()
    )


def _file_path(folder: str | None, key: str) -> str:
    """`$BENTOML_HOME/...` and relative folders land in the replica's own BENTOML_HOME."""
    folder = (folder or _HOME_PREFIX).strip()
    if folder.startswith(_HOME_PREFIX):
        folder = folder.removeprefix(_HOME_PREFIX).lstrip("/")
    return str(Path(folder) / key) if folder else key
