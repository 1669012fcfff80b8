"""The context payload for one target directory, fitted to a byte budget.

Files are read again from disk and must still hash to the digest the scan recorded, so a
payload never mixes a scan's ids with bytes the scan did not see. Omitted files (binary,
oversized, unreadable) appear with their reason and never with text. A file's text is
decoded once, here, by the rule the scan judged it with
(`wf_pipeline.text.decoding.decode_source`: PEP 263 for Python sources, a byte order mark
dropped), so everything downstream reads the payload's str and never decodes again.

Fitting (`build_context` with ``max_bytes``, the profile's
``artifact_policy.max_context_bytes``), in this order, stopping as soon as the payload's
canonical JSON fits:

1. every file's whole text and every child's whole head frame;
2. per-file extracts: the largest files first, each file's text is replaced by the
   extract the workflow's extractor gives (whole lines of it: signatures, docstrings,
   headings; ``extracted: true``); then the children's head frames, largest first;
3. a selection: every readable file and child frame is first left out
   (``omitted: "budget"``), then put back in priority order while it fits. Children's
   frames come first (in path order: they summarise whole subtrees), then files ranked by
   `file_priority`: entry points, manifests and documentation (``__init__``,
   ``__main__``, ``index.*``, ``main.*``, ``cli.*``, ``setup.*``, ``package.json``,
   ``pyproject.toml``, ``Cargo.toml``, ``go.mod``, Markdown and reStructuredText files),
   then every other file; within a rank the smallest extract first
   (more files fit), then by path. A file that does not fit is skipped and the next one
   is tried.

If even the list of names does not fit, ``METADATA_BUDGET_EXCEEDED`` names the sizes.
Every step is a pure function of the texts and the budget, so the same tree and budget
always give the same payload.

Before fitting, every text may pass through a view (``build_context``'s ``view``): the
runtime passes the masked view of `wf_pipeline.security.redaction` there, so secret-shaped
values never enter a payload, its sizes, its extracts or anything fitted from them.

The extractor is the workflow's (a `Registry` by frame type, as output sinks are in
`wf_pipeline.runtime.sinks`): the docs writer registers its own, and the generic code
here never imports a workflow. Without one, step 2 is skipped.

A profile may widen the context to the whole subtree (``context: {scope: tree}``,
`build_tree_context`): every file below the target, with its path relative to the
scanned root, each shown as the workflow's extract from the start (an extract is whole
lines of the file, so quotes taken from it hold in the file). Such a payload has no
children. When it is still over ``max_bytes``, step 3 (the selection) fits it, as above:
entry points, manifests and documentation first, then the smallest extracts, then by path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from wf_pipeline.errors import (
    METADATA_BUDGET_EXCEEDED,
    TREE_CHANGED_DURING_RUN,
    TREE_EXTRACTOR_DUPLICATE,
    TREE_NOT_A_DIRECTORY,
    MetadataError,
    TreeError,
)
from wf_pipeline.metadata.canonical import canonical_json, digest
from wf_pipeline.metadata.payloads import ContextChild, ContextFile, ContextPayload, ContextTarget
from wf_pipeline.registry import Registry
from wf_pipeline.text.decoding import decode_source
from wf_pipeline.text.languages import detect_language, extension_language
from wf_pipeline.tree.scan import TreeNode, TreeScan

__all__ = [
    "ContextExtractor",
    "TextView",
    "build_context",
    "build_tree_context",
    "context_extractor",
    "context_json_text",
    "detect_language",
    "file_priority",
    "fit_context",
    "register_context_extractor",
]

# (file name, text) -> an extract of whole lines of ``text``, or None when the workflow
# has none for that file (it then stays whole until the selection step). A child's head
# frame (the workflow's own output) is passed with the name None.
ContextExtractor = Callable[[str | None, str], str | None]

# (file name, text) -> the text a payload shows of it; a child's head frame is passed with the
# name None. The runtime's masked view (`wf_pipeline.security.redaction.masked_text`).
TextView = Callable[[str | None, str], str]

_EXTRACTORS: Registry[str, ContextExtractor] = Registry(
    "context extractor", key="frame type", duplicate=TREE_EXTRACTOR_DUPLICATE
)


def register_context_extractor(frame_type: str, extractor: ContextExtractor) -> None:
    """Make ``extractor`` give the extracts of contexts built for profiles of ``frame_type``.

    Args:
        frame_type: the profile's frame type (``target_frame_type``).
        extractor: (file name, text) -> extract or None; a child's head frame is passed
            with the name None.

    Raises:
        TreeError: ``TREE_EXTRACTOR_DUPLICATE`` when another extractor serves ``frame_type``
            (registering the same one again is a no-op).
    """
    _EXTRACTORS.register(frame_type, extractor)


def context_extractor(frame_type: str) -> ContextExtractor | None:
    """The extractor registered for ``frame_type``, or None. Raises nothing."""
    return _EXTRACTORS.find(frame_type)


# Files that say most about a directory: package markers and entry points by their name
# without extension, manifests by their whole name, and documentation by its language.
_ENTRY_STEMS = frozenset({"__init__", "__main__", "index", "main", "cli", "setup"})
_ENTRY_NAMES = frozenset({"package.json", "pyproject.toml", "cargo.toml", "go.mod"})
_DOCUMENTATION_LANGUAGES = frozenset({"markdown", "restructuredtext"})


def file_priority(name: str) -> int:
    """0 for an entry point, package marker, manifest or documentation file; 1 for any other.

    Args:
        name: the file's name (case-insensitive; documentation is Markdown or
            reStructuredText by the language table, `wf_pipeline.text.languages`).

    Returns:
        The rank the selection keeps files in (lower first).
    """
    lowered = name.lower()
    stem = lowered.split(".", 1)[0]
    if stem in _ENTRY_STEMS or lowered in _ENTRY_NAMES:
        return 0
    return 0 if extension_language(name) in _DOCUMENTATION_LANGUAGES else 1


def _read_unchanged_text(scan: TreeScan, node: TreeNode) -> str:
    """The file's decoded text, provided its bytes still match the scan."""
    location = scan.absolute_path(node.path)
    try:
        with open(location, "rb") as handle:
            # One byte more than the scan saw is enough to tell the file grew.
            data = handle.read(node.size + 1)
    except OSError as exc:
        raise TreeError(
            TREE_CHANGED_DURING_RUN, f"{node.path} can no longer be read ({exc.strerror})", path=node.path
        ) from None
    current = digest(data)
    if current != node.content_digest:
        raise TreeError(
            TREE_CHANGED_DURING_RUN,
            f"{node.path} changed since the scan ({node.content_digest} -> {current})",
            path=node.path,
            expected=node.content_digest,
            actual=current,
        )
    text = decode_source(data, node.name)
    if text is None:
        # Unreachable for a scan of this release: the same bytes and name gave text there.
        raise TreeError(
            TREE_CHANGED_DURING_RUN, f"{node.path} was scanned as text but does not decode", path=node.path
        )
    return text


