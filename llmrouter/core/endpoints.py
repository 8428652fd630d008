"""Where a provider registered at run time may send our API keys: the endpoint allow-list. Pure.

An allow-list entry is a URL prefix, ``scheme://host[:port][/path]``. A URL
matches an entry when

* the schemes are equal (``https`` never matches an ``http`` entry, nor back);
* the hosts are equal, compared lower-case without a trailing dot, or the
  entry's host is ``*.domain`` and the URL's host ends with ``.domain`` (a
  subdomain, at any depth; never ``domain`` itself);
* the ports are equal, an absent port being the scheme's default (80, 443);
* the URL's path starts with the entry's path at a segment boundary
  (``/v1`` matches ``/v1`` and ``/v1/chat``, not ``/v10``);
* and the URL has no user name or password (``https://api.openai.com@evil/``
  is a URL of host ``evil``, and is refused outright).

Internal hosts (SSRF): a host that is ``localhost`` (or ``*.localhost``) or an
IP address in a loopback, private, link-local (169.254/16, the cloud metadata
address), shared, reserved, multicast or unspecified range matches only an
entry that names that same host literally, never a wildcard. IPv4 is read as
the resolver reads it (``127.1``, ``2130706433``, ``0x7f.0.0.1`` are all
127.0.0.1), so no spelling slips past. Host names are not resolved here:
what a keyed provider may reach is what the allow-list names, so keep it to
hosts whose DNS you trust.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class EndpointPrefix:
    """One entry of the allow-list, parsed."""

    scheme: str
    host: str  # lower-case; "*.domain" for every subdomain of domain
    port: int
    path: str  # no trailing "/"; "" for any path

    @classmethod
    def parse(cls, text: str) -> EndpointPrefix:
        """An entry such as ``https://api.openai.com/v1`` or ``https://*.example.com``; ValueError if it is not one."""
        parts = _split(text)
        if parts is None:
            raise ValueError(f"{text!r} is not an http(s) URL prefix such as https://api.openai.com/v1")
        scheme, host, port, path = parts
        if host.startswith("*.") and (len(host) < 3 or "*" in host[2:]):
            raise ValueError(f"{text!r}: a wildcard host is written *.domain")
        if "*" in host[1:] or (host.startswith("*") and not host.startswith("*.")):
            raise ValueError(f"{text!r}: a wildcard host is written *.domain")
        return cls(scheme, host, port, path.rstrip("/"))

    def matches(self, url: str) -> bool:
        """Whether ``url`` lies under this prefix (the rules of this module's docstring)."""
        parts = _split(url)
        if parts is None:
            return False
        scheme, host, port, path = parts
        if scheme != self.scheme or port != self.port or not self._host_matches(host):
            return False
        return path == self.path or path.startswith(self.path + "/") or not self.path

    def _host_matches(self, host: str) -> bool:
        if host == self.host:
            return True
        if self.host.startswith("*.") and not is_internal_host(host):
            return host.endswith(self.host[1:])
        return False


def allowed(url: str, prefixes: tuple[EndpointPrefix, ...]) -> bool:
    """Whether ``url`` matches at least one of ``prefixes``."""
    return any(prefix.matches(url) for prefix in prefixes)


def host_of(url: str) -> str | None:
    """The normalised host of an http(s) URL (lower-case, no trailing dot, IPv4 in dotted form), or None."""
    parts = _split(url)
    return None if parts is None else parts[1]


def is_internal_host(host: str) -> bool:
    """``localhost`` or an address no public service has: loopback, private, link-local, reserved..."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    address = _ip(host)
    if address is None:
        return False
    return not address.is_global or address.is_multicast


def is_link_local_host(host: str) -> bool:
    """An address of the local link (169.254/16 with the cloud metadata service, fe80::/10)."""
    address = _ip(host)
    return address is not None and (address.is_link_local or address.is_unspecified)


def _split(url: object) -> tuple[str, str, int, str] | None:
    """(scheme, host, port, path) of an http(s) URL without user info, or None when it is not one."""
    if not isinstance(url, str) or any(c.isspace() for c in url) or "\\" in url:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc:
        return None
    host = parts.hostname.lower().rstrip(".")
    address = _ip(host)
    if address is not None:
        host = str(address)
    return scheme, host, port if port is not None else DEFAULT_PORTS[scheme], parts.path


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host names when it is an IP literal, IPv4 in any spelling the C resolver accepts."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    return _loose_ipv4(host)


def _loose_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """``inet_aton``'s forms: 1 to 4 parts, each decimal, octal (leading 0) or hex (0x); the last part fills
    the remaining bytes (``127.1`` = 127.0.0.1, ``2130706433`` = 127.0.0.1)."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers = []
    for part in parts:
        try:
            if part.lower().startswith("0x"):
                numbers.append(int(part[2:], 16))
            elif len(part) > 1 and part.startswith("0"):
                numbers.append(int(part[1:], 8))
            else:
                numbers.append(int(part, 10) if part.isdigit() else -1)
        except ValueError:
            return None
    if any(n < 0 for n in numbers):
        return None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (4 - len(head)):
        return None
    value = 0
    for n in head:
        value = value * 256 + n
    value = value * 256 ** (4 - len(head)) + last
    return ipaddress.IPv4Address(value)
