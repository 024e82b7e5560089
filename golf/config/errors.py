"""The one error type for bad configuration.

Every check that rejects a configuration raises :class:`ConfigError` naming the dotted key, the
offending value and why it is wrong, so a user sees one clear message before any expensive work.
"""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A configuration value is invalid.

    ``key`` is the dotted path in the composed config (``arch.num_heads``), ``value`` the value found.
    """

    def __init__(self, key: str, value: Any, reason: str):
        self.key = key
        self.value = value
        self.reason = reason
        super().__init__(f"{key}={value!r}: {reason}")
