"""The project's error types. Each message is one line naming the setting or file and the fix;
the command line prints it as ``flossrepro: error: <message>`` and exits 2."""
from __future__ import annotations


class FlossreproError(Exception):
    """Base class: an error the user can fix; the message is one line that says how."""


class ConfigError(FlossreproError, ValueError):
    """A setting that cannot work."""


class CheckpointError(FlossreproError):
    """A checkpoint that cannot be read (truncated, corrupt, or from another configuration)."""


class TableError(FlossreproError):
    """A results table that cannot be read or written."""