def _context_file(scan: TreeScan, node: TreeNode, view: TextView | None) -> ContextFile:
    text = None if node.omitted else _read_unchanged_text(scan, node)
    language = detect_language(node.name, text)
    if text is not None and view is not None:
        text = view(node.name, text)
    return ContextFile(
        path=node.path,
        name=node.name,
        size=node.size,
        language=language,
        text=text,
        omitted=node.omitted,
    )


def _json_size(entry: ContextFile | ContextChild) -> int:
    return len(canonical_json(entry.model_dump(mode="json", by_alias=True, exclude_none=True)))


class _Fitter:
    """The payload's entries and their canonical JSON sizes, summed without re-serialising."""

    def __init__(self, payload: ContextPayload) -> None:
        self.target = payload.target
        self.files = list(payload.files)
        self.children = list(payload.children)
        empty = ContextPayload(target=payload.target)
        # A JSON list of n items is "[" + items joined by "," + "]": n - 1 commas.
        self.base = len(canonical_json(empty.to_json()))
        self.file_sizes = [_json_size(f) for f in self.files]
        self.child_sizes = [_json_size(c) for c in self.children]

    def size(self) -> int:
        commas = max(0, len(self.files) - 1) + max(0, len(self.children) - 1)
        return self.base + sum(self.file_sizes) + sum(self.child_sizes) + commas

    def set_file(self, index: int, entry: ContextFile) -> int:
        """Replace file ``index``; returns the change in bytes."""
        size = _json_size(entry)
        change = size - self.file_sizes[index]
        self.files[index], self.file_sizes[index] = entry, size
        return change

    def set_child(self, index: int, entry: ContextChild) -> int:
        """Replace child ``index``; returns the change in bytes."""
        size = _json_size(entry)
        change = size - self.child_sizes[index]
        self.children[index], self.child_sizes[index] = entry, size
        return change

    def payload(self) -> ContextPayload:
        return ContextPayload(target=self.target, files=tuple(self.files), children=tuple(self.children))


