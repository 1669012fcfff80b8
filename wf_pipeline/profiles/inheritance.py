"""Profile families, inheritance and composition, resolved on the raw YAML mapping.

A profile may name a ``family``, ``extends`` (bases, applied left to right) and ``include``
(turn and gate fragments). `resolve_profile_document` turns such a profile into the plain
mapping a profile without them would be, before the `Profile` model validates it: code
versions, snapshots and pinning see only the resolved profile. Bases live in
``<layer>/profiles/bases/<id>.yaml`` and fragments in ``<layer>/profiles/fragments/<id>.yaml``,
found through the same layers as profiles (workspace, user, builtin; the first layer that
holds the file wins). docs/profiles.md ("Families, inheritance and fragments") states the
rules; docs/specs/profile-inheritance.md is the spec.

Resolution order (each step merged over the result of the ones before):

1. the bases, linearised: depth first, left to right, each base after its own bases and
   once only (at its first place in that order);
2. with each base, first the fragments it includes (in list order), then its own keys;
3. the profile's fragments, in list order;
4. the profile's own keys.

Merging: two mappings merge key by key; ``turns`` and ``gates`` merge by ``turn_id`` and
``gate_id`` (an id two sources define identically is kept once; defined differently it is
``PROFILE_TURN_ID_CONFLICT`` or ``PROFILE_GATE_ID_CONFLICT``); anything else (a scalar,
another list, a mapping meeting a non-mapping) is replaced by the later value.
A base's ``gate_rules`` (gate_type -> rules) are family defaults applied last, rule by rule,
to every gate of that type that does not set the rule itself.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from wf_pipeline.errors import (
    PROFILE_BASE_INVALID,
    PROFILE_BASE_NOT_FOUND,
    PROFILE_EXTENDS_NON_BASE,
    PROFILE_FAMILY_MISMATCH,
    PROFILE_FRAGMENT_INVALID,
    PROFILE_FRAGMENT_NOT_FOUND,
    PROFILE_GATE_ID_CONFLICT,
    PROFILE_INHERITANCE_CYCLE,
    PROFILE_SCHEMA_INVALID,
    PROFILE_TURN_ID_CONFLICT,
    ErrorCode,
    ProfileError,
)
from wf_pipeline.gates import gate_types
from wf_pipeline.metadata.yaml_documents import YamlFileProblem, read_yaml_file
from wf_pipeline.profiles.layers import Layer
from wf_pipeline.profiles.schema import IDENTIFIER_PATTERN, Profile

SourceKind = Literal["profile", "base", "fragment"]

#: Keys that steer resolution; they never reach the resolved profile.
RESOLUTION_KEYS = ("family", "extends", "include")
#: A base's family defaults for gate thresholds: gate_type -> {rule: value}.
GATE_RULES_KEY = "gate_rules"
# How deep a chain of bases may go (a family needs two or three levels).
MAX_BASE_DEPTH = 64
#: Lists merged item by item on their id field; every other list is replaced whole.
ID_LISTS = {"turns": "turn_id", "gates": "gate_id"}
#: What a fragment may hold.
FRAGMENT_KEYS = frozenset(ID_LISTS)
_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)


@dataclass(frozen=True)
class Source:
    """One document a resolved profile is made of.

    Attributes:
        kind: ``profile``, ``base`` or ``fragment``.
        id: the profile's workflow id, or the base's or fragment's id (its file name without suffix).
        layer: the layer whose folder holds the file; a turn's prompt refs resolve against it.
        path: the file.
    """

    kind: SourceKind
    id: str
    layer: Layer
    path: Path

    @property
    def label(self) -> str:
        """``"<kind> <id>"``, e.g. ``base docs_family``."""
        return f"{self.kind} {self.id}"

    def to_dict(self) -> dict[str, str]:
        """``{"kind", "id", "layer", "path"}`` (layer by name, path as text)."""
        return {"kind": self.kind, "id": self.id, "layer": self.layer.name, "path": str(self.path)}


@dataclass(frozen=True)
class Resolution:
    """How one profile was resolved: its family, the documents applied and where each field came from.

    Attributes:
        family: the family the profile belongs to (declared by it or by its bases), or None.
        sources: every document applied, in the order applied; the profile itself last.
        origins: dotted field path -> the source that set it last. Mapping leaves are named
            by their path (``retention.preset``), turns and gates by their id
            (``turns.verification``, ``gates.final_gate``), family gate thresholds by rule
            (``gates.final_gate.rules.max_drift``); any other list is one field.
    """

    family: str | None
    sources: tuple[Source, ...]
    origins: Mapping[str, Source] = field(default_factory=dict)

    def origin(self, path: str) -> Source | None:
        """The source of the dotted field ``path``: its own origin, else its nearest ancestor's,
        else the one source every field below its nearest recorded ancestor comes from; None when
        that is ambiguous or nothing is recorded (a default the schema filled in)."""
        parts = path.split(".")
        for end in range(len(parts), 0, -1):
            found = self.origins.get(".".join(parts[:end]))
            if found is not None:
                return found
        for end in range(len(parts) - 1, 0, -1):
            prefix = ".".join(parts[:end]) + "."
            below = {source for key, source in self.origins.items() if key.startswith(prefix)}
            if len(below) == 1:
                return next(iter(below))
            if below:
                return None
        return None

    def turn_layer(self, turn_id: str, default: Layer) -> Layer:
        """The layer a turn's prompt refs resolve against: the layer of the document that defined it."""
        source = self.origins.get(f"turns.{turn_id}")
        return source.layer if source is not None else default


