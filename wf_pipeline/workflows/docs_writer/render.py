"""README structure from verified claims, and its canonical markdown rendering.

Sections are assembled only from verified claims' statements and from facts stated by
the context payload itself (omitted files, children without a README); the only other
words are neutral labels. Paths are shown relative to the target directory.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable

from wf_pipeline.metadata.payloads import ContextPayload
from wf_pipeline.text.names import display_name, escape_inline
from wf_pipeline.workflows.docs_writer.extract import code, heading_level
from wf_pipeline.workflows.docs_writer.payloads import (
    README_SECTIONS,
    Claim,
    EvidenceMap,
    ReadmeStruct,
    VerificationReport,
)

_API_KINDS = frozenset({"class", "function", "export"})
# Omitted entries a shortened README still lists by name (`build_readme_struct`).
MAX_LISTED_OMISSIONS = 20


def render_readme(struct: ReadmeStruct) -> str:
    """The canonical markdown of a README structure (the form the final gate measures drift against).

    ``# title`` (Markdown punctuation in it escaped), then ``## heading`` and body for each non-empty section in README order;
    the text ends with exactly one newline.
    """
    parts = [f"# {escape_inline(struct.title)}\n\n"]
    parts.extend(
        f"## {README_SECTIONS[key]}\n\n{body.strip()}\n\n" for key, body in struct.sections().items()
    )
    return "".join(parts).rstrip("\n") + "\n"


def _parent(path: str) -> str:
    return posixpath.dirname(path) or "."


def _target_path(claims: Iterable[Claim]) -> str | None:
    """The directory every cited path sits directly in, when they agree on one."""
    parents = {_parent(claim.evidence_path) for claim in claims}
    return parents.pop() if len(parents) == 1 else None


def _relative(path: str, target: str) -> str:
    if target == ".":
        return path
    prefix = target.rstrip("/") + "/"
    return path[len(prefix) :] if path.startswith(prefix) else path


def _bullets(lines: Iterable[str]) -> str:
    return "\n".join(f"- {line}" for line in lines)


def _is_readme(path: str) -> bool:
    return posixpath.basename(path).lower().startswith("readme")


class _StructBuilder:
    def __init__(
        self,
        claims: list[Claim],
        context: ContextPayload | None,
        target: str,
        max_listed_omissions: int | None = None,
        undescribed: tuple[str, ...] = (),
    ) -> None:
        self.undescribed = undescribed
        self.claims = claims
        self.heading_claims: dict[str, list[Claim]] = {}
        for claim in claims:
            if claim.kind == "heading":
                self.heading_claims.setdefault(claim.evidence_path, []).append(claim)
        self.context = context
        self.target = target
        self.max_listed_omissions = max_listed_omissions

    def is_child(self, claim: Claim) -> bool:
        if self.context is not None:
            return self.context.child(claim.evidence_path) is not None
        return claim.kind == "child"

    def of_kind(self, *kinds: str | None) -> list[Claim]:
        return [claim for claim in self.claims if claim.kind in kinds]

    def headings(self, path: str) -> list[tuple[int, str]]:
        """(level, text) of the cited headings of one document, in document order."""
        prefix = f"{code(posixpath.basename(path))} — "
        found = []
        for claim in self.heading_claims.get(path, ()):
            # Parsing a quote as Markdown is the costly part: only the document's own
            # heading claims get there, so a directory of many files stays linear.
            if not claim.statement.startswith(prefix):
                continue
            level = heading_level(claim.evidence_quote or "")
            if level:
                found.append((level, claim.statement.removeprefix(prefix)))
        return found

    def scope_entry(self, path: str) -> str:
        """A file's Scope entry; a document's also names its first heading and its sections."""
        entry = f"- {code(_relative(path, self.target))}"
        headings = self.headings(path)
        if not headings:
            return entry
        (_, first), *rest = headings
        sections = [text for level, text in rest if level == 2]
        listed = f"\n  - Sections: {'; '.join(sections)}" if sections else ""
        return f"{entry} — {first}{listed}"

    def scope(self) -> str:
        files = sorted({c.evidence_path for c in self.claims if not self.is_child(c)})
        children = sorted({c.evidence_path for c in self.claims if self.is_child(c)})
        entries = [self.scope_entry(path) for path in files]
        entries += [f"- {code(_relative(path, self.target) + '/')}" for path in children]
        return "\n".join(entries)

    def purpose(self) -> str:
        statements = [c.statement for c in self.claims if c.kind == "module"]
        readme_paths = sorted({c.evidence_path for c in self.claims if _is_readme(c.evidence_path)})
        for path in readme_paths:
            cited = [c for c in self.claims if c.evidence_path == path]
            described = [c for c in cited if c.kind == "file"] or [c for c in cited if c.kind == "heading"][
                :1
            ]
            statements.extend(c.statement for c in described)
        return _bullets(statements)

    def api_surface(self) -> str:
        by_path: dict[str, list[str]] = {}
        for claim in self.claims:
            if claim.kind in _API_KINDS or (claim.kind is None and claim.evidence_symbol):
                by_path.setdefault(claim.evidence_path, []).append(claim.statement)
        blocks = []
        for path in sorted(by_path):
            items = "\n".join(f"  - {statement}" for statement in by_path[path])
            blocks.append(f"- {code(_relative(path, self.target))}\n{items}")
        return "\n".join(blocks)

    def behavior_notes(self) -> str:
        # Claims of no known kind and without a symbol carry a fact but no structural place.
        return _bullets(c.statement for c in self.claims if c.kind is None and not c.evidence_symbol)

    def usage(self) -> str:
        return _bullets(c.statement for c in self.of_kind("script"))

    def related_components(self) -> str:
        return _bullets(
            c.statement for c in self.claims if c.kind == "child" or (c.kind is None and self.is_child(c))
        )

    def caveats(self) -> str:
        if self.context is None:
            return ""
        notes = [f"{code(f.name)} — not included ({f.omitted})" for f in self.context.files if f.omitted]
        notes += [
            f"{code(c.name + '/')} — README not included ({c.omitted})"
            if c.omitted
            else f"{code(c.name + '/')} — no README available"
            for c in self.context.children
            if not c.head_frame
        ]
        notes += [
            f"{code(_relative(path, self.target))} — not described (output limit)"
            for path in self.undescribed
        ]
        if self.max_listed_omissions is not None and len(notes) > self.max_listed_omissions:
            more = len(notes) - self.max_listed_omissions
            notes = notes[: self.max_listed_omissions] + [f"{more} more entries — not included"]
        return _bullets(notes)


def build_readme_struct(
    evidence_map: EvidenceMap,
    report: VerificationReport,
    context: ContextPayload | None,
    max_listed_omissions: int | None = None,
) -> ReadmeStruct | None:
    """The README structure of the target, or None when its title cannot be known.

    Caveats list every file the context left out (binary, oversized, unreadable, or over
    the context budget), every child without a README, and every path the evidence map
    left undescribed to fit its output limit; with ``max_listed_omissions``,
    only that many by name and then how many more.

    The title is the target's name from the context; without a context it is the name
    of the directory all claims cite, which is unknowable for the scanned root.
    """
    rejected = set(report.rejected_claims)
    verified_ids = set(report.verified_claims) - rejected
    verified = [c for c in evidence_map.claims if c.claim_id in verified_ids]
    excluded = [c.statement for c in evidence_map.claims if c.claim_id not in verified_ids]

    def is_clean(text: str) -> bool:
        return not any(statement in text for statement in excluded)

    # A verified statement that quotes an excluded one would carry that text along.
    verified = [c for c in verified if is_clean(c.statement)]

    if context is not None:
        target, title = context.target.path, display_name(context.target.name)
    else:
        target = _target_path(evidence_map.claims) or "."
        title = display_name(posixpath.basename(target)) if target != "." else ""
    if not title:
        return None

    undescribed = tuple(
        path
        for path in evidence_map.undescribed_paths or ()
        if context is None or context.file(path) is not None or context.child(path) is not None
    )
    builder = _StructBuilder(verified, context, target, max_listed_omissions, undescribed)
    sections: dict[str, str] = {}
    for key in README_SECTIONS:
        lines = getattr(builder, key)().splitlines()
        body = "\n".join(line for line in lines if is_clean(line)).strip()
        if body and is_clean(body):
            sections[key] = body
    return ReadmeStruct(title=title, **sections)
