"""Nothing leaves the building: offline switches, a guard that refuses outbound connections, and
a network namespace with only loopback.

Core, because every entry point that runs a library with a network habit uses it: `soberan build`,
`serve` and `report`. It imports nothing but the standard library, so it can run before anything
else is loaded (importing soberan's stages loads pyarrow, whose threads would stay outside a
namespace entered later).

The switches (`airgap()`) stop libraries from trying. A sovereign build must not phone home. Each
library has its own switch, and most read it once, at import time, so `airgap()` runs before any
stage (and so before torch, transformers, ray or datasets) is imported. A crawl source still
works: it is a connection the config asked for, made by our own crawler, which none of these
switches touch.

The guard (`refuse_outbound()`) catches what a switch misses: a Python audit hook (PEP 578) on
every socket event that can reach another host -- `connect`, `sendto`, `sendmsg`, `getaddrinfo`,
`gethostbyname(_ex)`, `gethostbyaddr`, `getnameinfo`, and the creation of packet sockets -- that
refuses any address outside loopback and any name but `localhost` itself, so a dependency that
phones home fails loudly instead of leaking. The hook runs before the system call, so a refused
lookup or datagram never leaves. It sees what goes through Python's socket module; a C library
that opens its own sockets (NCCL, gRPC core) is outside its reach, which is why the switches come
first, and why `isolate_network()` (a network namespace with only loopback, which no library can
get around) is used where the OS allows it (`soberan build --isolate-network`, and
`soberan serve` by default when it runs as root or user namespaces are open).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys

OFFLINE_ENV = {
    # Hugging Face hub, transformers, datasets: local files only, no implicit token, no telemetry.
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "HF_HUB_DISABLE_UPDATE_CHECK": "1",
    # Ray's usage statistics, vLLM's usage report, Gradio analytics, W&B.
    "RAY_USAGE_STATS_ENABLED": "0",
    "VLLM_NO_USAGE_STATS": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
    "WANDB_MODE": "disabled",
    # The consoledonottrack.com convention, honoured by a growing set of tools.
    "DO_NOT_TRACK": "1",
    "DISABLE_TELEMETRY": "1",
}


def airgap() -> dict[str, str]:
    """Set the offline switches for this process and its children; return what was set.

    Values a person set to something else are overridden on purpose: offline is the default, and
    a build that needs a hub download is a build whose inputs are not all on this machine.
    """
    os.environ.update(OFFLINE_ENV)
    # A library imported before us read its switch already; set the constant it keeps.
    hub = sys.modules.get("huggingface_hub.constants")
    if hub is not None:
        hub.HF_HUB_OFFLINE = True
        hub.HF_HUB_DISABLE_TELEMETRY = True
    return dict(OFFLINE_ENV)


_installed = False


def go_offline() -> None:
    """Set the offline switches before transformers or vLLM is imported in this process (serve)."""
    airgap()
    # OpenTelemetry (FastAPI imports its API): no SDK, no exporter from the environment.
    os.environ.update({"OTEL_SDK_DISABLED": "true", "FASTAPI_OTEL_AUTO_CONFIGURE": "false"})
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def is_local(host) -> bool:
    """Loopback, an unspecified address (0.0.0.0 connects to this host), or the name `localhost`
    exactly. Not `*.localhost`: RFC 6761 says it should resolve to loopback, but a resolver that
    does not special-case it sends the query out, so such a name is refused like any other."""
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if host is None or host == "" or str(host).lower() == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(str(host).split("%")[0])
    except ValueError:
        return False
    if getattr(ip, "ipv4_mapped", None) is not None:  # ::ffff:1.1.1.1 reaches 1.1.1.1
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified


def _is_ip(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    try:
        ipaddress.ip_address(str(host).split("%")[0])
        return True
    except ValueError:
        return False


def _inet(sock) -> bool:
    return sock.family in (socket.AF_INET, socket.AF_INET6)


def _host_of(address):
    return address[0] if isinstance(address, tuple) and address else address


_PACKET = getattr(socket, "AF_PACKET", None)


def _hook(event: str, args: tuple) -> None:
    if not event.startswith("socket."):
        return
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        sock, address = args
        if address is not None and _inet(sock) and not is_local(_host_of(address)):
            what = "connections" if event == "socket.connect" else "datagrams"
            raise PermissionError(f"soberan refuses outbound {what} (to {_host_of(address)})")
    elif event in ("socket.getaddrinfo", "socket.gethostbyname"):
        host = args[0]
        # An IP literal needs no query (and binding to this host's LAN address is legitimate);
        # any name but `localhost` would be a DNS query.
        if not is_local(host) and not _is_ip(host):
            raise PermissionError(f"soberan refuses DNS lookups (of {host})")
    elif event == "socket.gethostbyaddr":
        if not is_local(args[0]):
            raise PermissionError(f"soberan refuses reverse DNS lookups (of {args[0]})")
    elif event == "socket.getnameinfo":
        if not is_local(_host_of(args[0])):
            raise PermissionError(f"soberan refuses reverse DNS lookups (of {_host_of(args[0])})")
    elif event == "socket.__new__":
        _sock, family, type_, _proto = args
        if (_PACKET is not None and family == _PACKET) or (
                family in (socket.AF_INET, socket.AF_INET6) and type_ == socket.SOCK_RAW):
            raise PermissionError("soberan refuses raw and packet sockets")


def _names_first(method):
    """`connect`, `sendto` and `sendmsg` given a host *name* resolve it in C before the audit
    event is raised, so the query would leave before the hook could refuse it. These wrappers
    refuse a name (other than `localhost`) before the call reaches C; the audit hook then checks
    the address itself."""
    name = method.__name__

    def guarded(self, *args):
        # connect(address), sendto(data[, flags], address), sendmsg(buffers, anc, flags, address)
        address = {"sendto": args[-1:], "sendmsg": args[3:4]}.get(name, args[:1])
        host = _host_of(address[0]) if address else None
        if (_inet(self) and isinstance(host, (str, bytes)) and not is_local(host) and not _is_ip(host)):
            raise PermissionError(f"soberan refuses DNS lookups (of {host})")
        return method(self, *args)

    guarded.__name__ = guarded.__qualname__ = method.__name__
    guarded.__doc__ = method.__doc__
    return guarded


def refuse_outbound() -> None:
    """Install the guard for the rest of this process's life (audit hooks cannot be removed)."""
    global _installed
    if not _installed:
        sys.addaudithook(_hook)
        for name in ("connect", "connect_ex", "sendto", "sendmsg"):
            setattr(socket.socket, name, _names_first(getattr(socket.socket, name)))
        _installed = True


