"""The simulated provider: offline output with injected latency and failures.

It exists for benchmarks and fault tests. Every successful call returns exactly what
the offline provider returns for the same request, so gates pass and outputs are
real; on top of that a call can be slowed down and made to fail.

Options (strings when they come from ``WF_SIMULATED_*`` variables):

- ``latency_ms``: sleep this long in every call, failing ones included. ``time.sleep``
  releases the GIL, so concurrent calls overlap the way network calls do. Like a
  network call with a timeout, a call whose latency is longer than the request's
  ``timeout_ms`` sleeps ``timeout_ms`` and fails with ``PROVIDER_TIMEOUT``.
- ``failure_rate``: probability in [0, 1] that a call fails with
  ``PROVIDER_SIMULATED_FAILURE`` (retryable in the error catalogue). The draw is a
  hash of (seed, thread id, turn id, call number of that thread and turn), so a run
  repeats exactly and a retry of the same turn draws again and can succeed.
- ``seed``: integer mixed into that hash.
- ``fail_targets``: comma-separated target path suffixes; every call of a thread whose
  target path ends with one of them (on a path-component boundary) fails with
  ``PROVIDER_SIMULATED_TARGET_FAILURE`` (not retryable): a backend that always fails one
  target.
- ``fail_turns``: comma-separated turn ids; failure_rate and fail_targets apply only to
  these turns (default: every turn).

Limitation: the target path is read from the ``context`` input. A turn without that
input (style_refine in docs_writer_thread_v1) is matched through the path an earlier
call of the same thread showed this provider instance. If that earlier call went to
another instance (another process, or a provider built anew), the target is unknown
and fail_targets cannot fail that turn.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from wf_pipeline.errors import (
    PROVIDER_CONFIG_INVALID,
    PROVIDER_SIMULATED_FAILURE,
    PROVIDER_SIMULATED_TARGET_FAILURE,
    PROVIDER_TIMEOUT,
    ProviderError,
)
from wf_pipeline.metadata.canonical import canonical_json
from wf_pipeline.metadata.payloads import CONTEXT_REF
from wf_pipeline.providers.base import ProviderRequest, ProviderResponse, register_provider
from wf_pipeline.providers.offline import OfflineProvider

PROVIDER_TYPE = "simulated"
MODEL = "simulated-v1"

_OPTION_NAMES = frozenset({"latency_ms", "failure_rate", "seed", "fail_targets", "fail_turns"})


def _invalid(option: str, message: str) -> ProviderError:
    return ProviderError(PROVIDER_CONFIG_INVALID, f"option {option}: {message}", option=option)


def _number(options: Mapping[str, Any], option: str, default: float) -> float:
    value = options.get(option)
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if isinstance(value, bool):
        raise _invalid(option, "must be a number, not a boolean")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _invalid(option, f"{value!r} is not a number") from None
    if not math.isfinite(number):
        raise _invalid(option, f"{value!r} is not a finite number")
    return number


def _integer(options: Mapping[str, Any], option: str, default: int) -> int:
    value = options.get(option)
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if isinstance(value, bool):
        raise _invalid(option, "must be an integer, not a boolean")
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        raise _invalid(option, f"{value!r} is not an integer") from None


def _names(options: Mapping[str, Any], option: str) -> tuple[str, ...]:
    """A comma-separated string (from the environment) or a list of strings, blanks dropped."""
    value = options.get(option)
    if value is None:
        return ()
    if isinstance(value, str):
        items: Iterable[Any] = value.split(",")
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = value
    else:
        raise _invalid(option, "must be a comma-separated string or a list of strings")
    names = []
    for item in items:
        if not isinstance(item, str):
            raise _invalid(option, "must be a comma-separated string or a list of strings")
        if item.strip():
            names.append(item.strip())
    return tuple(names)


@dataclass(frozen=True)
class SimulatedOptions:
    """Validated options of the simulated provider (see the module docstring; latency in ms)."""

    latency_ms: float = 0.0
    failure_rate: float = 0.0
    seed: int = 0
    fail_targets: tuple[str, ...] = ()
    # Empty means every turn.
    fail_turns: tuple[str, ...] = ()

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> SimulatedOptions:
        """Parse ``options`` (strings from the environment); ``PROVIDER_CONFIG_INVALID`` names a bad one."""
        unknown = sorted(set(options) - _OPTION_NAMES)
        if unknown:
            # A misspelt WF_SIMULATED_* variable would otherwise silently inject nothing.
            raise _invalid(unknown[0], f"unknown option (known: {', '.join(sorted(_OPTION_NAMES))})")
        latency_ms = _number(options, "latency_ms", 0.0)
        if latency_ms < 0:
            raise _invalid("latency_ms", "must not be negative")
        failure_rate = _number(options, "failure_rate", 0.0)
        if not 0.0 <= failure_rate <= 1.0:
            raise _invalid("failure_rate", "must be between 0 and 1")
        # Suffixes compare against POSIX paths relative to the scanned root ("." is the root).
        targets = tuple(target.strip("/") for target in _names(options, "fail_targets"))
        if any(not target for target in targets):
            raise _invalid("fail_targets", "a target suffix must name a path")
        return cls(
            latency_ms=latency_ms,
            failure_rate=failure_rate,
            seed=_integer(options, "seed", 0),
            fail_targets=targets,
            fail_turns=_names(options, "fail_turns"),
        )


def _matches_suffix(path: str, suffix: str) -> bool:
    """``pkg/sub`` matches ``pkg/sub`` and ``a/pkg/sub`` but not ``a/xpkg/sub``."""
    return path == suffix or path.endswith("/" + suffix)


def failure_draw(seed: int, thread_id: str, turn_id: str, call_number: int) -> float:
    """A reproducible number in [0, 1) for one call; the call fails when it is below the rate."""
    digest = hashlib.sha256(canonical_json([seed, thread_id, turn_id, call_number])).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _context_target_path(request: ProviderRequest) -> str | None:
    """target.path of the context input, or None when the turn has no readable context."""
    raw = request.inputs.get(CONTEXT_REF)
    if raw is None:
        return None
    try:
        target = json.loads(raw).get("target")
    except (ValueError, AttributeError):
        return None  # the offline provider reports the invalid input with its own code
    path = target.get("path") if isinstance(target, dict) else None
    return path if isinstance(path, str) else None


class SimulatedProvider:
    """The offline provider behind injected latency and failures (see the module docstring)."""

    provider_type = PROVIDER_TYPE
    model = MODEL
    # Its latency sleeps at most request.timeout_ms, and the rest is offline computation.
    returns_by_deadline = True

    def __init__(self, options: SimulatedOptions) -> None:
        self.options = options
        self._offline = OfflineProvider()
        # Calls arrive from a thread pool; both maps are read and written under this lock.
        self._lock = threading.Lock()
        self._call_counts: dict[tuple[str, str], int] = {}
        self._target_paths: dict[str, str] = {}

    def _record_call(self, request: ProviderRequest) -> tuple[int, str | None]:
        """Number this call within its (thread, turn) and resolve the thread's target path."""
        seen_path = _context_target_path(request)
        key = (request.thread_id, request.turn_id)
        with self._lock:
            call_number = self._call_counts.get(key, 0) + 1
            self._call_counts[key] = call_number
            if seen_path is not None:
                self._target_paths[request.thread_id] = seen_path
            return call_number, self._target_paths.get(request.thread_id)

    def _injected_failure(
        self, request: ProviderRequest, call_number: int, target_path: str | None
    ) -> ProviderError | None:
        options = self.options
        if options.fail_turns and request.turn_id not in options.fail_turns:
            return None
        where = {"thread_id": request.thread_id, "turn_id": request.turn_id, "call_number": call_number}
        if target_path is not None and any(_matches_suffix(target_path, s) for s in options.fail_targets):
            return ProviderError(
                PROVIDER_SIMULATED_TARGET_FAILURE,
                f"simulated failure for target {target_path!r} (turn {request.turn_id})",
                target_path=target_path,
                **where,
            )
        if failure_draw(options.seed, request.thread_id, request.turn_id, call_number) < options.failure_rate:
            return ProviderError(
                PROVIDER_SIMULATED_FAILURE,
                f"simulated failure of call {call_number} of turn {request.turn_id} "
                f"in thread {request.thread_id} (draw below failure_rate {options.failure_rate:g})",
                **where,
            )
        return None

    def complete(self, request: ProviderRequest) -> ProviderResponse:
        """The offline provider's answer to ``request`` after ``latency_ms``, unless a failure is injected.

        Returns:
            A `ProviderResponse` with provider_type ``simulated`` and model ``simulated-v1``.

        Raises:
            ProviderError: ``PROVIDER_TIMEOUT`` when latency_ms is over ``request.timeout_ms``
                (raised after ``timeout_ms``); ``PROVIDER_SIMULATED_FAILURE`` (retryable) when the
                call's draw is below failure_rate; ``PROVIDER_SIMULATED_TARGET_FAILURE`` (not
                retryable) for a fail_targets target; the offline provider's own codes
                (``PROVIDER_INPUT_MISSING``, ``PROVIDER_INPUT_INVALID``...) for bad inputs.
        """
        call_number, target_path = self._record_call(request)
        latency_ms = self.options.latency_ms
        if latency_ms > request.timeout_ms:
            time.sleep(request.timeout_ms / 1000)
            raise ProviderError(
                PROVIDER_TIMEOUT,
                f"simulated latency of {latency_ms:g} ms is over the {request.timeout_ms} ms the call may take",
                thread_id=request.thread_id,
                turn_id=request.turn_id,
                latency_ms=latency_ms,
                timeout_ms=request.timeout_ms,
            )
        if latency_ms:
            time.sleep(latency_ms / 1000)
        failure = self._injected_failure(request, call_number, target_path)
        if failure is not None:
            raise failure
        response = self._offline.complete(request)
        return ProviderResponse(
            text=response.text, provider_type=self.provider_type, model=self.model, usage=response.usage
        )


@register_provider(PROVIDER_TYPE)
def simulated_provider(options: Mapping[str, Any], env: Mapping[str, str]) -> SimulatedProvider:
    """Build a `SimulatedProvider` from ``options`` (``env`` is unused: it needs no secret).

    Raises:
        ProviderError: ``PROVIDER_CONFIG_INVALID`` for an unknown or malformed option.
    """
    return SimulatedProvider(SimulatedOptions.from_options(options))
