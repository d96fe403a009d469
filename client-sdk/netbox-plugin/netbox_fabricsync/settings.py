"""The plugin's settings, PLUGINS_CONFIG["netbox_fabricsync"], checked on every use so that a
wrong value is named in a message (at start and on each page) rather than failing in a call."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from django.conf import settings as django_settings

PLUGIN = "netbox_fabricsync"

DEFAULTS: dict[str, Any] = {
    "address": None,  # host:port of the fabricsync gRPC server
    "tls": False,  # TLS with the system roots; implied by ca_file
    "ca_file": None,  # PEM file of the CA that signed the server's certificate
    "token": None,  # fabricsync API token (or token_file, never both)
    "token_file": None,
    "timeout": 10,  # seconds per call (streams are bounded by stream_timeout)
    "stream_timeout": 300,  # seconds one live-progress connection lasts; the browser reconnects
}

_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):[0-9]{1,5}$")


class ConfigError(Exception):
    """A missing or wrong setting; the message names it and says what is expected."""


@dataclasses.dataclass(frozen=True)
class Settings:
    address: str
    tls: bool
    ca_file: str | None
    token: str | None = dataclasses.field(repr=False)
    timeout: float
    stream_timeout: float


def _name(key: str) -> str:
    return f"PLUGINS_CONFIG['{PLUGIN}']['{key}']"


def _read(path: Any, key: str) -> str:
    if not isinstance(path, str) or not path:
        raise ConfigError(f"{_name(key)} must be a file path")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(f"{_name(key)}: cannot read {path}: {e.strerror}") from None


def _seconds(config: dict[str, Any], key: str) -> float:
    value = config.get(key, DEFAULTS[key])
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{_name(key)} must be a positive number of seconds, not {value!r}")
    return float(value)


def load() -> Settings:
    config = {**DEFAULTS, **django_settings.PLUGINS_CONFIG.get(PLUGIN, {})}
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise ConfigError(f"{_name(unknown[0])} is not a setting of the plugin; known: {', '.join(DEFAULTS)}")
    address = config["address"]
    if not address:
        raise ConfigError(f"{_name('address')} is not set: give the fabricsync gRPC address as host:port")
    if not isinstance(address, str) or not _ADDRESS.match(address):
        raise ConfigError(f"{_name('address')} must be host:port, not {address!r}")
    ca_file = config["ca_file"]
    if ca_file is not None:
        _read(ca_file, "ca_file")  # fail here, naming the setting, not in the TLS handshake
    if not isinstance(config["tls"], bool):
        raise ConfigError(f"{_name('tls')} must be True or False")
    token = config["token"]
    if token is not None and config["token_file"] is not None:
        raise ConfigError(f"{_name('token')} and {_name('token_file')} are both set: keep one")
    if config["token_file"] is not None:
        token = _read(config["token_file"], "token_file").strip()
        if not token:
            raise ConfigError(f"{_name('token_file')}: {config['token_file']} is empty")
    elif token is not None and (not isinstance(token, str) or not token.strip()):
        raise ConfigError(f"{_name('token')} must be a non-empty string")
    return Settings(
        address=address,
        tls=config["tls"] or ca_file is not None,
        ca_file=ca_file,
        token=token.strip() if token else None,
        timeout=_seconds(config, "timeout"),
        stream_timeout=_seconds(config, "stream_timeout"),
    )