@dataclass(frozen=True)
class _Base:
    source: Source
    own: dict[str, Any]
    extends: tuple[str, ...]
    include: tuple[str, ...]
    family: str | None


def resolve_profile_document(
    raw: Any, path: Path, layer: Layer, search: Sequence[Layer]
) -> tuple[Any, Resolution | None]:
    """Resolve a profile's ``family``, ``extends`` and ``include`` into a plain profile mapping.

    Args:
        raw: the profile file's YAML document, as read.
        path: the profile file (named in every error).
        layer: the layer the profile belongs to.
        search: the layers bases and fragments are looked up in, highest precedence first
            (the same order as profiles: workspace, user, builtin).

    Returns:
        ``(resolved, resolution)``: the mapping the `Profile` model validates, and how it was
        made. A document that is not a mapping is returned as it is with None (the schema
        reports it).

    Raises:
        ProfileError: ``PROFILE_SCHEMA_INVALID`` (figure: fields) for an ``extends``,
            ``include`` or ``family`` that is not an identifier (list);
            ``PROFILE_BASE_NOT_FOUND``, ``PROFILE_FRAGMENT_NOT_FOUND`` (figures: base_id or
            fragment_id, chain, searched); ``PROFILE_EXTENDS_NON_BASE`` (figures: base_id,
            chain, found); ``PROFILE_INHERITANCE_CYCLE`` (figures: cycle, chain);
            ``PROFILE_BASE_INVALID``, ``PROFILE_FRAGMENT_INVALID`` (figures: base_path or
            fragment_path, fields or line); ``PROFILE_TURN_ID_CONFLICT``,
            ``PROFILE_GATE_ID_CONFLICT`` (figures: turn_id or gate_id, sources, source_paths);
            ``PROFILE_FAMILY_MISMATCH`` (figures: families, declared). Every error carries
            ``path``, the profile file.
    """
    if not isinstance(raw, dict):
        return raw, None
    workflow_id = raw.get("workflow_id") if isinstance(raw.get("workflow_id"), str) else path.stem
    profile_source = Source("profile", workflow_id, layer, path)
    resolver = _Resolver(tuple(search), path, workflow_id)
    extends = _ids(raw, "extends", lambda fields, message: _schema_error(path, fields, message))
    include = _ids(raw, "include", lambda fields, message: _schema_error(path, fields, message))
    declared_family = _family(raw, lambda fields, message: _schema_error(path, fields, message))

    bases: list[_Base] = []
    for base_id in extends:
        resolver.linearise(base_id, [], bases)
    steps: list[tuple[Source, dict[str, Any]]] = []
    for base in bases:
        steps.extend(resolver.fragment(fragment_id, [base.source.id]) for fragment_id in base.include)
        steps.append((base.source, base.own))
    steps.extend(resolver.fragment(fragment_id, []) for fragment_id in include)
    steps.append((profile_source, {key: value for key, value in raw.items() if key not in RESOLUTION_KEYS}))

    merged, origins = _merge_steps(steps, path)
    family = _check_family(declared_family, bases, path, workflow_id)
    sources = tuple(dict.fromkeys(source for source, _ in steps))
    return merged, Resolution(family=family, sources=sources, origins=origins)


