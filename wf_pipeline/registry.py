"""One name -> plug-in registry, the rule every registry of the package shares.

Like fsspec's registry of filesystems by protocol: a small interface (what a plug-in is)
lives with its package, and plug-ins register under a key; callers look them up by that
key. Gate types, payload schemas, offline turns, output sinks, section headings,
providers and the storage openers by URL scheme are each one `Registry`.

The rule, written once here:

- ``register(key, value)`` files ``value`` under ``key``;
- registering the same value again is a no-op (``reregister="same"``, the default), or
  refused (``"never"``), or replaces the earlier one (``"replace"``);
- a different value under a taken key raises the registry's ``duplicate`` code, naming
  the key and the value that holds it;
- ``get`` of an unknown key raises the registry's ``unknown`` code, listing the known keys.

The error class of each code is its catalogue entry's (`ErrorCode.error_class`), so a
registry raises the domain error its callers already catch. Registration takes a lock:
step processes and sensors may load plug-ins from several threads at once.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Generic, Literal, TypeVar

from wf_pipeline.errors import ErrorCode

K = TypeVar("K")
V = TypeVar("V")

Reregister = Literal["same", "never", "replace"]


class Registry(Generic[K, V]):
    """A thread-safe key -> plug-in mapping with the package's one registration rule.

    Args:
        what: what the values are, for messages (``"output sink"``, ``"gate evaluator"``).
        key: what the keys are, for messages (``"frame type"``); its snake-case form
            (``frame_type``) names the key in the errors' details.
        duplicate: the catalogue code raised when a key is registered again against the
            ``reregister`` policy; required unless ``reregister="replace"``.
        unknown: the catalogue code `get` raises for an unknown key; None when the
            registry is only read with `find` (a missing key has a fallback).
        reregister: ``"same"``: registering an equal value again (``==``, which is
            identity for objects that define no equality) is a no-op, another value
            raises ``duplicate``; ``"never"``: any second registration raises
            ``duplicate``, the same value included; ``"replace"``: a later registration
            replaces the earlier one.

    Raises:
        ValueError: ``duplicate`` is None while ``reregister`` is not ``"replace"`` (a
            programming error, not a `WfError`).
    """

    def __init__(
        self,
        what: str,
        *,
        key: str = "key",
        duplicate: ErrorCode | None = None,
        unknown: ErrorCode | None = None,
        reregister: Reregister = "same",
    ) -> None:
        if reregister not in ("same", "never", "replace"):
            raise ValueError(f"reregister must be 'same', 'never' or 'replace', not {reregister!r}")
        if duplicate is None and reregister != "replace":
            raise ValueError(f"a {what} registry with reregister={reregister!r} needs a duplicate code")
        self.what = what
        self.key = key
        self.duplicate = duplicate
        self.unknown = unknown
        self.reregister: Reregister = reregister
        self._key_field = key.replace(" ", "_")
        self._entries: dict[K, V] = {}
        self._lock = threading.Lock()

    def register(self, key: K, value: V) -> V:
        """File ``value`` under ``key``, following the ``reregister`` policy.

        Args:
            key: the name callers look the value up by.
            value: the plug-in.

        Returns:
            ``value`` unchanged, so a decorator can return it.

        Raises:
            WfError: the registry's ``duplicate`` code (as its catalogued class), with the
                key in its details, when ``key`` is taken against the policy; nothing is
                registered then.
        """
        with self._lock:
            self._check(key, value)
            self._entries[key] = value
        return value

    def register_many(self, entries: Mapping[K, V]) -> None:
        """Register every ``key -> value`` of ``entries``, all of them or none.

        Args:
            entries: the plug-ins by key.

        Raises:
            WfError: the registry's ``duplicate`` code for the first key (in ``entries``'
                order) taken against the policy; then none of ``entries`` is registered.
        """
        with self._lock:
            for key, value in entries.items():
                self._check(key, value)
            self._entries.update(entries)

    def get(self, key: K, **details: object) -> V:
        """The value registered under ``key``.

        Args:
            key: the name to look up.
            **details: more figures for the error's details (ids of the caller's request).

        Returns:
            The registered value.

        Raises:
            WfError: the registry's ``unknown`` code (as its catalogued class), with the
                key and the sorted ``known`` keys in its message and details, plus ``details``.
            KeyError: ``key`` is unknown and the registry has no ``unknown`` code.
        """
        try:
            return self._entries[key]
        except KeyError:
            if self.unknown is None:
                raise
        known = self.keys()
        shown = ", ".join(str(k) for k in known) or "none"
        raise self.unknown.error_class(
            self.unknown,
            f"no {self.what} is registered for {self.key} {key!r} (known: {shown})",
            **{self._key_field: key, "known": known, **details},
        )

    def find(self, key: K) -> V | None:
        """The value registered under ``key``, or None when there is none. Raises nothing."""
        # One dict read is atomic; only writes and listings, which take several steps, hold the lock.
        return self._entries.get(key)

    def keys(self) -> list[K]:
        """Every registered key, sorted by its text. Raises nothing."""
        with self._lock:
            keys = list(self._entries)
        return sorted(keys, key=str)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is registered."""
        return key in self._entries

    def __len__(self) -> int:
        """How many keys are registered."""
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, {len(self)} registered)"

    def _check(self, key: K, value: V) -> None:
        # Called with the lock held, so a check and its write are one step for other threads.
        if key not in self._entries or self.reregister == "replace":
            return
        existing = self._entries[key]
        if self.reregister == "same" and (existing is value or existing == value):
            return
        assert self.duplicate is not None  # the constructor requires it for these policies
        raise self.duplicate.error_class(
            self.duplicate,
            f"{self.key} {key!r} already has {self.what} {_describe(existing)}",
            **{self._key_field: key},
        )


def _describe(value: object) -> str:
    # A name, never contents: a function's or class's qualified name, a plain value's repr.
    if isinstance(value, str | int | float | bool):
        return repr(value)
    name = getattr(value, "__qualname__", None)
    return name if isinstance(name, str) else type(value).__qualname__
