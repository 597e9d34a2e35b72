"""The one exception hierarchy of edged; nothing else defines a root."""

from __future__ import annotations


class EdgedError(Exception):
    """Root of every error edged raises on purpose."""


class ConfigError(EdgedError, ValueError):
    """A configuration file or option is malformed or out of range (exit code 2)."""


class StartupError(EdgedError, RuntimeError):
    """The daemon could not start: a port, a directory or a file it needs (exit code 3)."""


class AuthError(EdgedError, PermissionError):
    """A request or a credential was refused."""


class MediaError(EdgedError, RuntimeError):
    """A source cannot be opened or no encoder works; the stream is down with this reason."""
