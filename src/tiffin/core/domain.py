"""Deployment URLs by host name under the operator's wildcard DNS name (`TIFFIN_DOMAIN`).

Where `*.apps.example.com` resolves to the gateways (or to a load balancer in front of them), every
deployment is also served at `<name>.apps.example.com` on the gateway's one shared port, as BentoCloud,
Knative and KServe do, and that is the URL the API hands to clients. A bare name means clients reach
the gateway itself, so the URL carries the gateway's port; a URL (`https://apps.example.com`,
`http://apps.example.com:8000`) says what clients use when a proxy sits in front, e.g. one that
terminates TLS. A path is refused: the bentoml client drops it (it joins absolute paths onto the URL).
"""

import re
from dataclasses import dataclass

from tiffin.core.errors import BadRequest

DEFAULT_GATEWAY_PORT = 8080
LONGEST_DEPLOYMENT_NAME = 48  # core.deployment_config's rule: a DNS label of at most 48 characters
_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_EXAMPLE = "apps.example.com, or https://apps.example.com behind a TLS proxy"


@dataclass(frozen=True)
class Domain:
    name: str  # the wildcard DNS name, lower case, no final dot: "apps.example.com"
    scheme: str = "http"  # what clients use
    port: int | None = None  # what clients use; None: the scheme's default

    def host(self, deployment: str) -> str:
        return f"{deployment}.{self.name}"

    def url(self, deployment: str) -> str:
        """The deployment's URL, e.g. `http://shop.apps.example.com` (no path, no final slash)."""
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.scheme}://{self.host(deployment)}{port}"


def parse_domain(raw: str, gateway_port: int) -> Domain:
    """`TIFFIN_DOMAIN`'s value: `name[:port]` (clients reach the gateway: the port defaults to
    `gateway_port`) or `http[s]://name[:port]` (clients reach a proxy: the scheme's port by default)."""
    text = raw.strip().rstrip("/")
    scheme, separator, rest = text.partition("://")
    if not separator:
        scheme, rest = "http", text
    elif scheme.lower() not in _DEFAULT_PORTS:
        raise _bad(raw, "the scheme must be http or https")
    scheme = scheme.lower()
    if "/" in rest or "?" in rest or "#" in rest:
        raise _bad(raw, "a path is not allowed (the bentoml client would drop it)")
    name, colon, port_text = rest.rpartition(":") if ":" in rest else (rest, "", "")
    port = _port(raw, port_text) if colon else (None if separator else gateway_port)
    if port == _DEFAULT_PORTS[scheme]:
        port = None
    return Domain(_name(raw, name), scheme, port)


def _name(raw: str, name: str) -> str:
    name = name.lower().removeprefix("*.").removesuffix(".")
    labels = name.split(".")
    if not name or not all(_LABEL.fullmatch(label) for label in labels):
        raise _bad(raw, "it must be a DNS name of letters, digits, '-' and '.'")
    if len(name) + 1 + LONGEST_DEPLOYMENT_NAME > 253:
        raise _bad(raw, "it is too long for <deployment name>.<domain> to stay within 253 characters")
    return name


def _port(raw: str, text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise _bad(raw, "the port must be a number from 1 to 65535")
    return int(text)


def _bad(raw: str, why: str) -> BadRequest:
    return BadRequest(f"TIFFIN_DOMAIN {raw!r} is not usable: {why}. Example: {_EXAMPLE}.")
