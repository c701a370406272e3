"""Nothing leaves the building: offline switches, and a guard that refuses outbound connections.

The switches (the build stages' `airgap()`) stop libraries from trying. The guard catches what
a switch misses: a Python audit hook (PEP 578) on `socket.connect` and `socket.getaddrinfo` that
refuses any address outside loopback, so a dependency that phones home fails loudly instead of
leaking. It sees every connection made through Python's socket module; a C library that opens
its own sockets (NCCL, gRPC core) is outside its reach, which is why the switches come first.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys

_installed = False


def go_offline() -> None:
    """Set the offline switches before transformers or vLLM is imported in this process."""
    from soberan.build.airgap import airgap

    airgap()
    # OpenTelemetry (FastAPI imports its API): no SDK, no exporter from the environment.
    os.environ.update({"OTEL_SDK_DISABLED": "true", "FASTAPI_OTEL_AUTO_CONFIGURE": "false"})
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def is_local(host) -> bool:
    """Loopback, an unspecified address (0.0.0.0 connects to this host), or a `localhost` name."""
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if host is None or host == "" or host == "localhost" or str(host).endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(str(host).split("%")[0])
    except ValueError:
        return False
    return ip.is_loopback or ip.is_unspecified


def _is_ip(host) -> bool:
    try:
        ipaddress.ip_address(str(host).split("%")[0])
        return True
    except ValueError:
        return False


def _hook(event: str, args: tuple) -> None:
    if event == "socket.connect":
        sock, address = args
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not is_local(address[0]):
            raise PermissionError(f"soberan serve refuses outbound connections (to {address[0]})")
    elif event == "socket.getaddrinfo":
        host = args[0]
        # An IP literal needs no lookup; a name other than localhost would be a DNS query.
        if host is not None and not is_local(host) and not _is_ip(host):
            raise PermissionError(f"soberan serve refuses DNS lookups (of {host})")


def refuse_outbound() -> None:
    """Install the guard for the rest of this process's life (audit hooks cannot be removed)."""
    global _installed
    if not _installed:
        sys.addaudithook(_hook)
        _installed = True