# --- real isolation: a network namespace with only loopback ----------------------------------

_CLONE_NEWNET, _CLONE_NEWUSER = 0x40000000, 0x10000000
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _IFF_UP = 0x8913, 0x8914, 0x1


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1


def isolate_network() -> str:
    """Move this process (and every child it starts) into a new network namespace in which only
    loopback is up, so nothing it runs -- Python, a C library with its own sockets, a subprocess
    -- can reach another host, whatever the audit hook sees. Needs root, or unprivileged user
    namespaces (then a user namespace mapping this user to itself comes with it). Should run
    before any thread starts: the kernel moves only the calling thread (and the threads it
    starts later); a user namespace cannot be entered at all by a process with threads.

    Sockets opened before the call stay in the old namespace: `soberan serve` opens its
    listening socket first, so clients still reach it. Returns a description of what is in
    force; raises OSError saying why not.
    """
    import ctypes
    import fcntl
    import struct

    if not sys.platform.startswith("linux"):
        raise OSError("network namespaces are a Linux feature")
    libc = ctypes.CDLL(None, use_errno=True)
    uid, gid, threads = os.geteuid(), os.getegid(), _threads()
    if threads > 1 and uid != 0:
        raise OSError(f"{threads} threads already run, and a user namespace needs a single-threaded process")
    flags = _CLONE_NEWNET if uid == 0 else _CLONE_NEWUSER | _CLONE_NEWNET
    if libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNET{'' if uid == 0 else '|CLONE_NEWUSER'}): "
                           f"{os.strerror(err)} (needs root or unprivileged user namespaces)")
    if uid != 0:  # the same ids inside, so files keep their owners
        for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        req = struct.pack("16sH14s", b"lo", 0, b"")
        flags_now = struct.unpack("16sH14s", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, req))[1]
        fcntl.ioctl(s.fileno(), _SIOCSIFFLAGS, struct.pack("16sH14s", b"lo", flags_now | _IFF_UP, b""))
    notes = ["loopback only"] + ([] if uid == 0 else ["in a user namespace"]) + (
        [f"{threads - 1} thread(s) started earlier stay outside"] if threads > 1 else [])
    return f"network namespace ({'; '.join(notes)})"
