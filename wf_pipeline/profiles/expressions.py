"""The branch language of a turn's ``when:``: parse, the names it reads, static checks, evaluate.

A ``when:`` expression decides, before a turn runs, whether it runs. The language is small
and not Turing-complete: no loops, no calls, no assignment, nothing that runs code.

Grammar (docs/specs/conditional-branches.md):

- literals: integers, decimals, double- or single-quoted strings, ``true``/``false``
  (``True``/``False`` too);
- field access: ``<output_type>.<field>[.<field>...]`` over the structured JSON output of
  an upstream turn, following its registered payload model
  (`wf_pipeline.metadata.payloads.output_model`); ``gates.<gate_id>.outcome`` (``"pass"``,
  ``"warn"`` or ``"fail"``) and ``gates.<gate_id>.passed`` (a boolean, true only for ``"pass"``) over the verdict of an upstream
  turn's gate;
- comparisons ``==`` ``!=`` ``<`` ``<=`` ``>`` ``>=`` (chains such as ``0.2 < x <= 0.8``);
- ``and``, ``or``, ``not``, parentheses, a leading ``-`` on a number.

Everything else (calls, subscripts, arithmetic, ``in``/``is``, conditional expressions,
comprehensions, lambdas, f-strings...) is ``PROFILE_WHEN_FORBIDDEN``.

Implementation: the text is parsed with the standard library's ``ast.parse(mode="eval")``
only for its tokenizer and precedence rules (the grammar above is a subset of Python's
expression grammar); every node is then checked against a whitelist and evaluated by the
small interpreter below. Nothing is compiled or passed to ``eval``. A maintained library
(cel-python, simpleeval) was weighed: cel-python brings a parser generator and a date
library for a grammar of a dozen rules, and simpleeval evaluates Python semantics by a
deny-list of node types; a whitelist of eight node types keeps the whole language visible
here and gives exact column positions for load errors.

Values at run time: a field of an output that a branch skipped, and an optional field that
is absent, read as null. A comparison involving null is true only for ``!=`` (and ``==``
between two nulls); ``and``/``or``/``not`` treat null as false.
"""

from __future__ import annotations

import ast
import math
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from wf_pipeline.errors import (
    PROFILE_WHEN_FORBIDDEN,
    PROFILE_WHEN_NOT_UPSTREAM,
    PROFILE_WHEN_SYNTAX,
    PROFILE_WHEN_TYPE_MISMATCH,
    PROFILE_WHEN_UNKNOWN_FIELD,
    PROFILE_WHEN_UNKNOWN_GATE,
    ProfileError,
)
from wf_pipeline.metadata.canonical import digest_text
from wf_pipeline.metadata.records import GATE_OUTCOMES

# The root name under which gate verdicts are read.
GATES_ROOT = "gates"
# Bounds that keep parsing and checking an expression cheap and free of deep recursion: a
# decision needs a handful of comparisons, never hundreds of nested operators.
MAX_WHEN_CHARS = 1000
MAX_WHEN_DEPTH = 32
_BOOL_NAMES = {"true": True, "false": False}
_ORDERING = (ast.Lt, ast.LtE, ast.Gt, ast.GtE)
_EQUALITY = (ast.Eq, ast.NotEq)
_OPERATOR_TEXT = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}

Kind = Literal["number", "bool", "string", "enum", "object", "collection"]


@dataclass(frozen=True)
class FieldKind:
    """What a field read gives: its kind, the values of an enum, and whether it may be null.

    Attributes:
        kind: ``number`` (int or float), ``bool``, ``string`` (free text; recorded as its
            digest), ``enum`` (a string from ``values``; recorded as is), ``object`` (a
            nested payload model) or ``collection`` (a list, tuple or mapping; not comparable).
        values: the allowed strings of an ``enum``; () otherwise.
        model: the nested payload model of an ``object``; None otherwise.
    """

    kind: Kind
    values: tuple[str, ...] = ()
    model: type[BaseModel] | None = None


# The fields a gate verdict offers, with their kinds.
GATE_FIELDS: dict[str, FieldKind] = {
    "outcome": FieldKind("enum", GATE_OUTCOMES),
    "passed": FieldKind("bool"),
}