# --- finding and reading bases and fragments ---------------------------------------------


class _Resolver:
    """Finds, reads and checks the bases and fragments of one profile; each file is read once."""

    def __init__(self, search: tuple[Layer, ...], path: Path, workflow_id: str) -> None:
        self.search = search
        self.path = path
        self.workflow_id = workflow_id
        self._bases: dict[str, _Base] = {}
        self._fragments: dict[str, tuple[Source, dict[str, Any]]] = {}

    def _where(self, chain: list[str]) -> dict[str, Any]:
        return {"path": str(self.path), "workflow_id": self.workflow_id, "chain": [self.workflow_id, *chain]}

    def _searched(self) -> list[str]:
        return [f"{layer.name}:{layer.root}" for layer in self.search]

    def linearise(self, base_id: str, stack: list[str], order: list[_Base]) -> None:
        """Append ``base_id`` and its bases to ``order``: depth first, left to right, once each."""
        if base_id in stack:
            cycle = [*stack[stack.index(base_id) :], base_id]
            raise ProfileError(
                PROFILE_INHERITANCE_CYCLE,
                f"{self.path}: bases extend each other in a cycle: {' -> '.join(cycle)}",
                **self._where([*stack, base_id]),
                cycle=cycle,
            )
        if any(base.source.id == base_id for base in order):
            return
        if len(stack) >= MAX_BASE_DEPTH:
            # Bounded so that resolving stays far from the interpreter's recursion limit.
            raise ProfileError(
                PROFILE_BASE_INVALID,
                f"{self.path}: bases extend each other more than {MAX_BASE_DEPTH} deep (at {base_id!r})",
                **self._where([*stack, base_id]),
                base_id=base_id,
                depth=len(stack) + 1,
            )
        base = self.base(base_id, stack)
        stack.append(base_id)
        for parent in base.extends:
            self.linearise(parent, stack, order)
        stack.pop()
        order.append(base)

    def base(self, base_id: str, stack: list[str]) -> _Base:
        """The base ``base_id`` from the first layer that holds it, read and checked."""
        if base_id in self._bases:
            return self._bases[base_id]
        found = next(
            ((layer, p) for layer in self.search if (p := layer.base_file(base_id)) is not None), None
        )
        chain = [*stack, base_id]
        if found is None:
            what = self._what_else(base_id)
            if what is not None:
                raise ProfileError(
                    PROFILE_EXTENDS_NON_BASE,
                    f"{self.path}: extends {base_id!r}, which is {what}, not a base "
                    f"(bases live in <layer>/profiles/bases/)",
                    **self._where(chain),
                    base_id=base_id,
                    found=what,
                )
            raise ProfileError(
                PROFILE_BASE_NOT_FOUND,
                f"{self.path}: base {base_id!r} is in no layer ({', '.join(self._searched())})",
                **self._where(chain),
                base_id=base_id,
                searched=self._searched(),
            )
        layer, base_path = found
        source = Source("base", base_id, layer, base_path)

        def invalid(fields: list[str], message: str) -> ProfileError:
            return ProfileError(
                PROFILE_BASE_INVALID,
                f"{self.path}: base {base_path}: {message}",
                **self._where(chain),
                base_path=str(base_path),
                fields=fields,
            )

        raw = _read_document(base_path, invalid)
        if "workflow_id" in raw:
            raise ProfileError(
                PROFILE_EXTENDS_NON_BASE,
                f"{self.path}: extends {base_id!r}, but {base_path} declares a workflow_id: it is a "
                "profile, not a base",
                **self._where(chain),
                base_id=base_id,
                found=f"the profile {base_path}",
            )
        allowed = (set(Profile.model_fields) - {"workflow_id"}) | set(RESOLUTION_KEYS) | {GATE_RULES_KEY}
        unknown = sorted(str(key) for key in raw if key not in allowed)
        if unknown:
            raise invalid(unknown, f"keys a base may not hold: {unknown}")
        gate_rules = raw.get(GATE_RULES_KEY, {})
        if not isinstance(gate_rules, dict) or not all(
            isinstance(key, str) and isinstance(rules, dict) for key, rules in gate_rules.items()
        ):
            raise invalid([GATE_RULES_KEY], "gate_rules must map gate types to mappings of rules")
        # A misspelt gate type would set no threshold anywhere, silently.
        unknown_types = sorted(set(gate_rules) - set(gate_types()))
        if unknown_types:
            raise invalid(
                [f"{GATE_RULES_KEY}.{name}" for name in unknown_types],
                f"gate_rules names unknown gate types {unknown_types}; known: {gate_types()}",
            )
        base = _Base(
            source=source,
            own={key: value for key, value in raw.items() if key not in RESOLUTION_KEYS},
            extends=tuple(_ids(raw, "extends", invalid)),
            include=tuple(_ids(raw, "include", invalid)),
            family=_family(raw, invalid),
        )
        self._bases[base_id] = base
        return base

    def fragment(self, fragment_id: str, stack: list[str]) -> tuple[Source, dict[str, Any]]:
        """The fragment ``fragment_id`` from the first layer that holds it, read and checked."""
        if fragment_id in self._fragments:
            return self._fragments[fragment_id]
        chain = [*stack, fragment_id]
        found = next(
            ((layer, p) for layer in self.search if (p := layer.fragment_file(fragment_id)) is not None), None
        )
        if found is None:
            is_base = any(layer.base_file(fragment_id) is not None for layer in self.search)
            raise ProfileError(
                PROFILE_FRAGMENT_NOT_FOUND,
                f"{self.path}: fragment {fragment_id!r} is in no layer ({', '.join(self._searched())})"
                + (f"; {fragment_id!r} is a base: name it in extends" if is_base else ""),
                **self._where(chain),
                fragment_id=fragment_id,
                searched=self._searched(),
            )
        layer, fragment_path = found

        def invalid(fields: list[str], message: str) -> ProfileError:
            return ProfileError(
                PROFILE_FRAGMENT_INVALID,
                f"{self.path}: fragment {fragment_path}: {message}",
                **self._where(chain),
                fragment_path=str(fragment_path),
                fields=fields,
            )

        raw = _read_document(fragment_path, invalid)
        unknown = sorted(str(key) for key in raw if key not in FRAGMENT_KEYS)
        if unknown:
            raise invalid(unknown, f"a fragment holds only turns and gates, not {unknown}")
        not_lists = sorted(key for key, value in raw.items() if not isinstance(value, list))
        if not_lists:
            raise invalid(not_lists, f"{not_lists} must be lists")
        resolved = (Source("fragment", fragment_id, layer, fragment_path), raw)
        self._fragments[fragment_id] = resolved
        return resolved

    def _what_else(self, name: str) -> str | None:
        # Only on the error path: say what the name is instead, when it is something.
        for layer in self.search:
            fragment = layer.fragment_file(name)
            if fragment is not None:
                return f"the fragment {fragment}"
        for layer in self.search:
            for profile_path in layer.profile_files():
                try:
                    document = read_yaml_file(profile_path)
                except YamlFileProblem:
                    continue
                if isinstance(document, dict) and document.get("workflow_id") == name:
                    return f"the profile {profile_path}"
        return None


