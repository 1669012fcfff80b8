"""The deterministic analysis behind the architecture notes: module graph, entry points,
synthesis and verification, all read from a tree-scope context payload.

Every function here is a pure function of its inputs; the offline turns (``offline``)
call them, and the gates (``gates``) re-check their outputs with the same evidence rules
(`wf_pipeline.text.evidence.cited_evidence`).

Rules:

- A *source module* is a file of the context with a Python or JavaScript / TypeScript
  suffix (`sources`); a *package* is a directory holding at least one (``.`` is the root).
- A Python module's dotted name walks up its folders while they hold ``__init__.py``; a
  root holding ``__init__.py`` is named after the root itself (a copied package such as
  ``rich``). A file outside any package is a top-level module named by its stem.
- An import resolves to a module of the tree: Python absolute imports by their longest
  known prefix (``from a import b`` tries the submodule ``a.b`` first), relative ones
  from the importing module's package by their level; JS/TS specifiers starting with
  ``.`` as a path with ``.js .ts``... suffixes or ``/index.*``. Imports that resolve
  outside the tree are left out: the graph is of the repository's own packages.
- Layers: packages that import each other form one group (a strongly connected
  component); a group importing no other group is level 0, any other is one above the
  highest level it imports.
- Biggest modules: the `BIGGEST_MODULES` largest source modules with text in the context
  (a claim's size is checked against a file it can read). Source modules listed without
  text (over the scan's size limit, left out for the context budget...) are counted by
  reason, with the largest named, so the notes say which files the ranking could not see.
"""

from __future__ import annotations

import posixpath
from collections import defaultdict
from collections.abc import Iterable

from wf_pipeline.metadata.payloads import ContextFile, ContextPayload
from wf_pipeline.text.evidence import cited_evidence, collapse_whitespace
from wf_pipeline.workflows.architecture_notes.payloads import (
    ArchClaim,
    ArchitectureSynthesis,
    ArchVerification,
    BigModule,
    EntryPoint,
    EntryPoints,
    ImportEdge,
    Layer,
    ModuleGraph,
    PackageInfo,
    RejectedClaim,
    UnreadCount,
    UnreadModules,
)
from wf_pipeline.workflows.architecture_notes.sources import (
    SCRIPT_SUFFIXES,
    entry_points_of,
    imports_of,
    is_python,
    is_script,
)

BIGGEST_MODULES = 10
_PACKAGE_MARKERS = ("__init__.py", "index.js", "index.ts", "index.mjs", "index.tsx")


def package_of(path: str) -> str:
    """The package (directory) of a file path: its folder, ``.`` at the root."""
    return posixpath.dirname(path) or "."


def _join(directory: str, name: str) -> str:
    return name if directory == "." else f"{directory}/{name}"


class ModuleIndex:
    """The context's files by path and its Python modules by dotted name."""

    def __init__(self, context: ContextPayload) -> None:
        self.context = context
        self.paths = {file.path for file in context.files}
        self.by_module: dict[str, str] = {}
        self.module_of: dict[str, str] = {}
        for file in context.files:
            if is_python(file.path):
                name = self._dotted(file.path)
                self.module_of[file.path] = name
                # A package's __init__ names the package; a module never hides its package.
                self.by_module.setdefault(name, file.path)

    def _is_package(self, directory: str) -> bool:
        return _join(directory, "__init__.py") in self.paths

    def _dotted(self, path: str) -> str:
        stem = posixpath.basename(path).rsplit(".", 1)[0]
        parts = [] if stem == "__init__" else [stem]
        directory = package_of(path)
        while self._is_package(directory):
            parts.insert(0, self.context.target.name if directory == "." else posixpath.basename(directory))
            if directory == ".":
                break
            directory = package_of(directory)
        return ".".join(parts) or stem

    def python_targets(self, path: str, module: str, level: int, names: Iterable[str]) -> list[str]:
        """Files of the tree an import in ``path`` reaches (empty when it leaves the tree)."""
        if level:
            own = self.module_of.get(path, "").split(".")
            package = own if posixpath.basename(path) == "__init__.py" else own[:-1]
            if level - 1 > len(package) or not self._is_package(package_of(path)):
                return []
            base = package[: len(package) - (level - 1)]
            target = ".".join(base + ([module] if module else []))
        else:
            target = module
        found = [self.by_module[f"{target}.{name}"] for name in names if f"{target}.{name}" in self.by_module]
        parts = target.split(".")
        for end in range(len(parts), 0, -1):
            prefix = ".".join(parts[:end])
            if prefix in self.by_module:
                found.insert(0, self.by_module[prefix])
                break
        return found

    def script_target(self, path: str, specifier: str) -> str | None:
        """The file a relative JS/TS specifier names, or None."""
        if not specifier.startswith("."):
            return None
        base = posixpath.normpath(posixpath.join(package_of(path), specifier))
        if base.startswith(".."):
            return None
        candidates = [base] + [base + suffix for suffix in SCRIPT_SUFFIXES]
        candidates += [f"{base}/index{suffix}" for suffix in SCRIPT_SUFFIXES]
        return next((c for c in candidates if c in self.paths), None)