@dataclass(frozen=True)
class FieldRef:
    """One field an expression reads: ``root`` (an output type or ``gates``) and the path below it.

    Attributes:
        root: the output type, or ``gates``.
        path: the attribute names after the root, e.g. ``("verified_share",)`` or
            ``("verification_gate", "passed")``.
        column: where the reference starts in the expression (1-based column).
    """

    root: str
    path: tuple[str, ...]
    column: int = 0

    @property
    def dotted(self) -> str:
        """``root.a.b``, the name a decision records its value under."""
        return ".".join((self.root, *self.path))

    @property
    def gate_id(self) -> str | None:
        """The gate a ``gates.<gate_id>...`` reference reads, else None."""
        return self.path[0] if self.root == GATES_ROOT and self.path else None


@dataclass(frozen=True)
class Expression:
    """A parsed ``when:`` expression: its text, its whitelisted syntax tree and the fields it reads.

    Build with `parse`. ``refs`` are unique by dotted name, in order of first appearance.
    """

    text: str
    tree: ast.expr
    refs: tuple[FieldRef, ...]

    @property
    def output_types(self) -> tuple[str, ...]:
        """The output types the expression reads fields of, in order of first appearance."""
        return tuple(dict.fromkeys(ref.root for ref in self.refs if ref.root != GATES_ROOT))

    @property
    def gate_ids(self) -> tuple[str, ...]:
        """The gate ids the expression reads verdicts of, in order of first appearance."""
        return tuple(dict.fromkeys(ref.gate_id for ref in self.refs if ref.gate_id is not None))


@dataclass(frozen=True)
class Decision:
    """The outcome of one evaluation, as a turn record keeps it (ids and values, never payload text).

    Attributes:
        expression: the expression's text.
        reads: dotted field name -> the value read (a number, boolean, enum string, null,
            or the digest ``sha256:<hex>`` of a free-text string).
        result: whether the turn runs.
    """

    expression: str
    reads: dict[str, Any]
    result: bool

    @property
    def branch(self) -> str:
        """``taken`` when the turn runs, ``not_taken`` when a branch skipped it."""
        return "taken" if self.result else "not_taken"

    def to_json(self) -> dict[str, Any]:
        """``{"expression", "reads", "result"}``, the shape the ``turns.branch`` column stores."""
        return {"expression": self.expression, "reads": dict(self.reads), "result": self.result}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Decision:
        """The decision `to_json` stored (raises ``KeyError`` for another shape)."""
        return cls(expression=data["expression"], reads=dict(data["reads"]), result=bool(data["result"]))


def _message(text: str, message: str, column: int) -> str:
    # Every load error of an expression names it and the column where the problem starts.
    return f"when: {text!r} (column {column}): {message}"


def parse(text: str) -> Expression:
    """Parse ``text`` and check every node against the language's whitelist.

    Args:
        text: the ``when:`` value.

    Returns:
        The `Expression`, with the fields it reads.

    Raises:
        ProfileError: ``PROFILE_WHEN_SYNTAX`` (figures: expression, column) when it does not
            parse, is longer than `MAX_WHEN_CHARS` or nested deeper than `MAX_WHEN_DEPTH`; ``PROFILE_WHEN_FORBIDDEN`` (figures: expression, column, construct) for a
            construct the language does not have.
    """
    if len(text) > MAX_WHEN_CHARS:
        # Before the parser: its recursion, and ours, stay bounded by the text's length.
        raise ProfileError(
            PROFILE_WHEN_SYNTAX,
            f"when: is {len(text)} characters long; at most {MAX_WHEN_CHARS}",
            expression=text,
            column=MAX_WHEN_CHARS + 1,
            length=len(text),
        )
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except (SyntaxError, RecursionError, MemoryError) as exc:
        reason = exc.msg if isinstance(exc, SyntaxError) else "nested too deeply to parse"
        offset = (exc.offset or 0) if isinstance(exc, SyntaxError) else 0
        raise ProfileError(
            PROFILE_WHEN_SYNTAX, _message(text, reason, offset), expression=text, column=offset
        ) from None
    depth = _depth(tree)
    if depth > MAX_WHEN_DEPTH:
        raise ProfileError(
            PROFILE_WHEN_SYNTAX,
            _message(text, f"nested {depth} levels deep; at most {MAX_WHEN_DEPTH}", 1),
            expression=text,
            column=1,
            depth=depth,
        )
    refs: dict[str, FieldRef] = {}
    _check_nodes(text, tree, refs)
    return Expression(text=text, tree=tree, refs=tuple(refs.values()))