def _read_document(path: Path, invalid: Any) -> dict[str, Any]:
    """The YAML mapping in ``path``; ``invalid(fields, message)`` builds the error otherwise."""
    try:
        raw = read_yaml_file(path)
    except YamlFileProblem as exc:
        error = invalid([], exc.reason.removeprefix("is "))
        error.details["line"] = exc.line
        raise error from None
    if not isinstance(raw, dict):
        raise invalid([], f"must be a YAML mapping, not {type(raw).__name__}")
    return raw


def _schema_error(path: Path, fields: list[str], message: str) -> ProfileError:
    return ProfileError(PROFILE_SCHEMA_INVALID, f"{path}: {message}", path=str(path), fields=fields)


def _ids(raw: dict[str, Any], key: str, invalid: Any) -> list[str]:
    """The identifiers listed under ``key`` (``extends`` or ``include``); [] when absent."""
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(
        isinstance(item, str) and _IDENTIFIER.match(item) for item in value
    ):
        raise invalid([key], f"{key} must be a list of identifiers (lowercase snake case)")
    repeated = sorted({item for item in value if value.count(item) > 1})
    if repeated:
        raise invalid([key], f"{key} names {repeated} more than once")
    return list(value)


def _family(raw: dict[str, Any], invalid: Any) -> str | None:
    value = raw.get("family")
    if value is not None and not (isinstance(value, str) and _IDENTIFIER.match(value)):
        raise invalid(["family"], "family must be an identifier (lowercase snake case)")
    return value