def _extracted_file(file: ContextFile, extractor: ContextExtractor) -> ContextFile | None:
    if file.text is None or file.extracted:
        return None
    extract = extractor(file.name, file.text)
    if extract is None or len(extract) >= len(file.text):
        return None
    return file.model_copy(update={"text": extract, "extracted": True})


def _extracted_child(child: ContextChild, extractor: ContextExtractor) -> ContextChild | None:
    if child.head_frame is None or child.extracted:
        return None
    extract = extractor(None, child.head_frame)
    if extract is None or len(extract) >= len(child.head_frame):
        return None
    return child.model_copy(update={"head_frame": extract, "extracted": True})


def _fit_extracts(fitter: _Fitter, max_bytes: int, extractor: ContextExtractor) -> None:
    """Step 2: extracts, largest files first, then largest child frames, until the payload fits."""
    for index in sorted(
        range(len(fitter.files)), key=lambda i: (-fitter.file_sizes[i], fitter.files[i].path)
    ):
        if fitter.size() <= max_bytes:
            return
        extracted = _extracted_file(fitter.files[index], extractor)
        if extracted is not None:
            fitter.set_file(index, extracted)
    for index in sorted(
        range(len(fitter.children)), key=lambda i: (-fitter.child_sizes[i], fitter.children[i].path)
    ):
        if fitter.size() <= max_bytes:
            return
        extracted = _extracted_child(fitter.children[index], extractor)
        if extracted is not None:
            fitter.set_child(index, extracted)


def _fit_selection(fitter: _Fitter, max_bytes: int) -> None:
    """Step 3: leave every readable entry out, then put entries back by priority while they fit."""
    kept_files = {i: f for i, f in enumerate(fitter.files) if f.text is not None}
    kept_children = {i: c for i, c in enumerate(fitter.children) if c.head_frame is not None}
    for index, file in kept_files.items():
        fitter.set_file(index, file.model_copy(update={"text": None, "extracted": None, "omitted": "budget"}))
    for index, child in kept_children.items():
        fitter.set_child(
            index, child.model_copy(update={"head_frame": None, "extracted": None, "omitted": "budget"})
        )
    total = fitter.size()
    if total > max_bytes:
        raise MetadataError(
            METADATA_BUDGET_EXCEEDED,
            f"context of {fitter.target.path}: even the list of its {len(fitter.files)} files and "
            f"{len(fitter.children)} subdirectories is {total} bytes, over max_context_bytes {max_bytes}",
            budget="max_context_bytes",
            scope="context_artifact",
            size=total,
            limit=max_bytes,
        )
    for index in sorted(kept_children, key=lambda i: kept_children[i].path):
        change = _json_size(kept_children[index]) - fitter.child_sizes[index]
        if total + change <= max_bytes:
            total += fitter.set_child(index, kept_children[index])
    for index in sorted(
        kept_files,
        key=lambda i: (file_priority(kept_files[i].name), _json_size(kept_files[i]), kept_files[i].path),
    ):
        change = _json_size(kept_files[index]) - fitter.file_sizes[index]
        if total + change <= max_bytes:
            total += fitter.set_file(index, kept_files[index])


def fit_context(
    payload: ContextPayload, max_bytes: int, extractor: ContextExtractor | None = None
) -> ContextPayload:
    """``payload`` made to fit ``max_bytes`` of canonical JSON by the steps in the module docstring.

    Args:
        payload: a context payload with whole texts.
        max_bytes: the budget, bytes of the payload's canonical JSON.
        extractor: the workflow's extractor, or None (no extract step).

    Returns:
        ``payload`` itself when it fits, else a payload of at most ``max_bytes``.

    Raises:
        MetadataError: ``METADATA_BUDGET_EXCEEDED`` when even the names do not fit.
    """
    fitter = _Fitter(payload)
    if fitter.size() <= max_bytes:
        return payload
    if extractor is not None:
        _fit_extracts(fitter, max_bytes, extractor)
    if fitter.size() > max_bytes:
        # Selection starts from the extracts: a file kept is kept in its smallest form.
        _fit_selection(fitter, max_bytes)
    return fitter.payload()


