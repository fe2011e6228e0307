"""Network addresses for the source policy: what a host name resolves to, this machine's own addresses, cloud
metadata addresses, multicast groups."""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import re
import socket
from pathlib import Path

from ..errors import SourceError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata services outside link-local (169.254.169.254 is link-local): Alibaba, AWS over IPv6, Oracle.
METADATA = {ipaddress.ip_address(a) for a in ("100.100.100.200", "fd00:ec2::254", "192.0.0.192")}


def own_addresses() -> set[Address]:
    """This machine's addresses on every interface (Linux: the kernel's tables), so that a service listening on
    all of them is not reachable as a camera at the LAN address."""
    found: set = set()
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            found.add(ipaddress.ip_address(":".join(re.findall("....", line.split()[0]))))
    with contextlib.suppress(OSError, ValueError):
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
        for before, line in itertools.pairwise(lines):  # "|-- ADDRESS" then "/32 host LOCAL"
            if "/32 host LOCAL" in line and (match := re.search(r"(\d+\.\d+\.\d+\.\d+)", before)):
                found.add(ipaddress.ip_address(match.group(1)))
    with contextlib.suppress(OSError, ValueError):
        found.update(ipaddress.ip_address(i[4][0]) for i in socket.getaddrinfo(socket.gethostname(), None))
    return found


def is_multicast(host: str) -> bool:
    """Whether ``host`` is a multicast group's address (a literal, not a name)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_multicast
    except ValueError:
        return False


def resolve(host: str, shown: str) -> list[Address]:
    """Every address ``host`` stands for now (IPv4-mapped IPv6 as IPv4); :class:`SourceError` naming ``shown``
    when it does not resolve."""
    try:
        found = [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise SourceError(f"{shown}: cannot resolve the host {host!r}") from None
        found = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    return [a.ipv4_mapped if a.version == 6 and a.ipv4_mapped else a for a in found]  # ::ffff:127.0.0.1 is loopback