def _depth(tree: ast.AST) -> int:
    """How many nodes deep ``tree`` is, walked without recursion (a deep tree is the thing refused)."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _check_nodes(text: str, node: ast.expr, refs: dict[str, FieldRef]) -> None:
    column = getattr(node, "col_offset", 0) + 1
    if isinstance(node, ast.BoolOp):
        for value in node.values:
            _check_nodes(text, value, refs)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        _check_nodes(text, node.operand, refs)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        if not _is_number(node.operand):
            raise ProfileError(
                PROFILE_WHEN_FORBIDDEN,
                _message(text, "'-' applies to a number only", column),
                expression=text,
                column=column,
                construct="USub",
            )
    elif isinstance(node, ast.Compare):
        for op in node.ops:
            if type(op) not in _OPERATOR_TEXT:
                raise ProfileError(
                    PROFILE_WHEN_FORBIDDEN,
                    _message(
                        text, f"operator {type(op).__name__} is not in the language (== != < <= > >=)", column
                    ),
                    expression=text,
                    column=column,
                    construct=type(op).__name__,
                )
        for operand in (node.left, *node.comparators):
            _check_nodes(text, operand, refs)
    elif isinstance(node, ast.Constant):
        if not isinstance(node.value, bool | int | float | str) or (
            isinstance(node.value, float) and not math.isfinite(node.value)
        ):
            raise ProfileError(
                PROFILE_WHEN_FORBIDDEN,
                _message(text, f"literal {node.value!r} is not in the language", column),
                expression=text,
                column=column,
                construct="Constant",
            )
    elif isinstance(node, ast.Name) and node.id in _BOOL_NAMES:
        return
    elif isinstance(node, ast.Name | ast.Attribute):
        ref = _field_ref(text, node)
        refs.setdefault(ref.dotted, ref)
    else:
        raise ProfileError(
            PROFILE_WHEN_FORBIDDEN,
            _message(
                text,
                f"{type(node).__name__} is not in the language (comparisons, and/or/not, field access, literals)",
                column,
            ),
            expression=text,
            column=column,
            construct=type(node).__name__,
        )


def _is_number(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    )


def _field_ref(text: str, node: ast.expr) -> FieldRef:
    column = node.col_offset + 1
    path: list[str] = []
    current = node
    while isinstance(current, ast.Attribute):
        path.append(current.attr)
        current = current.value
    if not isinstance(current, ast.Name):
        raise ProfileError(
            PROFILE_WHEN_FORBIDDEN,
            _message(text, f"field access starts at a name, not at {type(current).__name__}", column),
            expression=text,
            column=column,
            construct=type(current).__name__,
        )
    return FieldRef(root=current.id, path=tuple(reversed(path)), column=column)


# --- static checks ---------------------------------------------------------------------


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """The annotation without Annotated/Optional wrappers, and whether None is allowed."""
    nullable = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
            nullable = nullable or len(args) < len(typing.get_args(annotation))
            if len(args) == 1:
                annotation = args[0]
                continue
            return annotation, nullable
        return annotation, nullable


def kind_of(annotation: Any) -> FieldKind:
    """The `FieldKind` of a payload model field's annotation.

    Args:
        annotation: a pydantic field annotation (``int``, ``float | None``, ``Literal[...]``,
            a nested model, ``tuple[str, ...]``...).

    Returns:
        Its kind; a union of several non-null types is a ``collection`` (not comparable).
    """
    annotation, _ = _unwrap(annotation)
    origin = typing.get_origin(annotation)
    if annotation is bool:
        return FieldKind("bool")
    if annotation in (int, float):
        return FieldKind("number")
    if annotation is str:
        return FieldKind("string")
    if origin is Literal:
        values = typing.get_args(annotation)
        if all(isinstance(value, str) for value in values):
            return FieldKind("enum", tuple(sorted(values)))
        if all(isinstance(value, bool) for value in values):
            return FieldKind("bool")
        return FieldKind("collection")
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return FieldKind("object", model=annotation)
    return FieldKind("collection")


def reference_kinds(
    expression: Expression,
    models: Mapping[str, type[BaseModel] | None],
    gate_ids: set[str] | frozenset[str],
) -> dict[str, FieldKind]:
    """Check every field reference against what is upstream, and give each one's kind.

    Args:
        expression: the parsed expression.
        models: output type -> its registered payload model (None: free-form output, no
            fields), for every output upstream of the turn (transitively through input_refs).
        gate_ids: the gate ids of the turns upstream of the turn.

    Returns:
        Dotted reference -> its `FieldKind` (never ``object``: a reference names a leaf).

    Raises:
        ProfileError: ``PROFILE_WHEN_NOT_UPSTREAM`` (figures: expression, column, output_type)
            for a root that is no upstream output; ``PROFILE_WHEN_UNKNOWN_GATE`` (gate_id);
            ``PROFILE_WHEN_UNKNOWN_FIELD`` (field) for a field the model or the gate verdict
            does not have, or a reference that stops at an object.
    """
    kinds: dict[str, FieldKind] = {}
    for ref in expression.refs:
        kinds[ref.dotted] = _reference_kind(expression.text, ref, models, gate_ids)
    return kinds


def _reference_kind(
    text: str,
    ref: FieldRef,
    models: Mapping[str, type[BaseModel] | None],
    gate_ids: set[str] | frozenset[str],
) -> FieldKind:
    if ref.root == GATES_ROOT:
        if not ref.path or ref.path[0] not in gate_ids:
            gate = ref.path[0] if ref.path else ""
            raise ProfileError(
                PROFILE_WHEN_UNKNOWN_GATE,
                _message(
                    text,
                    f"gate {gate!r} is not the gate of a turn upstream of this one (upstream gates: "
                    f"{sorted(gate_ids)})",
                    ref.column,
                ),
                expression=text,
                column=ref.column,
                gate_id=gate,
            )
        if len(ref.path) != 2 or ref.path[1] not in GATE_FIELDS:
            raise ProfileError(
                PROFILE_WHEN_UNKNOWN_FIELD,
                _message(text, f"{ref.dotted}: a gate verdict offers {sorted(GATE_FIELDS)}", ref.column),
                expression=text,
                column=ref.column,
                field=ref.dotted,
            )
        return GATE_FIELDS[ref.path[1]]
    if ref.root not in models:
        raise ProfileError(
            PROFILE_WHEN_NOT_UPSTREAM,
            _message(
                text,
                f"{ref.root!r} is not the output of a turn upstream of this one through input_refs "
                f"(upstream: {sorted(models)})",
                ref.column,
            ),
            expression=text,
            column=ref.column,
            output_type=ref.root,
        )
    model = models[ref.root]
    kind = FieldKind("object", model=model)
    for depth, name in enumerate(ref.path):
        fields = kind.model.model_fields if kind.model is not None else {}
        if name not in fields:
            where = ".".join((ref.root, *ref.path[:depth]))
            raise ProfileError(
                PROFILE_WHEN_UNKNOWN_FIELD,
                _message(
                    text,
                    f"{where} has no field {name!r}"
                    + ("" if kind.model is not None else " (its output type has no registered payload model)")
                    + (f"; fields: {sorted(fields)}" if fields else ""),
                    ref.column,
                ),
                expression=text,
                column=ref.column,
                field=ref.dotted,
            )
        kind = kind_of(fields[name].annotation)
        if kind.kind != "object" and depth < len(ref.path) - 1:
            raise ProfileError(
                PROFILE_WHEN_UNKNOWN_FIELD,
                _message(
                    text,
                    f"{'.'.join((ref.root, *ref.path[: depth + 1]))} is a {kind.kind}, it has no fields",
                    ref.column,
                ),
                expression=text,
                column=ref.column,
                field=ref.dotted,
            )
    if kind.kind == "object":
        raise ProfileError(
            PROFILE_WHEN_UNKNOWN_FIELD,
            _message(text, f"{ref.dotted} is an object; name one of its fields", ref.column),
            expression=text,
            column=ref.column,
            field=ref.dotted,
        )
    return kind


def check_types(expression: Expression, kinds: Mapping[str, FieldKind]) -> None:
    """Refuse what cannot be compared or is not a boolean, as far as it shows without running.

    Ordering (``<`` ...) needs two numbers; ``==``/``!=`` need two values of one kind (an
    enum compares with a string literal among its values); operands of ``and``/``or``/``not``
    and the whole expression must be booleans; a collection field is never comparable.

    Args:
        expression: the parsed expression.
        kinds: `reference_kinds` of it.

    Raises:
        ProfileError: ``PROFILE_WHEN_TYPE_MISMATCH`` (figures: expression, column, expected, found).
    """
    found = _kind_of_node(expression, expression.tree, kinds)
    if found != "bool":
        raise ProfileError(
            PROFILE_WHEN_TYPE_MISMATCH,
            _message(expression.text, f"the expression is a {found}, not a boolean", 1),
            expression=expression.text,
            column=1,
            expected="bool",
            found=found,
        )


def _kind_of_node(expression: Expression, node: ast.expr, kinds: Mapping[str, FieldKind]) -> str:
    text = expression.text
    if isinstance(node, ast.BoolOp | ast.UnaryOp) and not (
        isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub)
    ):
        operands = node.values if isinstance(node, ast.BoolOp) else [node.operand]
        for operand in operands:
            found = _kind_of_node(expression, operand, kinds)
            if found != "bool":
                raise ProfileError(
                    PROFILE_WHEN_TYPE_MISMATCH,
                    _message(text, f"and/or/not need booleans, not a {found}", operand.col_offset + 1),
                    expression=text,
                    column=operand.col_offset + 1,
                    expected="bool",
                    found=found,
                )
        return "bool"
    if isinstance(node, ast.Compare):
        operands = [node.left, *node.comparators]
        for op, left, right in zip(node.ops, operands, operands[1:], strict=False):
            _check_pair(expression, op, left, right, kinds)
        return "bool"
    return _operand(expression, node, kinds)[0].kind if not _is_literal(node) else _literal_kind(node)


def _is_literal(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant | ast.UnaryOp) or (
        isinstance(node, ast.Name) and node.id in _BOOL_NAMES
    )


def _literal_kind(node: ast.expr) -> str:
    value = _literal(node)
    if isinstance(value, bool):
        return "bool"
    return "string" if isinstance(value, str) else "number"


def _operand(expression: Expression, node: ast.expr, kinds: Mapping[str, FieldKind]) -> tuple[FieldKind, Any]:
    """(kind, literal value or None) of a comparison operand."""
    if _is_literal(node):
        value = _literal(node)
        return FieldKind(_literal_kind(node)), value  # type: ignore[arg-type]
    if isinstance(node, ast.Name | ast.Attribute):
        return kinds[_field_ref(expression.text, node).dotted], None
    found = _kind_of_node(expression, node, kinds)
    return FieldKind(found), None  # type: ignore[arg-type]


def _check_pair(
    expression: Expression, op: ast.cmpop, left: ast.expr, right: ast.expr, kinds: Mapping[str, FieldKind]
) -> None:
    (lkind, lvalue), (rkind, rvalue) = _operand(expression, left, kinds), _operand(expression, right, kinds)
    column = left.col_offset + 1
    symbol = _OPERATOR_TEXT[type(op)]

    def mismatch(why: str, expected: str, found: str) -> ProfileError:
        return ProfileError(
            PROFILE_WHEN_TYPE_MISMATCH,
            _message(expression.text, f"{symbol}: {why}", column),
            expression=expression.text,
            column=column,
            expected=expected,
            found=found,
        )

    for kind in (lkind, rkind):
        if kind.kind == "collection":
            raise mismatch("a list, tuple or mapping field is not comparable", "scalar", "collection")
    if isinstance(op, _ORDERING):
        if lkind.kind != "number" or rkind.kind != "number":
            raise mismatch(
                f"ordering needs two numbers, not {lkind.kind} and {rkind.kind}",
                "number",
                f"{lkind.kind}/{rkind.kind}",
            )
        return
    textual = {"string", "enum"}
    if lkind.kind in textual and rkind.kind in textual:
        for kind, other in ((lkind, rvalue), (rkind, lvalue)):
            if kind.kind == "enum" and isinstance(other, str) and other not in kind.values:
                raise mismatch(f"{other!r} is not one of {list(kind.values)}", "|".join(kind.values), other)
        return
    if lkind.kind != rkind.kind:
        raise mismatch(f"cannot compare a {lkind.kind} with a {rkind.kind}", lkind.kind, rkind.kind)


def _literal(node: ast.expr) -> Any:
    if isinstance(node, ast.Name):
        return _BOOL_NAMES[node.id]
    if isinstance(node, ast.UnaryOp):
        return -node.operand.value  # type: ignore[attr-defined]  # parse allows '-' on numbers only
    return node.value  # type: ignore[attr-defined]


def validate(
    text: str,
    models: Mapping[str, type[BaseModel] | None],
    gate_ids: set[str] | frozenset[str],
) -> tuple[Expression, dict[str, FieldKind]]:
    """Parse ``text`` and run every load-time check: syntax, whitelist, references, types.

    Args:
        text: the ``when:`` value.
        models: as `reference_kinds`.
        gate_ids: as `reference_kinds`.

    Returns:
        The expression and the kind of each field it reads.

    Raises:
        ProfileError: as `parse`, `reference_kinds` and `check_types`.
    """
    expression = parse(text)
    kinds = reference_kinds(expression, models, gate_ids)
    check_types(expression, kinds)
    return expression, kinds


# --- evaluation ------------------------------------------------------------------------


def evaluate(
    expression: Expression, kinds: Mapping[str, FieldKind], read: Callable[[FieldRef], Any]
) -> Decision:
    """Evaluate ``expression`` over the values ``read`` gives; every field is read once, up front.

    Args:
        expression: a validated expression.
        kinds: its `reference_kinds` (free-text strings are recorded as digests).
        read: field reference -> its value (None when absent).

    Returns:
        The `Decision`: the result and every value read (strings of kind ``string`` as
        ``sha256:<hex>`` digests, so a decision never carries payload text). Raises nothing
        of its own; whatever ``read`` raises.
    """
    values = {ref.dotted: read(ref) for ref in expression.refs}
    result = _truth(_eval(expression, expression.tree, values))
    recorded = {
        name: digest_text(value) if isinstance(value, str) and kinds[name].kind == "string" else value
        for name, value in values.items()
    }
    return Decision(expression=expression.text, reads=recorded, result=result)


def _truth(value: Any) -> bool:
    return value is True


def _eval(expression: Expression, node: ast.expr, values: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.BoolOp):
        results = (_truth(_eval(expression, value, values)) for value in node.values)
        return all(results) if isinstance(node.op, ast.And) else any(results)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return not _truth(_eval(expression, node.operand, values))
    if isinstance(node, ast.Compare):
        operands = [_eval(expression, item, values) for item in (node.left, *node.comparators)]
        return all(
            _compare(op, left, right)
            for op, left, right in zip(node.ops, operands, operands[1:], strict=False)
        )
    if _is_literal(node):
        return _literal(node)
    return values[_field_ref(expression.text, node).dotted]


def _compare(op: ast.cmpop, left: Any, right: Any) -> bool:
    if isinstance(op, _EQUALITY):
        same = left == right and (isinstance(left, bool) == isinstance(right, bool))
        return same if isinstance(op, ast.Eq) else not same
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (left, right))
    if not numbers:
        return False  # null (an absent value) orders with nothing
    return {ast.Lt: left < right, ast.LtE: left <= right, ast.Gt: left > right, ast.GtE: left >= right}[
        type(op)
    ]
