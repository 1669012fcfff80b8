"""The one registry rule: register under a key, same value again a no-op, another value refused."""

from __future__ import annotations

import threading
import time

import pytest

from wf_pipeline.errors import (
    GATE_DUPLICATE_TYPE,
    GATE_UNKNOWN_TYPE,
    RUN_NO_OUTPUT_SINK,
    RUN_SINK_DUPLICATE,
    GateError,
    RunError,
)
from wf_pipeline.registry import Registry


def sink_registry() -> Registry[str, object]:
    return Registry("output sink", key="frame type", duplicate=RUN_SINK_DUPLICATE, unknown=RUN_NO_OUTPUT_SINK)


def first_writer() -> None:
    """A plug-in with a name."""


def second_writer() -> None:
    """Another plug-in with a name."""


def test_a_registered_value_is_found_by_its_key() -> None:
    registry = sink_registry()
    assert registry.register("readme", first_writer) is first_writer
    registry.register("changelog", second_writer)

    assert registry.get("readme") is first_writer
    assert registry.find("changelog") is second_writer
    assert registry.find("nothing") is None
    assert registry.keys() == ["changelog", "readme"]
    assert "readme" in registry and "nothing" not in registry
    assert len(registry) == 2


def test_registering_the_same_value_again_is_a_no_op() -> None:
    registry = sink_registry()
    registry.register("readme", first_writer)
    registry.register("readme", first_writer)
    assert registry.get("readme") is first_writer

    headings: Registry[str, str] = Registry(
        "section heading", key="section key", duplicate=GATE_DUPLICATE_TYPE
    )
    headings.register("usage", "Usage")
    headings.register("usage", "".join(["Us", "age"]))  # equal, not the same object
    assert headings.get("usage") == "Usage"


def test_another_value_under_a_taken_key_raises_the_duplicate_code() -> None:
    registry = sink_registry()
    registry.register("readme", first_writer)

    with pytest.raises(RunError) as raised:
        registry.register("readme", second_writer)

    assert raised.value.code == RUN_SINK_DUPLICATE
    assert raised.value.details == {"frame_type": "readme"}
    assert raised.value.message == "frame type 'readme' already has output sink first_writer"
    assert registry.get("readme") is first_writer


def test_a_plain_value_is_named_by_its_repr_and_an_object_by_its_class() -> None:
    headings: Registry[str, object] = Registry(
        "section heading", key="section key", duplicate=GATE_DUPLICATE_TYPE
    )
    headings.register("usage", "Usage")
    headings.register("sink", object())
    with pytest.raises(GateError, match="section key 'usage' already has section heading 'Usage'"):
        headings.register("usage", "How to use")
    with pytest.raises(GateError, match="section key 'sink' already has section heading object$"):
        headings.register("sink", object())


def test_never_refuses_even_the_same_value() -> None:
    gates: Registry[str, object] = Registry(
        "gate evaluator", key="gate type", duplicate=GATE_DUPLICATE_TYPE, reregister="never"
    )
    gates.register("required_sections", first_writer)

    with pytest.raises(GateError) as raised:
        gates.register("required_sections", first_writer)

    assert raised.value.code == GATE_DUPLICATE_TYPE
    assert raised.value.details == {"gate_type": "required_sections"}


def test_replace_lets_a_later_registration_win() -> None:
    openers: Registry[str, object] = Registry("opener", key="scheme", reregister="replace")
    openers.register("s3", first_writer)
    openers.register("s3", second_writer)
    assert openers.find("s3") is second_writer


def test_an_unknown_key_raises_the_unknown_code_with_the_known_keys() -> None:
    registry = sink_registry()
    registry.register("readme", first_writer)
    registry.register("changelog", second_writer)

    with pytest.raises(RunError) as raised:
        registry.get("manual", run_id="run:1")

    assert raised.value.code == RUN_NO_OUTPUT_SINK
    assert raised.value.message == (
        "no output sink is registered for frame type 'manual' (known: changelog, readme)"
    )
    assert raised.value.details == {
        "frame_type": "manual",
        "known": ["changelog", "readme"],
        "run_id": "run:1",
    }


def test_an_empty_registry_says_it_knows_none() -> None:
    gates: Registry[str, object] = Registry(
        "gate evaluator", key="gate type", duplicate=GATE_DUPLICATE_TYPE, unknown=GATE_UNKNOWN_TYPE
    )
    with pytest.raises(GateError, match=r"\(known: none\)$"):
        gates.get("anything")


def test_without_an_unknown_code_get_raises_key_error() -> None:
    openers: Registry[str, object] = Registry("opener", key="scheme", reregister="replace")
    with pytest.raises(KeyError):
        openers.get("s3")


def test_register_many_registers_all_or_nothing() -> None:
    headings: Registry[str, str] = Registry(
        "section heading", key="section key", duplicate=GATE_DUPLICATE_TYPE
    )
    headings.register("usage", "Usage")

    with pytest.raises(GateError):
        headings.register_many({"install": "Install", "usage": "How to use", "license": "License"})
    assert headings.keys() == ["usage"]

    headings.register_many({"install": "Install", "usage": "Usage"})
    assert headings.keys() == ["install", "usage"]


def test_a_policy_that_refuses_needs_a_duplicate_code() -> None:
    with pytest.raises(ValueError):
        Registry("output sink")
    with pytest.raises(ValueError):
        Registry("output sink", duplicate=RUN_SINK_DUPLICATE, reregister="sometimes")  # type: ignore[arg-type]


class SlowKey(str):
    """A key whose hashing yields the interpreter, widening any gap between a check and its write."""

    __slots__ = ()

    def __hash__(self) -> int:
        time.sleep(0.002)
        return str.__hash__(self)


def test_concurrent_registrations_of_one_key_leave_exactly_one_owner() -> None:
    registry = sink_registry()
    writers = 8
    start = threading.Barrier(writers)
    values = [object() for _ in range(writers)]
    won: list[object] = []
    refused: list[str] = []

    def register(value: object) -> None:
        start.wait()
        try:
            registry.register(SlowKey("readme"), value)
        except RunError as exc:
            refused.append(exc.code)
        else:
            won.append(value)

    threads = [threading.Thread(target=register, args=(value,)) for value in values]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(won) == 1
    assert refused == [RUN_SINK_DUPLICATE] * (writers - 1)
    assert registry.get("readme") is won[0]


def test_concurrent_registrations_of_many_keys_all_land() -> None:
    registry = sink_registry()
    writers, per_writer = 8, 200
    start = threading.Barrier(writers)

    def register(writer: int) -> None:
        start.wait()
        for index in range(per_writer):
            key = f"frame-{writer}-{index}"
            registry.register(key, key)
            registry.register(key, key)  # the same value again: a no-op, even under contention
            registry.keys()  # listing while others write never fails

    threads = [threading.Thread(target=register, args=(writer,)) for writer in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(registry) == writers * per_writer
    assert all(registry.get(key) == key for key in registry.keys())
