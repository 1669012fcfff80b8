"""Retries and the per-turn deadline of provider calls.

A turn's ``timeout_ms`` is a deadline for the whole turn: every attempt and every wait
between attempts ends by it, whatever the provider.

- `Deadline` measures it on the monotonic clock.
- `call_within` runs one ``provider.complete`` in a daemon thread and stops waiting
  when the deadline passes, with ``PROVIDER_TIMEOUT``. Python cannot stop a running
  thread, so an overrunning call goes on in the background; its result is dropped,
  and since providers only compute and answer (the runtime writes the CAS and the
  records from the caller's thread, after the call returned in time), nothing is
  written late. The thread is a daemon, so it never holds the process open.
- `provider_retrying` builds the tenacity retry loop: it repeats only errors whose
  code the catalogue (`wf_pipeline.errors`) marks retryable and that would not repeat
  the same way (`repeats_on_retry`: an output too large or of the wrong shape from a
  provider that declares itself ``deterministic``, such as the offline one), waits with exponential
  backoff and jitter (tenacity's ``wait_exponential_jitter``), never sooner than a
  server's ``Retry-After`` (RFC 9110, section 10.2.3; providers put it in the error's
  ``retry_after_ms`` detail), and stops after ``max_attempts`` or when the next wait
  would cross the deadline. In that last case the turn ends at once with the last
  attempt's own error (a 429 stays ``PROVIDER_RATE_LIMITED``), rather than sleeping
  to the deadline for nothing.
"""

from __future__ import annotations

import email.utils
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import tenacity

from wf_pipeline.errors import (
    PROVIDER_TIMEOUT,
    RUN_INTERRUPTED,
    RUN_OUTPUT_SHAPE,
    RUN_OUTPUT_TOO_LARGE,
    ProviderError,
    RunError,
    WfError,
)
from wf_pipeline.providers.base import Provider, ProviderRequest, ProviderResponse
from wf_pipeline.security.sinks import product_logger

log = product_logger(__name__)

#: Detail key under which a provider reports the server's Retry-After, in ms.
RETRY_AFTER_DETAIL = "retry_after_ms"
#: How often a waiting call looks at its interrupt (s): the delay before a stop takes effect.
INTERRUPT_POLL_S = 0.1


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter between attempts, in seconds.

    The n-th wait (n from 1) is ``min(multiplier_s * 2**(n-1) + uniform(0, jitter_s), max_s)``,
    tenacity's ``wait_exponential_jitter`` (the scheme Google Cloud documents for its
    storage retries).
    """

    multiplier_s: float = 0.25
    max_s: float = 8.0
    jitter_s: float = 0.25

    @classmethod
    def of_ms(cls, initial_ms: int, max_ms: int, jitter_ms: int) -> Backoff:
        """The backoff of a profile's ``retry.backoff`` figures, given in ms (`wf_pipeline.profiles.retry`)."""
        return cls(multiplier_s=initial_ms / 1000, max_s=max_ms / 1000, jitter_s=jitter_ms / 1000)

    def strategy(self) -> tenacity.wait.wait_base:
        """The tenacity wait strategy for these figures."""
        return tenacity.wait_exponential_jitter(
            multiplier=self.multiplier_s, max=self.max_s, jitter=self.jitter_s
        )


DEFAULT_BACKOFF = Backoff()


class Deadline:
    """The end of a turn: ``timeout_ms`` after it was created, on the monotonic clock."""

    def __init__(self, timeout_ms: int, clock: Callable[[], float] = time.monotonic) -> None:
        """Start the clock now; ``timeout_ms`` must be positive (the profile schema ensures it)."""
        self.timeout_ms = timeout_ms
        self._clock = clock
        self._start = clock()
        self._end = self._start + timeout_ms / 1000

    def remaining_s(self) -> float:
        """Seconds left, never negative."""
        return max(0.0, self._end - self._clock())

    def remaining_ms(self) -> int:
        """Whole milliseconds left, never negative."""
        return math.floor(self.remaining_s() * 1000)

    def elapsed_ms(self) -> int:
        """Whole milliseconds since the deadline started."""
        return math.floor((self._clock() - self._start) * 1000)

    def expired(self) -> bool:
        """True once no time is left."""
        return self.remaining_s() <= 0


