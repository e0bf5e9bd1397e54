"""TIFFIN_DOMAIN and TIFFIN_GATEWAY_PORT: what deployment URLs look like, and what is refused."""

import pytest

from tiffin.core.domain import DEFAULT_GATEWAY_PORT, Domain, parse_domain
from tiffin.core.errors import BadRequest
from tiffin.core.settings import Settings


@pytest.mark.parametrize(
    ("raw", "gateway_port", "url"),
    [
        ("apps.example.com", 8080, "http://shop.apps.example.com:8080"),  # clients reach the gateway
        ("apps.example.com", 80, "http://shop.apps.example.com"),
        ("apps.example.com:9000", 8080, "http://shop.apps.example.com:9000"),
        ("https://apps.example.com", 8080, "https://shop.apps.example.com"),  # a TLS proxy in front
        ("https://apps.example.com:443/", 8080, "https://shop.apps.example.com"),
        ("http://apps.example.com", 8080, "http://shop.apps.example.com"),  # a load balancer on 80
        ("HTTP://Apps.Example.COM.:8000", 8080, "http://shop.apps.example.com:8000"),
        ("*.apps.example.com", 8080, "http://shop.apps.example.com:8080"),
        ("lvh.me", 8080, "http://shop.lvh.me:8080"),
    ],
)
def test_deployment_urls_under_a_domain(raw: str, gateway_port: int, url: str) -> None:
    domain = parse_domain(raw, gateway_port)

    assert domain.url("shop") == url
    assert domain.host("shop") == url.partition("://")[2].partition(":")[0]


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("ftp://apps.example.com", "scheme must be http or https"),
        ("apps.example.com/shop", "a path is not allowed"),
        ("https://apps.example.com/prefix/", "a path is not allowed"),
        ("apps..example.com", "DNS name"),
        ("-apps.example.com", "DNS name"),
        ("apps_1.example.com", "DNS name"),
        ("apps.example.com:0", "port must be a number"),
        ("apps.example.com:http", "port must be a number"),
        (".".join(["a" * 60] * 4) + ".com", "too long"),
    ],
)
def test_unusable_domains_are_refused_with_a_sentence(raw: str, why: str) -> None:
    with pytest.raises(BadRequest, match=why) as refused:
        parse_domain(raw, DEFAULT_GATEWAY_PORT)

    assert "Example: apps.example.com" in refused.value.message


def test_without_a_domain_only_ports_are_used() -> None:
    settings = Settings.from_env({"TIFFIN_HOME": "/tmp/tiffin-test-home"})

    assert settings.domain is None
    assert settings.gateway_port == DEFAULT_GATEWAY_PORT == 8080


def test_the_domain_and_the_gateway_port_come_from_the_environment() -> None:
    env = {"TIFFIN_HOME": "/tmp/tiffin-test-home", "TIFFIN_DOMAIN": "apps.example.com"}

    assert Settings.from_env({**env, "TIFFIN_GATEWAY_PORT": "8443"}).domain == Domain(
        "apps.example.com", "http", 8443
    )
    assert Settings.from_env(env).domain == Domain("apps.example.com", "http", 8080)


@pytest.mark.parametrize(
    ("env", "why"),
    [
        ({"TIFFIN_GATEWAY_PORT": "31500"}, "inside TIFFIN_DEPLOYMENT_PORTS 31000-31999"),
        ({"TIFFIN_GATEWAY_PORT": "http"}, "TIFFIN_GATEWAY_PORT must be a port number"),
        ({"TIFFIN_GATEWAY_PORT": "70000"}, "TIFFIN_GATEWAY_PORT must be a port number"),
        ({"TIFFIN_DOMAIN": "apps.example.com/x"}, "a path is not allowed"),
    ],
)
def test_bad_gateway_settings_are_refused(env: dict[str, str], why: str) -> None:
    base = {"TIFFIN_HOME": "/tmp/tiffin-test-home", "TIFFIN_DOMAIN": "apps.example.com"}

    with pytest.raises(BadRequest, match=why):
        Settings.from_env({**base, **env})
