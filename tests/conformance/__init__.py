"""Conformance suites: the checks every implementation of a storage protocol must pass.

Each suite is a list of plain check functions over a backend description, so the
pytest modules (``tests/test_*_conformance.py``) parametrize them over every
implementation, and a test can run them against a deliberately broken one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest


def failing_checks(checks: Iterable[Callable[[Any], None]], make_backend: Callable[[], Any]) -> set[str]:
    """Names of the checks that fail (assertion, pytest.raises miss, or error).

    Each check runs on a fresh backend from ``make_backend``, as under pytest.
    """
    failed = set()
    for check in checks:
        try:
            check(make_backend())
        except (AssertionError, pytest.fail.Exception, Exception):
            failed.add(check.__name__)
    return failed