def _check_family(declared: str | None, bases: list[_Base], path: Path, workflow_id: str) -> str | None:
    """The profile's family: the one its bases declare, which a family it declares must match."""
    by_base = {base.source.id: base.family for base in bases if base.family is not None}
    families = sorted(set(by_base.values()))
    if len(families) > 1 or (declared is not None and families != [declared]):
        raise ProfileError(
            PROFILE_FAMILY_MISMATCH,
            f"{path}: "
            + (f"declares family {declared!r}; " if declared is not None else "")
            + (
                "its bases belong to " + ", ".join(f"{b}: {f}" for b, f in sorted(by_base.items()))
                if by_base
                else "none of its bases belongs to a family"
            ),
            path=str(path),
            workflow_id=workflow_id,
            declared=declared,
            families=by_base,
        )
    return declared if declared is not None else (families[0] if families else None)


# --- merging -----------------------------------------------------------------------------


def _merge_steps(
    steps: list[tuple[Source, dict[str, Any]]], path: Path
) -> tuple[dict[str, Any], dict[str, Source]]:
    merged: dict[str, Any] = {}
    origins: dict[str, Source] = {}
    listed: dict[tuple[str, str], tuple[Source, Any]] = {}
    gate_rules: dict[str, Any] = {}
    rule_origins: dict[str, Source] = {}
    for source, document in steps:
        for key, value in document.items():
            if key == GATE_RULES_KEY and source.kind == "base":
                for gate_type_name, rules in value.items():
                    _merge_value(gate_rules, gate_type_name, rules, source, rule_origins, "")
            elif key in ID_LISTS and isinstance(value, list):
                _merge_by_id(merged, key, value, source, origins, listed, path)
            else:
                _merge_value(merged, key, value, source, origins, "")
    _apply_gate_rules(merged, gate_rules, rule_origins, origins)
    return merged, origins