def source_files(context: ContextPayload) -> list[ContextFile]:
    """The context's source modules (Python, JS/TS), by path."""
    return sorted((f for f in context.files if is_python(f.path) or is_script(f.path)), key=lambda f: f.path)


def build_module_graph(context: ContextPayload) -> ModuleGraph:
    """Packages with their modules and sizes, and the import edges between them (module docstring)."""
    index = ModuleIndex(context)
    by_package: dict[str, list[ContextFile]] = defaultdict(list)
    for file in source_files(context):
        by_package[package_of(file.path)].append(file)
    packages = []
    for package in sorted(by_package):
        files = by_package[package]
        readable = [f for f in files if f.text is not None] or files
        marker = next((f for f in readable if posixpath.basename(f.path) in _PACKAGE_MARKERS), readable[0])
        packages.append(
            PackageInfo(
                package=package,
                evidence_path=marker.path,
                modules=len(files),
                bytes=sum(f.size for f in files),
            )
        )
    first: dict[tuple[str, str], tuple[str, str]] = {}
    counts: dict[tuple[str, str], int] = defaultdict(int)
    for file in source_files(context):
        if file.text is None:
            continue
        source = package_of(file.path)
        for finding in imports_of(file.path, file.text):
            if finding.language == "python":
                targets = index.python_targets(file.path, finding.module, finding.level, finding.names)
            else:
                target = index.script_target(file.path, finding.module)
                targets = [target] if target else []
            reached = {package_of(target) for target in targets} - {source}
            for package in sorted(reached):
                counts[(source, package)] += 1
                first.setdefault((source, package), (file.path, finding.line))
    edges = tuple(
        ImportEdge(
            source=s, target=t, evidence_path=first[(s, t)][0], evidence_quote=first[(s, t)][1], imports=n
        )
        for (s, t), n in sorted(counts.items())
    )
    return ModuleGraph(packages=tuple(packages), edges=edges)


def _main_module_name(index: ModuleIndex, path: str) -> str:
    module = index.module_of.get(path, "")
    return module.removesuffix(".__main__") if module.endswith(".__main__") else path


def _console_target(index: ModuleIndex, reference: str | None) -> str | None:
    if not reference:
        return None
    module = reference.split(":", 1)[0].strip()
    return index.by_module.get(module)


def build_entry_points(context: ContextPayload) -> EntryPoints:
    """Every entry point the context's files declare, by file path then line (`sources.entry_points_of`);
    an extracted file is read as its extract. Each (kind, path, name) is listed once."""
    index = ModuleIndex(context)
    entries = []
    for file in sorted(context.files, key=lambda f: f.path):
        if file.text is None:
            continue
        for finding in entry_points_of(file.path, file.text, extract=bool(file.extracted)):
            target = None
            name = finding.name
            if finding.kind == "main_module":
                name = _main_module_name(index, file.path)
            elif finding.kind == "main_guard":
                name = index.module_of.get(file.path, file.path)
            elif finding.kind == "console_script":
                target = _console_target(index, finding.reference)
            elif finding.kind == "npm_bin" and finding.reference:
                resolved = posixpath.normpath(posixpath.join(package_of(file.path), finding.reference))
                target = resolved if resolved in index.paths else None
            entries.append(
                EntryPoint(
                    kind=finding.kind,  # type: ignore[arg-type]
                    name=name,
                    evidence_path=file.path,
                    evidence_quote=finding.line,
                    target=target,
                )
            )
    return EntryPoints(entry_points=tuple(entries))


