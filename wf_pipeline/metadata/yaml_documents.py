"""One way to read the YAML files the product declares its rules in (profiles, the key registry).

PyYAML's SafeLoader keeps the last of two equal keys in one mapping; a governance or
profile file must not let a second ``visibility:`` or ``turns:`` silently replace the first,
so every such file is read here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping instead of keeping the last.

    Raises ``yaml.constructor.ConstructorError`` (a ``yaml.YAMLError``) with the key and
    the marks of the mapping and of the repeated key.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml_document(text: str) -> Any:
    """The one YAML document in ``text``, read safely with no key given twice per mapping.

    Returns what ``yaml.safe_load`` would (None for an empty document). Raises
    ``yaml.YAMLError`` for malformed YAML or a repeated key; callers turn it into their
    own code with the error's ``problem_mark``.
    """
    return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader


class YamlFileProblem(Exception):
    """Why a declared YAML file could not be read: ``reason`` (for a message) and ``line`` (1-based, or None).

    Not a `WfError`: each caller reports it under its own code (``PROFILE_PARSE_ERROR``,
    ``AGENT_PARSE_ERROR``...) with the file's path.
    """

    def __init__(self, reason: str, line: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line


def read_yaml_file(path: Path) -> Any:
    """The one YAML document of the UTF-8 file ``path``, read as `load_yaml_document` reads it.

    Returns what ``yaml.safe_load`` would (None for an empty file). Raises `YamlFileProblem`:
    ``is not valid YAML (line N)`` for malformed YAML, a repeated key or bytes that are not
    UTF-8; ``cannot be read (<OS reason>)`` when the file cannot be opened.
    """
    try:
        return load_yaml_document(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise YamlFileProblem("is not valid YAML" + (f" (line {line})" if line else ""), line) from None
    except OSError as exc:
        raise YamlFileProblem(f"cannot be read ({exc.strerror})") from None