def _merge_value(
    target: dict[str, Any], key: str, value: Any, source: Source, origins: dict[str, Source], prefix: str
) -> None:
    """Merge ``value`` into ``target[key]``: mappings key by key, anything else replaced."""
    path = f"{prefix}{key}"
    if isinstance(value, dict) and isinstance(target.get(key), dict):
        for inner_key, inner in value.items():
            _merge_value(target[key], inner_key, inner, source, origins, f"{path}.")
        return
    target[key] = copy.deepcopy(value)
    for stale in [name for name in origins if name == path or name.startswith(f"{path}.")]:
        del origins[stale]
    for leaf in _leaves(value, path):
        origins[leaf] = source


def _leaves(value: Any, path: str) -> Iterator[str]:
    if isinstance(value, dict) and value:
        for key, inner in value.items():
            yield from _leaves(inner, f"{path}.{key}")
    else:
        yield path


def _merge_by_id(
    merged: dict[str, Any],
    key: str,
    items: list[Any],
    source: Source,
    origins: dict[str, Source],
    listed: dict[tuple[str, str], tuple[Source, Any]],
    path: Path,
) -> None:
    """Append ``items`` to ``merged[key]`` by id; an id another source defined must be defined identically."""
    id_field = ID_LISTS[key]
    current = merged.get(key)
    if not isinstance(current, list):
        current = merged[key] = []
    for item in items:
        item_id = item.get(id_field) if isinstance(item, dict) else None
        if not isinstance(item_id, str):
            # No id to merge on: kept as it is, for the schema to report.
            origins[f"{key}.{len(current)}"] = source
            current.append(copy.deepcopy(item))
            continue
        earlier = listed.get((key, item_id))
        if earlier is not None and earlier[0] != source:
            if _same(earlier[1], item):
                continue
            raise ProfileError(
                _conflict_code(key),
                f"{path}: {id_field} {item_id!r} is defined differently by {earlier[0].label} "
                f"({earlier[0].path}) and {source.label} ({source.path})",
                path=str(path),
                **{id_field: item_id},
                sources=[earlier[0].label, source.label],
                source_paths=[str(earlier[0].path), str(source.path)],
            )
        # A repeat inside one source stays a repeat: the loader reports it (PROFILE_DUPLICATE_*).
        listed.setdefault((key, item_id), (source, item))
        origins.setdefault(f"{key}.{item_id}", source)
        current.append(copy.deepcopy(item))


def _conflict_code(key: str) -> ErrorCode:
    # One code per merged id list.
    return {"turns": PROFILE_TURN_ID_CONFLICT, "gates": PROFILE_GATE_ID_CONFLICT}[key]


def _same(first: Any, second: Any) -> bool:
    # By JSON text, so YAML's `1`, `1.0` and `true` stay different values, as the strict schema sees them.
    return json.dumps(first, sort_keys=True, default=str) == json.dumps(second, sort_keys=True, default=str)


def _apply_gate_rules(
    merged: dict[str, Any],
    gate_rules: dict[str, Any],
    rule_origins: dict[str, Source],
    origins: dict[str, Source],
) -> None:
    """Give every gate the family's rules for its gate_type that the gate does not set itself."""
    gates = merged.get("gates")
    if not gate_rules or not isinstance(gates, list):
        return
    for gate in gates:
        if not isinstance(gate, dict) or not isinstance(gate.get("gate_type"), str):
            continue
        defaults = gate_rules.get(gate["gate_type"])
        own = gate.get("rules", {})
        if not defaults or not isinstance(defaults, dict) or not isinstance(own, dict):
            continue
        gate["rules"] = {**copy.deepcopy(defaults), **own}
        for rule in defaults:
            if rule not in own:
                origins[f"gates.{gate.get('gate_id')}.rules.{rule}"] = _rule_origin(
                    rule_origins, f"{gate['gate_type']}.{rule}"
                )


def _rule_origin(rule_origins: dict[str, Source], path: str) -> Source:
    # A rule whose value is a mapping is recorded by its leaves; any of them names the base.
    if path in rule_origins:
        return rule_origins[path]
    return next(source for name, source in rule_origins.items() if name.startswith(f"{path}."))