def _components(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components (Tarjan, iterative), each sorted."""
    index_of: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index_of:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index_of[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index_of:
                    index_of[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index_of[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index_of[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                result.append(sorted(component))
    return result


def layers_of(graph: ModuleGraph) -> tuple[Layer, ...]:
    """The packages by dependency level (module docstring)."""
    nodes = [package.package for package in graph.packages]
    edges: dict[str, set[str]] = defaultdict(set)
    for edge in graph.edges:
        edges[edge.source].add(edge.target)
    group_of: dict[str, int] = {}
    components = _components(nodes, edges)
    for number, component in enumerate(components):
        for member in component:
            group_of[member] = number
    level: dict[int, int] = {}
    # Tarjan emits a component after every component it reaches: levels fill in order.
    for number, component in enumerate(components):
        reached = {group_of[t] for m in component for t in edges.get(m, ()) if group_of[t] != number}
        level[number] = 1 + max((level[g] for g in reached), default=-1)
    by_level: dict[int, list[str]] = defaultdict(list)
    for package in nodes:
        by_level[level[group_of[package]]].append(package)
    return tuple(Layer(level=n, packages=tuple(sorted(by_level[n]))) for n in sorted(by_level))


def biggest_modules(context: ContextPayload, count: int = BIGGEST_MODULES) -> tuple[BigModule, ...]:
    """The ``count`` largest source modules with text in the context, largest first, then by path."""
    files = [f for f in source_files(context) if f.text is not None]
    ranked = sorted(files, key=lambda f: (-f.size, f.path))[:count]
    return tuple(BigModule(path=f.path, bytes=f.size) for f in ranked)


def unread_modules(context: ContextPayload) -> UnreadModules | None:
    """The source modules ``context`` lists without text (module docstring), or None when none.

    Returns:
        Their counts by omission reason (sorted by reason) and the largest (by scanned size in
        bytes, then path).
    """
    unread = [f for f in source_files(context) if f.text is None]
    if not unread:
        return None
    counts: dict[str, int] = defaultdict(int)
    for file in unread:
        counts[file.omitted] += 1  # type: ignore[index]  # no text means a reason (ContextFile)
    largest = min(unread, key=lambda f: (-f.size, f.path))
    return UnreadModules(
        reasons=tuple(UnreadCount(reason=r, files=n) for r, n in sorted(counts.items())),  # type: ignore[arg-type]
        largest=BigModule(path=largest.path, bytes=largest.size),
    )


def package_label(package: str) -> str:
    """How the notes name a package: its path with a trailing ``/``, ``.`` for the root."""
    return "." if package == "." else package + "/"


_KIND_WORDS = {
    "console_script": "console script",
    "main_module": "runnable package (python -m)",
    "main_guard": "script (main guard)",
    "npm_bin": "npm bin",
    "npm_script": "npm script",
    "dagster_definitions": "Dagster definitions",
    "http_route": "HTTP route",
}


def kind_words(kind: str) -> str:
    """The words the notes use for an entry kind."""
    return _KIND_WORDS.get(kind, kind)


def synthesize(context: ContextPayload, graph: ModuleGraph, entries: EntryPoints) -> ArchitectureSynthesis:
    """Layers, dependencies, entry points and biggest modules, with one claim per statement.

    Claim ids are ``a001``, ``a002``... in order: packages (by level), edges, entry
    points, biggest modules. Each cites a file of ``context``: a package its evidence
    module, an edge its first import line, an entry point its declaring line, a module
    itself (with its size). The unread source modules (`unread_modules`) are no claim:
    they are facts of the context's file list, shown as the ranking's caveat.
    """
    layers = layers_of(graph)
    info = {package.package: package for package in graph.packages}
    claims: list[ArchClaim] = []

    def add(**fields: object) -> None:
        claims.append(ArchClaim(claim_id=f"a{len(claims) + 1:03d}", **fields))  # type: ignore[arg-type]

    for layer in layers:
        for package in layer.packages:
            add(
                section="layers",
                statement=f"`{package_label(package)}` is at level {layer.level} with {info[package].modules} modules",
                evidence_path=info[package].evidence_path,
            )
    for edge in graph.edges:
        add(
            section="dependencies",
            statement=f"`{package_label(edge.source)}` imports `{package_label(edge.target)}`",
            evidence_path=edge.evidence_path,
            evidence_quote=edge.evidence_quote,
        )
    for entry in entries.entry_points:
        add(
            section="entry_points",
            statement=f"{entry.name} is a {kind_words(entry.kind)} declared in `{entry.evidence_path}`",
            evidence_path=entry.evidence_path,
            evidence_quote=entry.evidence_quote,
        )
    modules = biggest_modules(context)
    for module in modules:
        add(
            section="modules",
            statement=f"`{module.path}` has {module.bytes} bytes",
            evidence_path=module.path,
            size=module.bytes,
        )
    return ArchitectureSynthesis(
        title=context.target.name,
        layers=layers,
        edges=graph.edges,
        entry_points=entries.entry_points,
        biggest_modules=modules,
        unread_modules=unread_modules(context),
        claims=tuple(claims),
    )


def _whole_line(quote: str, text: str) -> bool:
    wanted = collapse_whitespace(quote)
    return any(collapse_whitespace(line) == wanted for line in text.splitlines())


def claim_problem(claim: ArchClaim, context: ContextPayload, *, strict: bool = False) -> str | None:
    """Why ``claim`` does not hold in ``context`` (a reason code), or None when it holds.

    The shared evidence rules (`cited_evidence`: path in the context with text, quote and
    symbol found) plus the claim's size for a ``modules`` claim. ``strict`` (``reverify``)
    adds: dependency and entry-point claims must give a quote (a ``python -m`` module is
    its own evidence), and a quote must be a whole line of the cited text, not a part of one.
    """
    evidence = cited_evidence(context, claim.evidence_path, claim.evidence_quote, claim.evidence_symbol)
    if evidence.path == "missing":
        return "PATH_MISSING"
    if evidence.path == "omitted":
        return "PATH_OMITTED"
    if evidence.quote_found is False:
        return "QUOTE_NOT_FOUND"
    if evidence.symbol_found is False:
        return "SYMBOL_NOT_FOUND"
    if claim.size is not None:
        cited = context.file(claim.evidence_path)
        if cited is None or cited.size != claim.size:
            return "SIZE_MISMATCH"
    if strict:
        needs_quote = claim.section == "dependencies" or (
            claim.section == "entry_points" and not claim.evidence_path.endswith("__main__.py")
        )
        if needs_quote and not claim.evidence_quote:
            return "QUOTE_REQUIRED"
        if claim.evidence_quote and not _whole_line(
            claim.evidence_quote, context.text_at(claim.evidence_path) or ""
        ):
            return "QUOTE_NOT_WHOLE_LINE"
    return None


def verify_synthesis(
    synthesis: ArchitectureSynthesis, context: ContextPayload, *, strict: bool = False
) -> ArchVerification:
    """Every claim of ``synthesis`` checked against ``context`` (`claim_problem`).

    Returns:
        The report: verified ids in synthesis order, the rejected ones with their reason,
        and the verified share (1.0 for a synthesis without claims).
    """
    verified: list[str] = []
    rejected: list[RejectedClaim] = []
    for claim in synthesis.claims:
        problem = claim_problem(claim, context, strict=strict)
        if problem is None:
            verified.append(claim.claim_id)
        else:
            rejected.append(RejectedClaim(claim_id=claim.claim_id, reason=problem))
    total = len(synthesis.claims)
    return ArchVerification(
        verified_claims=tuple(verified),
        rejected_claims=tuple(rejected),
        verified_share=round(len(verified) / total, 6) if total else 1.0,
        strict=strict,
    )
