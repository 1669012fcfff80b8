"""A turn's retry policy: how many attempts, how long to wait between them, which codes retry.

A turn may declare::

    retry:
      attempts: 3              # attempts in all, at least 1
      backoff:
        initial_ms: 250        # first wait; the n-th is initial_ms * 2**(n-1) + jitter, at most max_ms
        max_ms: 8000
        jitter_ms: 250         # uniform random part added to each wait
      retryable_codes: [PROVIDER_TIMEOUT, PROVIDER_RATE_LIMITED]

Every key is optional:

- ``attempts`` defaults to ``1 + min(retry_limit, thread_policy.max_turn_retries)``, the
  count every turn had before the block existed, so a profile without it behaves as
  before. Given together with an explicitly written ``retry_limit`` they must agree
  (``attempts == 1 + retry_limit``), else ``PROFILE_RETRY_CONFLICT``; an ``attempts``
  above ``1 + thread_policy.max_turn_retries`` is ``PROFILE_RETRY_CONFLICT`` too (the
  thread policy caps every turn; nothing is capped silently).
- ``backoff`` defaults to `DEFAULT_BACKOFF_MS`, the figures of
  `wf_pipeline.providers.retry.DEFAULT_BACKOFF` in milliseconds.
- ``retryable_codes`` defaults to None: the catalogue's ``retryable`` flag decides
  (`wf_pipeline.errors`). A list narrows it: only the listed codes are retried. Each must
  be a catalogued code marked retryable (``PROFILE_RETRY_UNKNOWN_CODE`` otherwise: a code
  the catalogue calls hopeless would fail the same way again).

Any other key, a non-integer or negative figure, ``attempts`` < 1 or ``max_ms`` <
``initial_ms`` is ``PROFILE_RETRY_INVALID`` (figure: ``field``). Every error names the
profile file and the turn.

The policy changes the sequence of attempts a thread records, so a turn that declares a
``retry`` block has its resolved policy in its code version
(`wf_pipeline.profiles.loader.LoadedProfile.turn_code_version`); a turn without one keeps
the code version it had. A thread records its profile's snapshot when it starts
(`wf_pipeline.profiles.snapshot`), and resumes and replays run the policy of that snapshot,
so they repeat the recorded sequence of attempts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from wf_pipeline.errors import (
    CATALOGUE,
    PROFILE_RETRY_CONFLICT,
    PROFILE_RETRY_INVALID,
    PROFILE_RETRY_UNKNOWN_CODE,
    ProfileError,
)

#: The waits every turn had before retry blocks existed (`wf_pipeline.providers.retry.DEFAULT_BACKOFF`), in ms.
DEFAULT_BACKOFF_MS: Mapping[str, int] = {"initial_ms": 250, "max_ms": 8_000, "jitter_ms": 250}
RETRY_KEYS = frozenset({"attempts", "backoff", "retryable_codes"})


@dataclass(frozen=True)
class RetryPolicy:
    """One turn's resolved retry policy.

    Attributes:
        attempts: attempts in all, at least 1.
        initial_ms: the first wait between attempts, in ms.
        max_ms: the longest wait, in ms.
        jitter_ms: the largest random part added to a wait, in ms.
        retryable_codes: the codes that are retried (sorted), or None: every code the
            catalogue marks retryable.
        declared: whether the turn wrote a ``retry`` block (only then is the policy part of
            the turn's code version).
    """

    attempts: int
    initial_ms: int = DEFAULT_BACKOFF_MS["initial_ms"]
    max_ms: int = DEFAULT_BACKOFF_MS["max_ms"]
    jitter_ms: int = DEFAULT_BACKOFF_MS["jitter_ms"]
    retryable_codes: tuple[str, ...] | None = None
    declared: bool = False

    def to_json(self) -> dict[str, Any]:
        """``{"attempts", "backoff": {"initial_ms", "max_ms", "jitter_ms"}, "retryable_codes"}`` (codes: list or None)."""
        return {
            "attempts": self.attempts,
            "backoff": {"initial_ms": self.initial_ms, "max_ms": self.max_ms, "jitter_ms": self.jitter_ms},
            "retryable_codes": list(self.retryable_codes) if self.retryable_codes is not None else None,
        }

    def retries(self, code: str) -> bool:
        """Whether the policy lets an attempt that failed with ``code`` be retried.

        Args:
            code: the attempt's error code.

        Returns:
            True when the policy lists no codes, or lists ``code``. Whether the error may be
            retried at all (the catalogue's ``retryable`` flag, a deterministic provider's
            output errors) is judged on top of this by
            `wf_pipeline.providers.retry.repeats_on_retry`. Raises nothing.
        """
        return self.retryable_codes is None or code in self.retryable_codes


def resolve_retry(
    block: Mapping[str, Any] | None,
    *,
    retry_limit: int,
    retry_limit_given: bool,
    max_turn_retries: int,
    turn_id: str,
    path: str,
    timeout_ms: int | None = None,
) -> RetryPolicy:
    """The retry policy of one turn, from its ``retry`` block and its ``retry_limit``.

    Args:
        block: the turn's ``retry`` mapping as written, or None.
        retry_limit: the turn's ``retry_limit`` (default 1).
        retry_limit_given: whether the profile wrote ``retry_limit`` for this turn.
        max_turn_retries: ``thread_policy.max_turn_retries``.
        turn_id: the turn, for messages.
        path: the profile file, for messages.
        timeout_ms: the turn's deadline in ms (for all its attempts and waits), when known:
            a policy of several attempts whose first wait does not fit in it could never retry.

    Returns:
        The `RetryPolicy` (see the module docstring for defaults).

    Raises:
        ProfileError: ``PROFILE_RETRY_INVALID`` (figures: path, turn_id, field),
            ``PROFILE_RETRY_UNKNOWN_CODE`` (figures: path, turn_id, error_code),
            ``PROFILE_RETRY_CONFLICT`` (figures: path, turn_id, attempts, and retry_limit,
            max_turn_retries, or initial_ms and timeout_ms).
    """
    default_attempts = 1 + min(retry_limit, max_turn_retries)
    if block is None:
        return RetryPolicy(attempts=default_attempts)
    where = {"path": path, "turn_id": turn_id}

    def invalid(field: str, why: str) -> NoReturn:
        raise ProfileError(
            PROFILE_RETRY_INVALID,
            f"{path}: turn {turn_id}: retry.{field} {why}",
            **where,
            field=f"retry.{field}",
        )

    if not isinstance(block, Mapping):
        raise ProfileError(
            PROFILE_RETRY_INVALID, f"{path}: turn {turn_id}: retry must be a mapping", **where, field="retry"
        )
    unknown = sorted(set(block) - RETRY_KEYS)
    if unknown:
        invalid(unknown[0], f"is not a retry key (allowed: {', '.join(sorted(RETRY_KEYS))})")
    attempts = block.get("attempts", default_attempts)
    if not _is_int(attempts):
        invalid("attempts", f"must be a whole number, not {attempts!r}")
    if attempts < 1:
        invalid("attempts", f"must be at least 1 (got {attempts})")
    if "attempts" in block:
        if retry_limit_given and attempts != 1 + retry_limit:
            raise ProfileError(
                PROFILE_RETRY_CONFLICT,
                f"{path}: turn {turn_id}: retry.attempts {attempts} contradicts retry_limit {retry_limit} "
                f"(which means {1 + retry_limit} attempts); write one of them",
                **where,
                attempts=attempts,
                retry_limit=retry_limit,
            )
        if attempts > 1 + max_turn_retries:
            raise ProfileError(
                PROFILE_RETRY_CONFLICT,
                f"{path}: turn {turn_id}: retry.attempts {attempts} is over thread_policy.max_turn_retries "
                f"{max_turn_retries} (at most {1 + max_turn_retries} attempts)",
                **where,
                attempts=attempts,
                max_turn_retries=max_turn_retries,
            )
    backoff = block.get("backoff", {})
    if not isinstance(backoff, Mapping):
        invalid("backoff", "must be a mapping of initial_ms, max_ms, jitter_ms")
    figures = dict(DEFAULT_BACKOFF_MS)
    for key, value in backoff.items():
        if key not in DEFAULT_BACKOFF_MS:
            invalid(f"backoff.{key}", f"is not a backoff key (allowed: {', '.join(DEFAULT_BACKOFF_MS)})")
        if not _is_int(value) or value < 0:
            invalid(f"backoff.{key}", f"must be a whole number of ms >= 0, not {value!r}")
        figures[key] = value
    if figures["max_ms"] < figures["initial_ms"]:
        invalid("backoff.max_ms", f"{figures['max_ms']} is below initial_ms {figures['initial_ms']}")
    if timeout_ms is not None and attempts > 1 and figures["initial_ms"] >= timeout_ms:
        # The retry loop starts no wait that would end after the deadline: no retry would run.
        raise ProfileError(
            PROFILE_RETRY_CONFLICT,
            f"{path}: turn {turn_id}: retry.backoff.initial_ms {figures['initial_ms']} is not below the "
            f"turn's timeout_ms {timeout_ms}: none of its {attempts} attempts after the first could start",
            **where,
            attempts=attempts,
            initial_ms=figures["initial_ms"],
            timeout_ms=timeout_ms,
        )
    codes = block.get("retryable_codes")
    if codes is not None:
        if not isinstance(codes, list) or not all(isinstance(code, str) for code in codes):
            invalid("retryable_codes", "must be a list of error codes")
        for code in codes:
            entry = CATALOGUE.get(code)
            if entry is None or not entry.retryable:
                reason = (
                    "is not in the error catalogue" if entry is None else "is catalogued as not retryable"
                )
                raise ProfileError(
                    PROFILE_RETRY_UNKNOWN_CODE,
                    f"{path}: turn {turn_id}: retry.retryable_codes names {code!r}, which {reason}",
                    **where,
                    error_code=code,
                )
        codes = tuple(sorted(set(codes)))
    return RetryPolicy(attempts=attempts, retryable_codes=codes, declared=True, **figures)


def _is_int(value: Any) -> bool:
    # YAML's true/false are ints to Python; a flag is no count.
    return isinstance(value, int) and not isinstance(value, bool)
