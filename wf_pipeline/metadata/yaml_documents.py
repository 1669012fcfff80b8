"""One way to read the YAML files the product declares its rules in (profiles, the key registry).

PyYAML's SafeLoader keeps the last of two equal keys in one mapping; a governance or
profile file must not let a second ``visibility:`` or ``turns:`` silently replace the first,
so every such file is read here.
"""

from __future__ import annotations

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
