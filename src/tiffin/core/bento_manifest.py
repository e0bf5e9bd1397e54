"""What Tiffin reads from a bento's manifest (its `bento.yaml`): the Services, the entry Service, and the
defaults the bento gives them.

The manifest was written by bentoml at build time and is stored as the client pushed it; these readers
tolerate what older bentos leave out (a legacy bento has no `services` list, only its own name).
"""

from collections.abc import Mapping
from typing import Any

Manifest = Mapping[str, Any]


def manifest_services(manifest: Manifest) -> list[Manifest]:
    """The bento's Services (a legacy bento without `services` counts as one named after it)."""
    services = manifest.get("services") or []
    if services:
        return [s for s in services if isinstance(s, Mapping) and s.get("name")]
    return [{"name": manifest.get("name") or "service", "config": {}}]


def entry_service(manifest: Manifest) -> str:
    names = [str(s["name"]) for s in manifest_services(manifest)]
    entry = manifest.get("entry_service")
    return str(entry) if entry in names else names[0]


def manifest_env_defaults(manifest: Manifest) -> dict[str, str]:
    """Env vars the bento declares with a default value for run time."""
    return {
        e["name"]: e["value"]
        for e in manifest.get("envs") or []
        if isinstance(e, Mapping) and e.get("value") and e.get("stage", "all") != "build"
    }


def service_setting(service: Manifest, key: str) -> object:
    """One key of a Service's own config, `@bentoml.service(resources=..., traffic=...)`; None if unset."""
    config = service.get("config")
    return config.get(key) if isinstance(config, Mapping) else None
