"""Settings read once from the environment (`TIFFIN_*`), so every component sees the same values."""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from tiffin.core.domain import DEFAULT_GATEWAY_PORT, Domain, parse_domain
from tiffin.core.errors import BadRequest

DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024**3
DEFAULT_QUEUE_CAPACITY = 1000  # requests waiting per queued Service; beyond, the gateway answers 429
DEFAULT_AUTOSCALE_PERIOD_S = 15.0  # how often the autoscaler evaluates each Service (BentoCloud's)
DEFAULT_AUTOSCALE_WINDOW_S = 300.0  # the stabilization window of the `stable` behaviours (BentoCloud's)


class UploadMode(StrEnum):
    """How the server asks clients to upload bentos and models (the server decides, docs/bentocloud-api.md
    §4.2)."""

    PROXY = "proxy"
    PRESIGNED = "presigned"
    MULTIPART = "multipart"


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    bootstrap_token: str | None = None
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    upload_mode: UploadMode = UploadMode.PROXY
    presign_ttl_seconds: int = 3600
    deployment_ports: tuple[int, int] = (31000, 31999)
    reconcile_interval_s: float = 0.5
    queue_capacity: int = DEFAULT_QUEUE_CAPACITY
    autoscale_period_s: float = DEFAULT_AUTOSCALE_PERIOD_S
    autoscale_window_s: float = DEFAULT_AUTOSCALE_WINDOW_S
    env_cache: Path | None = None  # where built environments live; None: under `builds_dir`
    domain: Domain | None = None  # with one, deployments are also served by host name (core.domain)
    gateway_port: int = DEFAULT_GATEWAY_PORT  # where the gateway serves them by host name
    api_url: str = "http://127.0.0.1:3000"  # scaled out: where replicas reach `tiffin api`
    gateway_host: str = "127.0.0.1"  # scaled out: where replicas reach a gateway's internal routes
    ray_address: str | None = None  # with one, `tiffin controller` runs replicas on that Ray cluster

    @property
    def artifacts_dir(self) -> Path:
        return self.home / "artifacts"

    @property
    def instance_types_file(self) -> Path:
        return self.home / "instance-types.yaml"

    @property
    def secret_key_file(self) -> Path:
        return self.home / "secret.key"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        home = Path(env.get("TIFFIN_HOME") or Path.home() / ".tiffin").expanduser().resolve()
        ports = _port_range(env.get("TIFFIN_DEPLOYMENT_PORTS") or "31000-31999")
        gateway_port = _gateway_port(env.get("TIFFIN_GATEWAY_PORT") or str(DEFAULT_GATEWAY_PORT))
        return cls(
            home=home,
            database_url=env.get("TIFFIN_DATABASE_URL") or f"sqlite:///{home / 'tiffin.db'}",
            bootstrap_token=env.get("TIFFIN_BOOTSTRAP_TOKEN") or None,
            max_upload_bytes=_positive_int(env, "TIFFIN_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES),
            upload_mode=_upload_mode(env.get("TIFFIN_UPLOAD_MODE") or UploadMode.PROXY.value),
            deployment_ports=ports,
            domain=_domain(env.get("TIFFIN_DOMAIN") or "", gateway_port, ports),
            gateway_port=gateway_port,
            queue_capacity=_positive_int(env, "TIFFIN_QUEUE_CAPACITY", DEFAULT_QUEUE_CAPACITY, "requests"),
            autoscale_period_s=_seconds(env, "TIFFIN_AUTOSCALE_PERIOD_S", DEFAULT_AUTOSCALE_PERIOD_S),
            autoscale_window_s=_seconds(env, "TIFFIN_AUTOSCALE_WINDOW_S", DEFAULT_AUTOSCALE_WINDOW_S),
            env_cache=Path(env["TIFFIN_ENV_CACHE"]).expanduser().resolve()
            if env.get("TIFFIN_ENV_CACHE")
            else None,
            api_url=(env.get("TIFFIN_API_URL") or "http://127.0.0.1:3000").rstrip("/"),
            gateway_host=env.get("TIFFIN_GATEWAY_HOST") or "127.0.0.1",
            ray_address=env.get("TIFFIN_RAY_ADDRESS", "").strip() or None,
        )

    @property
    def builds_dir(self) -> Path:
        return self.home / "builds"

    @property
    def replicas_dir(self) -> Path:
        return self.home / "replicas"


def _positive_int(env: Mapping[str, str], name: str, default: int, unit: str = "bytes") -> int:
    raw = env.get(name)
    if not raw:
        return default
    if not raw.isdigit() or int(raw) <= 0:
        raise BadRequest(f"{name} must be a positive whole number of {unit}, not {raw!r}.")
    return int(raw)


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise BadRequest(f"{name} must be a positive number of seconds, not {raw!r}.")
    return value


def _path(env: Mapping[str, str], name: str) -> Path | None:
    raw = env.get(name)
    return Path(raw).expanduser().resolve() if raw else None


def _upload_mode(raw: str) -> UploadMode:
    try:
        return UploadMode(raw)
    except ValueError:
        choices = ", ".join(m.value for m in UploadMode)
        raise BadRequest(f"TIFFIN_UPLOAD_MODE must be one of {choices}, not {raw!r}.") from None


def _port_range(raw: str) -> tuple[int, int]:
    first, _, last = raw.partition("-")
    if not (first.isdigit() and last.isdigit() and 1024 <= int(first) <= int(last) <= 65535):
        raise BadRequest(f"TIFFIN_DEPLOYMENT_PORTS must look like 31000-31999, not {raw!r}.")
    return int(first), int(last)


def _gateway_port(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise BadRequest(f"TIFFIN_GATEWAY_PORT must be a port number from 1 to 65535, not {raw!r}.")
    return int(raw)


def _domain(raw: str, gateway_port: int, deployment_ports: tuple[int, int]) -> Domain | None:
    """None without TIFFIN_DOMAIN; with one, the gateway's shared port must not be a deployment's."""
    if not raw.strip():
        return None
    first, last = deployment_ports
    if first <= gateway_port <= last:
        raise BadRequest(
            f"TIFFIN_GATEWAY_PORT {gateway_port} is inside TIFFIN_DEPLOYMENT_PORTS {first}-{last}:"
            " choose a port outside that range."
        )
    return parse_domain(raw, gateway_port)