def build_context(
    scan: TreeScan,
    dir_path: str,
    child_frames: Mapping[str, str | None],
    *,
    max_bytes: int | None = None,
    extractor: ContextExtractor | None = None,
    view: TextView | None = None,
) -> ContextPayload:
    """Context for the directory at ``dir_path``: its direct files (name order) and its
    direct child directories, each with its head frame's text from ``child_frames``
    (child path -> text; a missing or None entry means the child has none yet).

    File languages come from the one language table (``wf_pipeline.text.languages``).

    Args:
        scan: the tree as scanned.
        dir_path: the target directory, relative to the scanned root.
        child_frames: child path -> head frame text or None.
        max_bytes: the context budget in bytes of canonical JSON
            (``artifact_policy.max_context_bytes``); None for whole texts, unbounded.
        extractor: the workflow's extractor (`context_extractor`), used only over budget.
        view: what the payload shows of each file's text and child's head frame
            (`TextView`), applied before fitting; None shows them as they are. The
            language is still detected from the file's own text.

    Returns:
        The payload, within ``max_bytes`` (see the module docstring for how).

    Raises:
        TreeError: TREE_NODE_NOT_FOUND, TREE_NOT_A_DIRECTORY or TREE_CHANGED_DURING_RUN.
        MetadataError: METADATA_BUDGET_EXCEEDED when even the names are over ``max_bytes``.
    """
    target = scan.node(dir_path)
    if target.kind != "dir":
        raise TreeError(TREE_NOT_A_DIRECTORY, f"{dir_path} is a file, not a directory", path=dir_path)
    payload = ContextPayload(
        target=ContextTarget(path=target.path, name=target.name, node_id=target.node_id),
        files=tuple(_context_file(scan, node, view) for node in scan.files_in(dir_path)),
        children=tuple(
            ContextChild(
                path=node.path,
                name=node.name,
                node_id=node.node_id,
                head_frame=_viewed(child_frames.get(node.path), view),
            )
            for node in scan.dirs_in(dir_path)
        ),
    )
    return payload if max_bytes is None else fit_context(payload, max_bytes, extractor)


def build_tree_context(
    scan: TreeScan,
    dir_path: str,
    *,
    max_bytes: int | None = None,
    extractor: ContextExtractor | None = None,
    view: TextView | None = None,
) -> ContextPayload:
    """Context for the whole subtree at ``dir_path``: every file below it, each as its extract.

    The context of a profile declaring ``context: {scope: tree}``. Files come in scan order
    (parents before children, names in order), with paths relative to the scanned root;
    omitted files appear with their reason and size. Each readable file's text is passed
    through ``view`` first, then replaced by ``extractor``'s extract when that is shorter
    (``extracted: true``); a file the extractor gives None for stays whole. The payload has
    no children: their files are in it. Over ``max_bytes``, the selection step of
    `fit_context` keeps entry points, manifests and documentation first, then the
    smallest extracts, and marks the others ``omitted: "budget"``.

    Args:
        scan: the tree as scanned.
        dir_path: the target directory, relative to the scanned root (``.`` for the root).
        max_bytes: the context budget in bytes of canonical JSON; None for unbounded.
        extractor: the workflow's extractor (`context_extractor`), or None (whole texts).
        view: what the payload shows of each file's text (`TextView`), applied before the
            extract; None shows texts as they are.

    Returns:
        The payload, within ``max_bytes``.

    Raises:
        TreeError: TREE_NODE_NOT_FOUND, TREE_NOT_A_DIRECTORY or TREE_CHANGED_DURING_RUN.
        MetadataError: METADATA_BUDGET_EXCEEDED when even the names are over ``max_bytes``.
    """
    target = scan.node(dir_path)
    if target.kind != "dir":
        raise TreeError(TREE_NOT_A_DIRECTORY, f"{dir_path} is a file, not a directory", path=dir_path)
    prefix = "" if dir_path == "." else dir_path + "/"
    files = []
    for node in scan.nodes:
        if node.kind != "file" or not node.path.startswith(prefix):
            continue
        entry = _context_file(scan, node, view)
        if extractor is not None:
            entry = _extracted_file(entry, extractor) or entry
        files.append(entry)
    payload = ContextPayload(
        target=ContextTarget(path=target.path, name=target.name, node_id=target.node_id), files=tuple(files)
    )
    # Every file is already in its smallest form: fitting goes straight to the selection.
    return payload if max_bytes is None else fit_context(payload, max_bytes)


def _viewed(head_frame: str | None, view: TextView | None) -> str | None:
    return head_frame if head_frame is None or view is None else view(None, head_frame)


def context_json_text(payload: ContextPayload) -> str:
    """The canonical JSON text of a payload, the bytes stored and digested as its artifact."""
    return canonical_json(payload.to_json()).decode("utf-8")
