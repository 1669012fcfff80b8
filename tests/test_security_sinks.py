"""The one log-sink filter: what it masks and withholds, and each sink it is wired into.

Secret-shaped values are built at run time (a fake AWS access key id of the documented
shape), so no secret is ever committed.
"""

from __future__ import annotations

import ast
import json
import logging
import secrets
import string
from pathlib import Path

import pyarrow
import pyarrow.parquet as pq
import pytest

from wf_pipeline.cli.output import emit, print_line, print_warnings, stderr_console, write_csv_rows
from wf_pipeline.errors import OUTPUT_NOT_JSON, RUN_OUTPUT_SHAPE, MetadataError, RunError
from wf_pipeline.metadata.payloads import StrictPayload, parse_json_output
from wf_pipeline.runtime.failure import ERROR_TEXT_LIMIT, recorded_error_text
from wf_pipeline.runtime.turn import _checked_output
from wf_pipeline.security.sinks import SINK_FILTER, WITHHELD, product_logger, scrub, scrub_value
from wf_pipeline.telemetry.schema import METADATA_WRITES, schema_for
from wf_pipeline.telemetry.store import TelemetryStore


def fake_aws_key() -> str:
    """A fresh value of the AWS access key id shape (``AKIA`` + 16 of A-Z0-9)."""
    return "AKIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))


def canary() -> str:
    return f"CANARY{secrets.token_hex(8)}"


DIGEST_HEX = "0123456789abcdef" * 4


def test_scrub_masks_secret_shaped_values_and_keeps_ids_and_digests():
    key = fake_aws_key()
    text = f"thread thr:1 node {DIGEST_HEX} artifact sha256:{DIGEST_HEX} key {key}"
    scrubbed = scrub(text)
    assert key not in scrubbed
    assert "[secret:aws-access-key]" in scrubbed
    # A sink carries ids and digests: a bare SHA-256 hex is not taken for a key.
    assert scrubbed.startswith(f"thread thr:1 node {DIGEST_HEX} artifact sha256:{DIGEST_HEX} key ")
    assert scrub("RUN_OUTPUT_SHAPE: output has 12 bytes") == "RUN_OUTPUT_SHAPE: output has 12 bytes"
    assert scrub(scrubbed) == scrubbed  # idempotent: a placeholder is never masked again


def test_scrub_withholds_a_text_that_repeats_a_payload():
    prompt = f"Describe the module; marker {canary()} and more words of the prompt"
    assert scrub(f"bad request: {prompt[10:60]}", payloads=[prompt]) == WITHHELD
    assert scrub("PROVIDER_TIMEOUT: no answer in 3000 ms", payloads=[prompt]) == (
        "PROVIDER_TIMEOUT: no answer in 3000 ms"
    )


def test_scrub_value_walks_json_values_and_leaves_other_objects_whole():
    key = fake_aws_key()

    class Opaque(tuple):
        pass

    opaque = Opaque((key,))
    value = scrub_value({"a": [key, 3, None, {"b": (key, True)}], key: "x", "o": opaque})
    assert key not in json.dumps({k: v for k, v in value.items() if k != "o"})
    assert value["o"] is opaque


def test_the_filter_scrubs_records_of_product_loggers_before_any_handler():
    key = fake_aws_key()
    logger = product_logger("wf_pipeline.tests.sinks")
    assert SINK_FILTER in logger.filters
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(self.format(record))

    handler = Keep(level=logging.DEBUG)
    logger.addHandler(handler)
    before = (logging.getLogger().level, logging.getLogger().filters[:], logger.level)
    try:
        logger.warning("turn t of thread %s failed: %s", "thr:1", f"server said {key}")
        try:
            raise ValueError(f"choked on {key}")
        except ValueError:
            logger.error("crash", exc_info=True)
    finally:
        logger.removeHandler(handler)
    assert len(seen) == 2
    assert all(key not in line for line in seen), seen
    assert "thr:1" in seen[0] and "ValueError" in seen[1]
    # No process-wide state: the root logger and every level are as they were.
    assert (logging.getLogger().level, logging.getLogger().filters, logger.level) == before


