"""Output schemas of the architecture notes' turns.

The plug-in registers these by output type (``plugin``); providers, gates and the offline
turns parse every output through them, strictly. Every path is relative to the scanned
root, POSIX; a package is a directory holding source modules (``.`` for the root).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from wf_pipeline.metadata.payloads import OmittedReason, StrictPayload

NonEmpty = Annotated[str, Field(min_length=1)]
EntryKind = Literal[
    "console_script",
    "main_module",
    "main_guard",
    "npm_bin",
    "npm_script",
    "dagster_definitions",
    "http_route",
]


class ImportEdge(StrictPayload):
    """One package importing another, with the first import line that shows it.

    Attributes:
        source: the importing package (a directory path).
        target: the imported package (a directory path).
        evidence_path: a module of ``source`` holding the import.
        evidence_quote: that import's first line, stripped.
        imports: how many import statements of ``source`` reach ``target``.
    """

    source: NonEmpty
    target: NonEmpty
    evidence_path: NonEmpty
    evidence_quote: NonEmpty
    imports: int = Field(ge=1)


class PackageInfo(StrictPayload):
    """One package: its source modules and their total size.

    Attributes:
        package: the directory path.
        evidence_path: one of its modules (its ``__init__`` or ``index`` first, else the first by path).
        modules: how many source modules it holds directly.
        bytes: their total size in bytes.
    """

    package: NonEmpty
    evidence_path: NonEmpty
    modules: int = Field(ge=1)
    bytes: int = Field(ge=0)


class ModuleGraph(StrictPayload):
    """Output of ``module_graph``: the packages and the import edges between them (internal only)."""

    packages: tuple[PackageInfo, ...] = ()
    edges: tuple[ImportEdge, ...] = ()


class EntryPoint(StrictPayload):
    """One way in: a console script, a ``__main__`` module, an npm bin or script, Dagster
    definitions, an HTTP route.

    Attributes:
        kind: which (`EntryKind`).
        name: the script, module, route (``GET /items``) or variable name.
        evidence_path: the file that declares it.
        evidence_quote: the declaring line, stripped (None for a ``__main__.py`` file,
            which is its own evidence).
        target: the module file it runs, when the declaration names one in the tree.
    """

    kind: EntryKind
    name: NonEmpty
    evidence_path: NonEmpty
    evidence_quote: str | None = None
    target: str | None = None


class EntryPoints(StrictPayload):
    """Output of ``entry_points``."""

    entry_points: tuple[EntryPoint, ...] = ()


class Layer(StrictPayload):
    """Packages at one level of the dependency order: level 0 imports no other package."""

    level: int = Field(ge=0)
    packages: tuple[NonEmpty, ...]


class ArchClaim(StrictPayload):
    """One statement the notes make, with its evidence (checked by `wf_pipeline.text.evidence`).

    Attributes:
        claim_id: ``a001``, ``a002``... in synthesis order.
        section: which part of the notes states it.
        statement: the statement, naming paths in code spans.
        evidence_path: a file of the context.
        evidence_quote: a line of it, or None (the path itself is the evidence).
        evidence_symbol: a name it holds, or None.
        size: for a ``modules`` claim, the file's size in bytes the statement gives.
    """

    claim_id: NonEmpty
    section: Literal["layers", "dependencies", "entry_points", "modules"]
    statement: NonEmpty
    evidence_path: NonEmpty
    evidence_quote: str | None = None
    evidence_symbol: str | None = None
    size: int | None = None


class BigModule(StrictPayload):
    """One of the largest source modules: its path and size in bytes."""

    path: NonEmpty
    bytes: int = Field(ge=0)


class UnreadCount(StrictPayload):
    """How many source modules the context lists without text for one reason."""

    reason: OmittedReason
    files: int = Field(ge=1)


class UnreadModules(StrictPayload):
    """Source modules the context lists (path and scanned size) without their text: never
    ranked among the biggest modules, which are read files only, so the notes say so.

    Attributes:
        reasons: counts by omission reason (``oversized``, ``budget``...), by reason.
        largest: the largest of them (path, scanned size in bytes).
    """

    reasons: tuple[UnreadCount, ...] = Field(min_length=1)
    largest: BigModule


class ArchitectureSynthesis(StrictPayload):
    """Output of ``synthesis``: layers, dependencies, entry points, biggest modules, and the claims.

    Attributes:
        title: the repository's name (the scanned root's).
        layers: packages by dependency level (`Layer`).
        edges: the module graph's edges.
        entry_points: the entry points.
        biggest_modules: the largest source modules with text in the context, largest first.
        unread_modules: the source modules without text in the context, or None when
            every one was read.
        claims: every statement the notes make, one per edge, entry point, package and module.
    """

    title: NonEmpty
    layers: tuple[Layer, ...] = ()
    edges: tuple[ImportEdge, ...] = ()
    entry_points: tuple[EntryPoint, ...] = ()
    biggest_modules: tuple[BigModule, ...] = ()
    unread_modules: UnreadModules | None = None
    claims: tuple[ArchClaim, ...] = ()


class RejectedClaim(StrictPayload):
    """A claim that did not hold, with its reason code (``PATH_MISSING``, ``QUOTE_NOT_FOUND``...)."""

    claim_id: NonEmpty
    reason: NonEmpty


class ArchVerification(StrictPayload):
    """Output of ``verification`` and of ``reverify`` (``strict`` true): which claims hold.

    Attributes:
        verified_claims: ids of the claims that hold, in synthesis order.
        rejected_claims: the others, with a reason each.
        verified_share: verified / all claims (1.0 when there are none); the figure a
            profile's ``when:`` compares with its threshold.
        strict: whether the stricter rules of ``reverify`` were applied.
    """

    verified_claims: tuple[NonEmpty, ...] = ()
    rejected_claims: tuple[RejectedClaim, ...] = ()
    verified_share: float = Field(ge=0, le=1)
    strict: bool = False


# Output type -> schema, registered by the plug-in.
OUTPUT_MODELS: dict[str, type[StrictPayload]] = {
    "module_graph": ModuleGraph,
    "entry_points": EntryPoints,
    "architecture_synthesis": ArchitectureSynthesis,
    "architecture_verification": ArchVerification,
    "architecture_reverification": ArchVerification,
}
