"""Neighbour discovery from the kernel ARP table (``/proc/net/arp``)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

ARP_PATH = "/proc/net/arp"
ATF_COM = 0x02  # linux/if_arp.h: completed entry (hardware address valid)
_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
_ZERO_MAC = "00:00:00:00:00:00"


@dataclass(frozen=True, slots=True)
class NetworkEntry:
    mac_addr: str
    ip_addr: str
    device: str


@dataclass(frozen=True, slots=True)
class ScanSpec:
    kind: str  # "none" or "arp" (read an ARP table file)
    path: str | None = None


def parse_arp(text: str) -> list[NetworkEntry]:
    """Complete entries of a ``/proc/net/arp`` table, in file order.

    Columns: IP address, HW type, Flags, HW address, Mask, Device. The header line, incomplete
    entries (Flags without ATF_COM, e.g. 0x0, or an all-zero MAC) and malformed lines are
    skipped. MACs are lower-cased.
    """
    entries: list[NetworkEntry] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 6 or line.startswith("IP address"):
            continue
        ip, _hw_type, flags, mac, _mask, device = fields
        try:
            ipaddress.ip_address(ip)
            flag_bits = int(flags, 16)
        except ValueError:
            continue
        mac = mac.lower()
        if not flag_bits & ATF_COM or not _MAC.match(mac) or mac == _ZERO_MAC:
            continue
        entries.append(NetworkEntry(mac_addr=mac, ip_addr=ip, device=device))
    return entries


def scan_arp(path: str = ARP_PATH) -> list[NetworkEntry]:
    """Read and parse an ARP table file; OSError (e.g. no /proc on macOS) propagates."""
    with open(path, encoding="ascii", errors="replace") as f:
        return parse_arp(f.read())


def parse_scan_spec(text: str) -> ScanSpec:
    """``none`` | ``arp`` | ``file:<path>``; ValueError with a one-line message otherwise."""
    value = text.strip()
    if value == "none":
        return ScanSpec("none")
    if value == "arp":
        return ScanSpec("arp", ARP_PATH)
    if value.startswith("file:"):
        path = value[len("file:") :]
        if not path:
            raise ValueError("scan spec 'file:' needs a path, e.g. file:/tmp/arp")
        return ScanSpec("arp", path)
    raise ValueError(f"bad scan spec {text!r}: expected none, arp or file:<path>")


def scan(spec: ScanSpec) -> list[NetworkEntry]:
    """Run a parsed scan spec: [] for none, else the ARP table at ``spec.path``."""
    if spec.kind == "none" or spec.path is None:
        return []
    return scan_arp(spec.path)