def test_cli_stdout_and_stderr_are_scrubbed(capsys):
    key = fake_aws_key()
    emit(True, {"error": {"code": "PROVIDER_BAD_REQUEST", "message": f"server said {key}"}}, None)
    emit(False, {"m": f"text {key}"}, lambda console, payload: print_line(console, payload["m"]))
    write_csv_rows(["a"], [[f"x {key}"]])
    print_line(stderr_console(), f"PROVIDER_BAD_REQUEST: {key}")
    print_warnings([{"code": "TREE_UNREADABLE", "message": f"at {key}"}])
    out, err = capsys.readouterr()
    assert key not in out and key not in err
    assert json.loads(out.split("\n}\n", 1)[0] + "\n}")["error"]["code"] == "PROVIDER_BAD_REQUEST"
    assert out.count("[secret:aws-access-key]") == 3 and err.count("[secret:aws-access-key]") == 2


def test_telemetry_rows_are_written_scrubbed(tmp_path):
    key = fake_aws_key()
    store = TelemetryStore(str(tmp_path / "telemetry"))
    schema = schema_for(METADATA_WRITES)
    row = {name: None for name in schema.names}
    row.update(
        ts_ms=1_700_000_000_000,
        workflow_id="docs_writer_thread_v1",
        domain="agent",
        key="model",
        bytes=3,
        outcome="rejected",
        error_code=f"METADATA_BUDGET_EXCEEDED {key}",
    )
    store.write(METADATA_WRITES, pyarrow.Table.from_pylist([row], schema=schema))
    cells = [
        str(value)
        for path in (tmp_path / "telemetry").rglob("*.parquet")
        for column in pq.read_table(path).to_pydict().values()
        for value in column
    ]
    assert any("[secret:aws-access-key]" in cell for cell in cells)
    assert not any(key in cell for cell in cells)


def test_error_texts_carry_positions_and_digests_not_output():
    marker = canary()
    with pytest.raises(RunError) as caught:
        _checked_output(f'{{"claims": [{marker}]}}', "json", 10_000)
    assert caught.value.code == RUN_OUTPUT_SHAPE
    assert marker not in str(caught.value)
    assert caught.value.details["output_digest"].startswith("sha256:")
    assert (caught.value.details["line"], caught.value.details["column"]) == (1, 13)

    class Shape(StrictPayload):
        title: str

    with pytest.raises(MetadataError) as parsed:
        parse_json_output(f"{{'title': '{marker}'}}", Shape)
    assert parsed.value.code == OUTPUT_NOT_JSON
    assert marker not in str(parsed.value)
    assert parsed.value.details["position"] == 1


def test_recorded_error_texts_are_scrubbed_and_bounded():
    key = fake_aws_key()
    prompt = f"Summarise this file for the README; marker {canary()} follows here"
    assert key not in recorded_error_text(f"PROVIDER_BAD_REQUEST: server said {key}")
    assert recorded_error_text(f"bad request: {prompt}", [prompt]) == WITHHELD
    assert len(recorded_error_text("x" * 10_000)) == ERROR_TEXT_LIMIT


def test_every_product_module_takes_its_logger_with_the_filter():
    # Checked on the source, so a module added later is covered the day it is added: a named
    # logger made any other way would skip the filter.
    package = Path(__file__).resolve().parent.parent / "wf_pipeline"
    allowed = {package / "security" / "sinks.py"}
    offenders = []
    for module in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "getLogger"
                and (node.args or node.keywords)  # getLogger() is the root logger (the CLI's handler)
                and module not in allowed
            ):
                offenders.append(f"{module.relative_to(package)}:{node.lineno}")
    assert offenders == []
