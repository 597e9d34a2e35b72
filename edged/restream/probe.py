"""Blocking checks of a destination's server without publishing: whether it takes a TCP
connection, and whether its TLS certificate is trusted (rtmps). The sending thread uses them
to watch for a server's return and to say why a TLS connection failed; `edged doctor` too."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

from edged.restream.policy import Address

SYSTEM_CA_FILES = (
    Path("/etc/ssl/certs/ca-certificates.crt"),  # Debian, Ubuntu, Raspberry Pi OS
    Path("/etc/pki/tls/certs/ca-bundle.crt"),  # Fedora, RHEL
)


def system_ca_file() -> str:
    """The system's CA bundle FFmpeg's TLS is given ("" when none is found: its own default)."""
    return next((str(path) for path in SYSTEM_CA_FILES if path.exists()), "")


def answers(address: Address, timeout: float) -> bool:
    """Whether the server takes a TCP connection now."""
    try:
        socket.create_connection((address.host, address.port), timeout).close()
    except OSError:
        return False
    return True


def certificate_problem(address: Address, ca_file: str, timeout: float) -> str | None:
    """Why the server's TLS certificate is not trusted (against `ca_file`, else the system's
    CAs), or None when it is, or when the handshake failed otherwise (not a certificate)."""
    context = ssl.create_default_context(cafile=ca_file or None)
    try:
        with (
            socket.create_connection((address.host, address.port), timeout) as raw,
            context.wrap_socket(raw, server_hostname=address.host),
        ):
            return None
    except ssl.SSLCertVerificationError as error:
        return str(error.verify_message or "certificate verify failed")
    except OSError:
        return None
