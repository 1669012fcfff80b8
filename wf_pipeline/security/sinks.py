"""The one filter every log sink passes: Python logging, Dagster's event and compute logs,
the CLI's stdout and stderr, telemetry rows and the records' error texts.

The contract (issue "prompt and context under governance", log-sink contract): a sink
carries ids, digests, sizes, codes and positions, never prompt text, context payload,
model output or a secret. The product keeps payloads out of sinks where it builds its
messages (errors quote codes and positions, never the text they failed on); this module
is the second line, applied where text leaves for a sink:

- `scrub`: secret-shaped values masked (`wf_pipeline.security.redaction.find_secrets`, a
  maintained detector library) and, when the caller knows the payloads in play, a text
  that repeats any of them withheld whole.
- `scrub_value`: the same over every string of a JSON-ready value (CLI ``--json`` output,
  metadata).
- `SinkFilter`: a ``logging.Filter`` that scrubs a record's message and traceback in place,
  so every handler after it (Dagster's, the CLI's, a file) sees the scrubbed text.
- `product_logger`: ``logging.getLogger(name)`` with the filter attached; every product
  module gets its logger here. Only the product's own loggers and handlers get the filter:
  the root logger, other libraries' loggers and every level are left as they are.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

from wf_pipeline.security.redaction import find_secrets, replace_findings

# What a text that repeats a payload becomes: the whole text goes, since a payload cut
# anywhere else could still leave a readable piece of it.
WITHHELD = "(withheld: repeats payload content)"
# Distinct texts whose scrubbed form is remembered: sinks repeat the same ids, codes and
# messages many times, and the detector costs a scan per text.
_CACHE_SIZE = 4096
# Formats a traceback the way logging's own formatter would, so it can be scrubbed.
_TRACEBACKS = logging.Formatter()


# A SHA-256 digest in hex: the shape of the product's own ids (a tree's key, an artifact's
# hex) that sinks exist to carry. Only the generic hex-entropy finding is waived for it; a
# value of a token format (``AKIA...``) is masked whatever it looks like.
_DIGEST_HEX = re.compile(r"[0-9a-f]{64}")
_HEX_ENTROPY_KIND = "Hex High Entropy String"


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _masked(text: str) -> str:
    findings = [
        finding
        for finding in find_secrets(text)
        if not (
            finding.kind == _HEX_ENTROPY_KIND and _DIGEST_HEX.fullmatch(text[finding.start : finding.end])
        )
    ]
    return replace_findings(text, findings)


def scrub(text: str, *, payloads: Iterable[str] = ()) -> str:
    """``text`` as a sink may carry it.

    Args:
        text: a log message, an error message, a CLI line, a telemetry cell.
        payloads: the prompt, context and output texts in play where the caller has them
            (a turn's rendered prompt and inputs); a text that shares a run of 16 letters
            and digits with any of them (`providers.server_errors.repeats_request`, the
            same echo rule provider errors follow) is replaced by `WITHHELD`.

    Returns:
        The text with every secret-shaped value replaced by its placeholder, as
        `redaction.mask_secrets` writes it (detect-secrets' detectors), except a bare
        64-hex SHA-256 digest, which the generic hex-entropy rule alone would take for a
        key (sinks carry ids and digests); or `WITHHELD`. The text itself when nothing was
        found. Raises nothing.
    """
    if not text:
        return text
    sent = tuple(p for p in payloads if p)
    if sent:
        # Imported here: the providers take their loggers from this module.
        from wf_pipeline.providers.server_errors import repeats_request

        if repeats_request(text, sent):
            return WITHHELD
    return _masked(text)


def scrub_value(value: Any, *, payloads: Iterable[str] = ()) -> Any:
    """`scrub` applied to every string inside a JSON-ready value.

    Args:
        value: a string, number, None, or a mapping / list / tuple of such (keys included);
            any other object (a named tuple, a library's value object) is returned as it is.
        payloads: as for `scrub`.

    Returns:
        A value of the same shape (mappings become dicts, tuples lists); numbers, booleans
        and None unchanged. Raises nothing.
    """
    sent = tuple(payloads)
    if isinstance(value, str):
        return scrub(value, payloads=sent)
    if isinstance(value, Mapping):
        return {scrub_value(k, payloads=sent): scrub_value(v, payloads=sent) for k, v in value.items()}
    # Plain lists and tuples only: a named tuple (a library's value object) is left whole.
    if type(value) in (list, tuple):
        return [scrub_value(v, payloads=sent) for v in value]
    return value


class SinkFilter(logging.Filter):
    """Scrubs each log record in place (message, traceback, stack) and lets it through.

    Attached to the product's own loggers (`product_logger`) and handlers (the CLI's
    console handler): a record that passes is already formatted with its arguments and
    scrubbed (`scrub`), so a handler, Dagster's event log and compute logs included, never
    sees the raw text. It drops nothing and changes no level.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Scrub ``record`` in place; returns True (the record always goes on)."""
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is logging's own error to report
            return True
        record.msg, record.args = scrub(message), None
        if record.exc_info and not record.exc_text:
            # Handlers print exc_text when it is set rather than formatting exc_info again.
            record.exc_text = _TRACEBACKS.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


# One instance: attaching it twice to a logger is a no-op (logging keeps filters once).
SINK_FILTER = SinkFilter()


def product_logger(name: str) -> logging.Logger:
    """The product's logger ``name`` (``__name__`` of a product module), with `SINK_FILTER` on it.

    Args:
        name: a logger name under ``wf_pipeline``.

    Returns:
        ``logging.getLogger(name)``; its level, handlers and propagation are left as they are.
        A logger-level filter sees the records logged on that logger, so each product module
        takes its own logger from here. Raises nothing.
    """
    logger = logging.getLogger(name)
    logger.addFilter(SINK_FILTER)
    return logger
