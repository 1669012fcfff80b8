"""One error hierarchy with stable codes.

Every error the product raises on purpose is a `WfError` carrying a stable `code`
(e.g. ``PROFILE_DUPLICATE_SEQ``). Callers and tests branch on the code, never on
message text. Domain subclasses exist so an ``except`` can be narrow; the code is
what identifies the failure.
"""

from __future__ import annotations

from typing import Any


class WfError(Exception):
    """Base of every deliberate wf_pipeline failure."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            **({"details": self.details} if self.details else {}),
        }


class ConfigError(WfError):
    """Bad settings or environment."""


class TreeError(WfError):
    """Workspace scanning and node identity."""


class CasError(WfError):
    """Content-addressed storage."""


class ProfileError(WfError):
    """Loading, validating or rendering workflow profiles."""


class MetadataError(WfError):
    """Record schemas, the frame-metadata boundary and budgets."""


class RecordError(WfError):
    """The durable record store."""


class ProviderError(WfError):
    """Model providers."""


class GateError(WfError):
    """Gate registry and evaluation (a failing gate is an outcome, not this error)."""


class RunError(WfError):
    """Executing turns, threads and runs."""