def _timeout(request: ProviderRequest, deadline: Deadline) -> ProviderError:
    return ProviderError(
        PROVIDER_TIMEOUT,
        f"turn {request.turn_id} of thread {request.thread_id} got no answer within its deadline of "
        f"{deadline.timeout_ms} ms ({deadline.elapsed_ms()} ms elapsed)",
        thread_id=request.thread_id,
        turn_id=request.turn_id,
        timeout_ms=deadline.timeout_ms,
        elapsed_ms=deadline.elapsed_ms(),
    )


def call_within(
    provider: Provider,
    request: ProviderRequest,
    deadline: Deadline,
    interrupt: threading.Event | None = None,
) -> ProviderResponse:
    """``provider.complete(request)``, given up when ``deadline`` passes.

    A provider whose ``returns_by_deadline`` attribute is true (its call computes, or sleeps
    at most ``request.timeout_ms``, and cannot block past it) is called in the caller's
    thread, and an answer that still came late is dropped the same way; any other runs
    in a daemon thread of its own, so a hung call cannot hold the turn.

    Args:
        provider: any provider.
        request: the call; its ``timeout_ms`` should already be the time left.
        deadline: the turn's deadline.
        interrupt: when it is set, a call running in its own thread is abandoned (its
            late answer is dropped), checked every `INTERRUPT_POLL_S` seconds.

    Returns:
        The provider's response, if it came before the deadline.

    Raises:
        ProviderError: ``PROVIDER_TIMEOUT`` when the deadline passes first (the late
            answer, if any, is dropped); otherwise whatever ``complete`` raised.
        RunError: ``RUN_INTERRUPTED`` when ``interrupt`` is set before the answer came.
    """
    if deadline.expired():
        raise _timeout(request, deadline)
    if interrupt is not None and interrupt.is_set():
        raise RunError(
            RUN_INTERRUPTED,
            f"turn {request.turn_id} of thread {request.thread_id} not called: the run was interrupted",
        )
    if getattr(provider, "returns_by_deadline", False):
        # A thread per call costs about as much as an offline turn's own work.
        response = provider.complete(request)
        if deadline.expired():
            raise _timeout(request, deadline)
        return response
    outcome: dict[str, object] = {}
    done = threading.Event()

    def run() -> None:
        try:
            outcome["response"] = provider.complete(request)
        except BaseException as exc:  # handed to the caller's thread as is
            outcome["error"] = exc
        finally:
            done.set()

    threading.Thread(target=run, name=f"wf-provider-{request.turn_id}", daemon=True).start()
    while not done.wait(min(deadline.remaining_s(), INTERRUPT_POLL_S)):
        if interrupt is not None and interrupt.is_set():
            raise RunError(
                RUN_INTERRUPTED,
                f"call of turn {request.turn_id} of thread {request.thread_id} abandoned after "
                f"{deadline.elapsed_ms()} ms: the run was interrupted",
            )
        if deadline.expired():
            raise _timeout(request, deadline)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["response"]  # type: ignore[return-value]


def parse_retry_after(value: str | None, now: datetime | None = None) -> int | None:
    """A ``Retry-After`` header value as milliseconds to wait, or None when absent or unreadable.

    RFC 9110, section 10.2.3: the value is either delay-seconds (a non-negative integer)
    or an HTTP-date; a date in the past means no wait (0). ``now`` (UTC) is for tests.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return int(text) * 1000
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=UTC)
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return max(0, math.ceil(seconds * 1000))


def _default_error_of(exc: BaseException | None) -> WfError | None:
    return exc if isinstance(exc, WfError) else None


class _WaitHonouringRetryAfter(tenacity.wait.wait_base):
    """Backoff with jitter, but never shorter than the server's Retry-After."""

    def __init__(self, backoff: Backoff, error_of: Callable[[BaseException | None], WfError | None]) -> None:
        self._backoff = backoff.strategy()
        self._error_of = error_of

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        wait_s = self._backoff(retry_state)
        outcome = retry_state.outcome
        error = self._error_of(outcome.exception()) if outcome is not None else None
        retry_after_ms = error.details.get(RETRY_AFTER_DETAIL) if error is not None else None
        if isinstance(retry_after_ms, int) and not isinstance(retry_after_ms, bool):
            wait_s = max(wait_s, retry_after_ms / 1000)
        return wait_s


