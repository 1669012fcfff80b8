"""The architecture notes as markdown: docs/ARCHITECTURE.md from the synthesis and its verification.

Only verified claims are shown: a package, an edge, an entry point or a module whose claim
was rejected is left out (counted in the closing line). Every path is a code span (a
package with a trailing ``/``, ``.`` for the root) and every entry point name is bold,
so a reader (and a test) can check each against the tree. Source modules the context lists
without text are not ranked; a caveat under "Biggest modules" says how many, why, and names
the largest (`unread_caveat`). When the stricter
``reverify`` report is given, its verdicts replace the first verification's and a
visible "needs review" notice opens the notes.
"""

from __future__ import annotations

import re

from wf_pipeline.workflows.architecture_notes.analysis import kind_words, package_label
from wf_pipeline.workflows.architecture_notes.payloads import (
    ArchitectureSynthesis,
    ArchVerification,
    UnreadModules,
)

NOTICE_MARKER = "**Needs review.**"
# Characters escaped in entry point names, so that a name such as ``pkg.__main__`` is shown as
# written and never read as emphasis or a link.
_MARKUP = re.compile(r"([\\`*_\[\]<>])")


def escape_name(name: str) -> str:
    """``name`` with Markdown's inline markup characters backslash-escaped."""
    return _MARKUP.sub(r"\\\1", name)


TITLE_PREFIX = "# Architecture of "
_REASON_WORDS = {
    "oversized": "over the scan's size limit",
    "binary": "binary",
    "unreadable": "unreadable",
    "budget": "left out to fit the context budget",
}


def unread_caveat(unread: UnreadModules) -> str:
    """The caveat under "Biggest modules": how many source modules were not read, why, the largest."""
    total = sum(count.files for count in unread.reasons)
    why = ", ".join(f"{count.files} {_REASON_WORDS[count.reason]}" for count in unread.reasons)
    modules = "module was" if total == 1 else "modules were"
    return (
        f"Not ranked: {total} source {modules} not read ({why}); the largest is "
        f"`{unread.largest.path}` ({unread.largest.bytes:,} bytes)."
    )


def title_line(synthesis: ArchitectureSynthesis) -> str:
    """The notes' first line."""
    return f"{TITLE_PREFIX}{synthesis.title}"


def render_notes(
    synthesis: ArchitectureSynthesis, report: ArchVerification, reverify: ArchVerification | None = None
) -> str:
    """The markdown of the notes (see the module docstring).

    Args:
        synthesis: the ``synthesis`` turn's output.
        report: the ``verification`` turn's output.
        reverify: the ``reverify`` turn's output, or None when that turn did not run.

    Returns:
        Markdown text ending in one newline.
    """
    verdict = reverify or report
    verified = set(verdict.verified_claims)
    by_section: dict[str, list] = {"layers": [], "dependencies": [], "entry_points": [], "modules": []}
    for claim in synthesis.claims:
        by_section[claim.section].append(claim.claim_id in verified)
    kept = iter(by_section["layers"])
    lines = [title_line(synthesis), ""]
    if reverify is not None:
        lines += [
            f"> {NOTICE_MARKER} These notes took the low-confidence path: they were checked again with "
            f"stricter rules and show only the {len(reverify.verified_claims)} of {len(synthesis.claims)} "
            "claims that hold. Check them before relying on them.",
            "",
        ]
    lines += [
        "Generated from the repository's own imports and declarations. Level 0 packages import no other",
        "package of the repository; each higher level imports only lower levels (packages that import",
        "each other share a level).",
        "",
        "## Layers",
        "",
    ]
    layer_lines = []
    for layer in synthesis.layers:
        shown = [package_label(p) for p in layer.packages if next(kept)]
        if shown:
            layer_lines.append(f"- Level {layer.level}: " + ", ".join(f"`{p}`" for p in shown))
    lines += layer_lines or ["No source packages found."]
    lines += ["", "## Dependencies", ""]
    targets: dict[str, list[str]] = {}
    for edge, ok in zip(synthesis.edges, by_section["dependencies"], strict=True):
        if ok:
            targets.setdefault(edge.source, []).append(edge.target)
    dependency_lines = [
        f"- `{package_label(source)}` imports " + ", ".join(f"`{package_label(t)}`" for t in shown)
        for source, shown in sorted(targets.items())
    ]
    lines += dependency_lines or ["No imports between the repository's packages."]
    lines += ["", "## Entry points", ""]
    entry_lines = []
    for entry, ok in zip(synthesis.entry_points, by_section["entry_points"], strict=True):
        if not ok:
            continue
        runs = f", runs `{entry.target}`" if entry.target else ""
        entry_lines.append(
            f"- **{escape_name(entry.name)}**: {kind_words(entry.kind)} in `{entry.evidence_path}`{runs}"
        )
    lines += entry_lines or ["No entry points declared."]
    lines += ["", "## Biggest modules", ""]
    module_lines = [
        f"- `{module.path}`: {module.bytes:,} bytes"
        for module, ok in zip(synthesis.biggest_modules, by_section["modules"], strict=True)
        if ok
    ]
    if synthesis.unread_modules is not None:
        lines += module_lines + ([""] if module_lines else []) + [unread_caveat(synthesis.unread_modules)]
    else:
        lines += module_lines or ["No source modules."]
    left_out = len(synthesis.claims) - len(verified & {c.claim_id for c in synthesis.claims})
    if left_out:
        lines += ["", f"{left_out} statements did not hold against the tree and are left out."]
    return "\n".join(lines) + "\n"