class _StopAtDeadline(tenacity.stop.stop_base):
    """Stop when the coming wait would end at or after the deadline (tenacity computes the wait first)."""

    def __init__(self, deadline: Deadline) -> None:
        self._deadline = deadline

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return retry_state.upcoming_sleep >= self._deadline.remaining_s()


# Codes judged on the provider's output alone: the same request to a deterministic
# provider gives the same output, so they would repeat on every retry. Budget errors
# (METADATA_BUDGET_EXCEEDED) are raised before any call and are never retryable at all.
OUTPUT_JUDGED_CODES = frozenset({RUN_OUTPUT_TOO_LARGE, RUN_OUTPUT_SHAPE})


def is_deterministic(provider: object) -> bool:
    """Whether ``provider`` declares ``deterministic = True`` (same request, same output)."""
    return getattr(provider, "deterministic", False) is True


def repeats_on_retry(error: WfError, *, deterministic: bool) -> bool:
    """Whether trying ``error``'s attempt again would fail the same way.

    Args:
        error: the attempt's error.
        deterministic: whether the provider declares it answers a request the same way
            every time (`is_deterministic`).

    Returns:
        True for a code the catalogue marks not retryable, and, for a deterministic
        provider, for a code in `OUTPUT_JUDGED_CODES` (an output too large or of the wrong
        shape); False otherwise (a timeout, a lost connection, a rate limit may pass).
    """
    if not error.retryable:
        return True
    return deterministic and error.code in OUTPUT_JUDGED_CODES


def provider_retrying(
    max_attempts: int,
    deadline: Deadline,
    *,
    deterministic: bool = False,
    error_of: Callable[[BaseException | None], WfError | None] = _default_error_of,
    backoff: Backoff = DEFAULT_BACKOFF,
    retries_code: Callable[[str], bool] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    label: str = "provider call",
) -> tenacity.Retrying:
    """The retry loop of one turn, as a ``tenacity.Retrying`` to call with the attempt function.

    Args:
        max_attempts: attempts in all, at least 1 (1 + the turn's retry budget).
        deadline: the turn's deadline; no wait is started that would end after it.
        deterministic: the provider is deterministic: errors judged on its output are
            not retried (`repeats_on_retry`).
        error_of: maps what an attempt raised to the `WfError` that decides (the runtime
            wraps a recorded failure); an exception it maps to None is never retried.
        backoff: the backoff figures.
        retries_code: the turn's own rule for which codes may retry (its profile's
            ``retry.retryable_codes``, `wf_pipeline.profiles.retry.RetryPolicy.retries`);
            None: the catalogue's retryable flag alone. Either way an error that would
            repeat (`repeats_on_retry`) is not retried.
        sleep: how to wait, in seconds (tests pass a recorder).
        label: ids for the log line before each wait (never prompt or output text).

    Returns:
        A ``tenacity.Retrying`` with ``reraise=True``: calling it with a function returns
        the function's result, or raises the last attempt's exception once it is not
        retryable, the attempts are used up, or the deadline leaves no room for the wait.
    """

    def retryable(exc: BaseException) -> bool:
        error = error_of(exc)
        if error is None or repeats_on_retry(error, deterministic=deterministic):
            return False
        return retries_code is None or retries_code(error.code)

    def log_wait(retry_state: tenacity.RetryCallState) -> None:
        error = error_of(retry_state.outcome.exception()) if retry_state.outcome else None
        log.info(
            "%s: attempt %d failed with %s; next attempt in %d ms",
            label,
            retry_state.attempt_number,
            error.code if error else "?",
            round(retry_state.upcoming_sleep * 1000),
        )

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(retryable),
        wait=_WaitHonouringRetryAfter(backoff, error_of),
        stop=tenacity.stop_after_attempt(max(1, max_attempts)) | _StopAtDeadline(deadline),
        sleep=sleep,
        before_sleep=log_wait,
        reraise=True,
    )
