"""The offline provider turns a real context payload into grounded docs-writer outputs."""

from __future__ import annotations

import json
import re

import pytest

from wf_pipeline.errors import ProviderError
from wf_pipeline.metadata.canonical import canonical_json
from wf_pipeline.metadata.payloads import ContextChild, ContextFile, ContextPayload, parse_json_output
from wf_pipeline.providers import ProviderRequest, create_provider
from wf_pipeline.workflows.docs_writer.extract import (
    MAX_CHILD_SCOPE_NAMES,
    child_findings,
    script_export_findings,
)
from wf_pipeline.workflows.docs_writer.payloads import (
    EVIDENCE_MAP_HEADINGS,
    README_SECTIONS,
    EvidenceMap,
    ReadmeStruct,
    VerificationReport,
)
from wf_pipeline.workflows.docs_writer.render import render_readme

PYTHON_SOURCE = '''"""Load and validate pipeline settings.

Longer explanation that is not part of the summary.
"""

from __future__ import annotations

__all__ = ["Settings", "load_settings", "merge"]

DEFAULT_LIMIT = 3


class Settings:
    """Validated settings for one run."""

    def validate(self) -> None:
        """Check values."""

    def to_dict(self) -> dict:
        return {}

    def _cache(self):
        pass


def load_settings(path: str, *, strict: bool = True, limit=DEFAULT_LIMIT) -> Settings:
    """Read settings from ``path``.

    Details.
    """
    return Settings()


async def merge(a: dict, b: dict, /, *extra: dict, **overrides: str) -> dict:
    """Merge settings dictionaries."""
    return {**a, **b}


def helper_not_exported():
    """Public-looking but not in __all__."""


def _private_helper():
    """Hidden."""


class _Internal:
    """Hidden class."""


if __name__ == "__main__":
    load_settings("settings.toml")
'''

PLAIN_PYTHON_SOURCE = """def visible(x):
    return x


def _hidden():
    return None
"""

TS_SOURCE = """import { thing } from "./thing";

/**
 * Add two numbers.
 * @param a first
 */
export function add(a: number, b: number): number {
  return a + b;
}

export class Widget {
  render(): string { return ""; }
}

export const VERSION = "1.2.0";
export interface Options { verbose: boolean }
export type Mode = "fast" | "slow";
export default async function main() {}
export { thing as reexported };
function internalOnly() {}
const notExported = 1;
"""

SHELL_SOURCE = """#!/usr/bin/env bash
# shellcheck disable=SC2086
# Build the documentation site and publish it.
# Requires a configured deploy key.
#
# Usage: publish.sh ENVIRONMENT
set -euo pipefail
echo "publishing"
"""

MARKDOWN_SOURCE = """# Operations guide

How to run the settings loader in production.

## Install

```bash
# not a heading inside a fence
pip install .
```

## Troubleshooting
"""

CHILD_README = """# plugins

Extension points for third-party loaders.

## Scope

- `base.py`
"""

BROKEN_PYTHON = "def broken(:\n    pass\n"


def _file(path: str, text: str | None = None, omitted: str | None = None) -> dict:
    entry = {"path": path, "name": path.rsplit("/", 1)[-1], "size": len(text or "x" * 2048)}
    entry.update({"text": text} if text is not None else {"omitted": omitted})
    return entry


def make_context(**overrides) -> ContextPayload:
    payload = {
        "schema": "wf.context.v2",
        "target": {"path": "pkg/settings", "name": "settings", "node_id": "node:" + "a" * 64},
        "files": [
            _file("pkg/settings/loader.py", PYTHON_SOURCE),
            _file("pkg/settings/plain.py", PLAIN_PYTHON_SOURCE),
            _file("pkg/settings/broken.py", BROKEN_PYTHON),
            _file("pkg/settings/index.ts", TS_SOURCE),
            _file("pkg/settings/publish.sh", SHELL_SOURCE),
            _file("pkg/settings/GUIDE.md", MARKDOWN_SOURCE),
            _file("pkg/settings/defaults.yaml", "limit: 3\nstrict: true\n"),
            _file("pkg/settings/logo.png", omitted="binary"),
        ],
        "children": [
            {
                "path": "pkg/settings/plugins",
                "name": "plugins",
                "node_id": "node:" + "b" * 64,
                "head_frame": CHILD_README,
            },
            {"path": "pkg/settings/empty", "name": "empty", "node_id": "node:" + "c" * 64},
        ],
    }
    payload.update(overrides)
    return ContextPayload.model_validate(payload)


def context_text(context: ContextPayload) -> str:
    return canonical_json(context.to_json()).decode()


def run_turn(output_type: str, inputs: dict[str, str], output_format: str = "json") -> str:
    provider = create_provider("offline")
    request = ProviderRequest(
        workflow_id="docs_writer_thread_v1",
        thread_id="thread:1",
        turn_id=output_type,
        output_type=output_type,
        output_format=output_format,
        system_prompt="ignored",
        user_prompt="ignored",
        inputs=inputs,
    )
    response = provider.complete(request)
    assert (response.provider_type, response.model) == ("offline", "offline-v1")
    return response.text


def evidence_map_for(context: ContextPayload) -> tuple[str, EvidenceMap]:
    text = run_turn("evidence_map", {"context": context_text(context)})
    return text, parse_json_output(text, EvidenceMap)


def all_statements(evidence_map: EvidenceMap) -> str:
    return "\n".join(claim.statement for claim in evidence_map.claims)


def test_every_claim_is_grounded_in_the_text_it_cites() -> None:
    context = make_context()
    _, evidence_map = evidence_map_for(context)
    assert evidence_map.claims
    for claim in evidence_map.claims:
        cited = context.text_at(claim.evidence_path)
        assert cited is not None, claim.claim_id
        if claim.evidence_quote:
            assert claim.evidence_quote in cited, claim.claim_id
        if claim.evidence_symbol:
            assert claim.evidence_symbol in cited, claim.claim_id
    assert "pkg/settings/logo.png" not in {claim.evidence_path for claim in evidence_map.claims}
    assert [c.claim_id for c in evidence_map.claims] == [
        f"c{n:03d}" for n in range(1, len(evidence_map.claims) + 1)
    ]


def test_python_claims_follow_all_and_skip_private_names() -> None:
    _, evidence_map = evidence_map_for(make_context())
    loader = [c for c in evidence_map.claims if c.evidence_path == "pkg/settings/loader.py"]
    symbols = {c.evidence_symbol for c in loader if c.kind in ("class", "function")}
    assert symbols == {"Settings", "load_settings", "merge"}
    statements = all_statements(evidence_map)
    for hidden in ("_private_helper", "_Internal", "helper_not_exported", "_cache", "_hidden"):
        assert hidden not in statements
    module = next(c for c in loader if c.kind == "module")
    assert module.evidence_quote == "Load and validate pipeline settings."
    assert "Longer explanation" not in statements
    by_symbol = {c.evidence_symbol: c.statement for c in loader if c.evidence_symbol}
    assert by_symbol["load_settings"] == (
        "`load_settings(path: str, *, strict: bool = True, limit=DEFAULT_LIMIT) -> Settings`"
        " — Read settings from `path`."  # the docstring's ``path``, read as Markdown
    )
    assert by_symbol["merge"] == (
        "`async merge(a: dict, b: dict, /, *extra: dict, **overrides: str) -> dict` — Merge settings dictionaries."
    )
    assert (
        by_symbol["Settings"]
        == "`Settings` — Validated settings for one run. Methods: `validate`, `to_dict`."
    )
    assert any(c.kind == "script" and c.evidence_quote == 'if __name__ == "__main__":' for c in loader)
    # Without __all__, every public top-level name counts.
    plain = [c.evidence_symbol for c in evidence_map.claims if c.evidence_path == "pkg/settings/plain.py"]
    assert plain == ["visible"]


def test_script_markdown_child_and_data_file_claims() -> None:
    _, evidence_map = evidence_map_for(make_context())
    exports = {c.evidence_symbol: c.statement for c in evidence_map.claims if c.kind == "export"}
    assert set(exports) == {"add", "Widget", "VERSION", "Options", "Mode", "main", "reexported"}
    assert exports["add"] == "`add(a: number, b: number): number` (function) — Add two numbers."
    assert exports["main"] == "`main()` (default async function)"
    script = next(c for c in evidence_map.claims if c.evidence_path == "pkg/settings/publish.sh")
    assert (script.kind, script.evidence_quote) == (
        "script",
        "# Build the documentation site and publish it.",
    )
    assert script.statement == (
        "`publish.sh` — Build the documentation site and publish it. Requires a configured deploy key."
    )
    headings = [c.evidence_quote for c in evidence_map.claims if c.kind == "heading"]
    assert headings == ["# Operations guide", "## Install", "## Troubleshooting"]
    child = next(c for c in evidence_map.claims if c.kind == "child")
    assert (child.evidence_path, child.evidence_quote) == ("pkg/settings/plugins", "# plugins")
    assert child.statement == "`plugins/` — Extension points for third-party loaders."
    assert child is evidence_map.claims[-1]
    data = next(c for c in evidence_map.claims if c.evidence_path == "pkg/settings/defaults.yaml")
    assert (data.kind, data.evidence_quote) == ("file", "limit: 3")
    broken = [c for c in evidence_map.claims if c.evidence_path == "pkg/settings/broken.py"]
    assert [(c.kind, c.evidence_quote) for c in broken] == [("file", "def broken(:")]


def test_outputs_are_deterministic_canonical_json() -> None:
    first, evidence_map = evidence_map_for(make_context())
    second, _ = evidence_map_for(make_context())
    assert first == second
    assert first == canonical_json(json.loads(first)).decode()
    shuffled = make_context(files=list(reversed(make_context().to_json()["files"])))
    assert evidence_map_for(shuffled)[0] == first


def _full_thread(context: ContextPayload, tamper=None) -> dict[str, str]:
    outputs = {"context": context_text(context)}
    outputs["evidence_map"] = run_turn("evidence_map", outputs)
    if tamper is not None:
        outputs["evidence_map"] = tamper(outputs["evidence_map"])
    outputs["verification_report"] = run_turn("verification_report", outputs)
    outputs["readme_struct"] = run_turn("readme_struct", outputs)
    outputs["readme_final"] = run_turn(
        "readme_final", {"readme_struct": outputs["readme_struct"]}, "markdown"
    )
    return outputs


def test_verification_accepts_untampered_claims() -> None:
    outputs = _full_thread(make_context())
    evidence_map = parse_json_output(outputs["evidence_map"], EvidenceMap)
    report = parse_json_output(outputs["verification_report"], VerificationReport)
    assert report.verified_claims == tuple(c.claim_id for c in evidence_map.claims)
    assert report.rejected_claims == () and report.reasons == {}


def _tampered(text: str) -> str:
    raw = json.loads(text)
    claims = raw["claims"]
    by_symbol = {c.get("evidence_symbol"): c for c in claims}
    by_symbol["merge"]["evidence_symbol"] = "merge_everything"
    by_symbol["merge"]["statement"] = "`merge_everything()` — Deletes all settings."
    by_symbol["add"]["evidence_quote"] = "export function add(a, b, c)"
    by_symbol["add"]["statement"] = "`add(a, b, c)` — adds three numbers"
    by_symbol["VERSION"]["statement"] = "`RELEASE` — the release string"
    forged = [
        ("c900", "`ghost.py` — haunts", "pkg/settings/ghost.py", {"evidence_quote": "boo"}),
        ("c901", "`logo.png` — a logo", "pkg/settings/logo.png", {"evidence_quote": "PNG"}),
        ("c902", "`empty/` — nothing", "pkg/settings/empty", {"evidence_quote": "# empty"}),
        ("c903", "`load` — loads", "pkg/settings/loader.py", {"evidence_symbol": "load"}),
        ("c001", "duplicate id", "pkg/settings/loader.py", {"evidence_symbol": "Settings"}),
    ]
    for claim_id, statement, path, evidence in forged:
        claims.append({"claim_id": claim_id, "statement": statement, "evidence_path": path, **evidence})
    return json.dumps(raw)


def test_verification_rejects_tampered_claims_with_reason_codes() -> None:
    outputs = _full_thread(make_context(), tamper=_tampered)
    evidence_map = parse_json_output(outputs["evidence_map"], EvidenceMap)
    report = parse_json_output(outputs["verification_report"], VerificationReport)
    id_of = {c.evidence_symbol or c.evidence_quote: c.claim_id for c in evidence_map.claims}
    assert report.reasons == {
        "c001": "CLAIM_DUPLICATE_ID",
        id_of["merge_everything"]: "EVIDENCE_NOT_FOUND",
        id_of["add"]: "EVIDENCE_NOT_FOUND",
        id_of["VERSION"]: "EVIDENCE_STATEMENT_UNRELATED",
        "c900": "EVIDENCE_PATH_MISSING",
        "c901": "EVIDENCE_OMITTED_FILE",
        "c902": "EVIDENCE_NOT_FOUND",
        "c903": "EVIDENCE_NOT_FOUND",
    }
    assert set(report.rejected_claims) == set(report.reasons)
    assert not set(report.verified_claims) & set(report.rejected_claims)
    assert len(report.verified_claims) == len({c.claim_id for c in evidence_map.claims}) - len(report.reasons)

    struct = parse_json_output(outputs["readme_struct"], ReadmeStruct)
    body = "\n".join(struct.sections().values())
    rejected = set(report.rejected_claims)
    for claim in evidence_map.claims:
        if claim.claim_id in rejected:
            assert claim.statement not in body, claim.claim_id
    assert "merge" not in body and "RELEASE" not in body and "VERSION" not in body
    assert "`load_settings(" in body


def test_readme_struct_is_grounded_and_relative() -> None:
    outputs = _full_thread(make_context())
    struct = parse_json_output(outputs["readme_struct"], ReadmeStruct)
    assert struct.title == "settings"
    sections = struct.sections()
    assert set(sections) == {"scope", "purpose", "api_surface", "usage", "related_components", "caveats"}
    assert sections["scope"].splitlines() == [
        "- `GUIDE.md` — Operations guide",
        "  - Sections: Install; Troubleshooting",
        "- `broken.py`",
        "- `defaults.yaml`",
        "- `index.ts`",
        "- `loader.py`",
        "- `plain.py`",
        "- `publish.sh`",
        "- `plugins/`",
    ]
    assert sections["purpose"] == "- `loader.py` — Load and validate pipeline settings."
    api = sections["api_surface"]
    assert "- `loader.py`\n  - `Settings` — Validated settings for one run." in api
    assert "- `index.ts`\n  - `add(a: number, b: number): number`" in api
    assert "- `plain.py`\n  - `visible(x)`" in api
    assert "`publish.sh` — Build the documentation site" in sections["usage"]
    assert "`loader.py` — script entry point" in sections["usage"]
    assert sections["related_components"] == "- `plugins/` — Extension points for third-party loaders."
    assert sections["caveats"].splitlines() == [
        "- `logo.png` — not included (binary)",
        "- `empty/` — no README available",
    ]
    assert "pkg/settings" not in json.dumps(json.loads(outputs["readme_struct"]))


def test_readme_struct_without_context_derives_the_title_from_cited_paths() -> None:
    outputs = _full_thread(make_context())
    without_context = {k: outputs[k] for k in ("evidence_map", "verification_report")}
    struct = parse_json_output(run_turn("readme_struct", without_context), ReadmeStruct)
    assert struct.title == "settings"
    assert struct.caveats is None
    assert "- `plugins/`" in (struct.scope or "")


def test_root_readme_struct_without_context_is_missing_input() -> None:
    root = make_context(
        target={"path": ".", "name": "repo", "node_id": "node:" + "d" * 64},
        files=[_file("tool.py", '"""Tool."""\n')],
        children=[],
    )
    outputs = _full_thread(root)
    assert parse_json_output(outputs["readme_struct"], ReadmeStruct).title == "repo"
    assert "- `tool.py`" in outputs["readme_final"]
    with pytest.raises(ProviderError) as caught:
        run_turn("readme_struct", {k: outputs[k] for k in ("evidence_map", "verification_report")})
    assert caught.value.code == "PROVIDER_INPUT_MISSING"


def test_readme_final_renders_every_section_and_parses_back() -> None:
    outputs = _full_thread(make_context())
    struct = parse_json_output(outputs["readme_struct"], ReadmeStruct)
    final = outputs["readme_final"]
    assert final == render_readme(struct)
    assert final.startswith("# settings\n\n") and final.endswith("\n") and not final.endswith("\n\n")
    headings = re.findall(r"^(#{1,6}) (.+)$", final, flags=re.MULTILINE)
    assert [text for _, text in headings] == ["settings", *(README_SECTIONS[k] for k in struct.sections())]
    assert not {text.lower() for _, text in headings} & set(EVIDENCE_MAP_HEADINGS)
    # Split back into sections: each body is exactly the struct's body.
    parsed = dict(re.findall(r"^## (.+?)\n\n(.*?)(?=\n\n## |\n\Z)", final, flags=re.MULTILINE | re.DOTALL))
    assert parsed == {README_SECTIONS[k]: v for k, v in struct.sections().items()}
    assert run_turn("readme_final", {"readme_struct": outputs["readme_struct"]}, "markdown") == final


def test_render_readme_omits_empty_sections() -> None:
    struct = ReadmeStruct(title="x", scope="- `a.py`\n", purpose="  ", usage=None)
    assert render_readme(struct) == "# x\n\n## Scope\n\n- `a.py`\n"
    assert render_readme(ReadmeStruct(title="x")) == "# x\n"


def test_unknown_output_type_is_unsupported() -> None:
    with pytest.raises(ProviderError) as caught:
        run_turn("poem", {"context": context_text(make_context())})
    assert caught.value.code == "PROVIDER_UNSUPPORTED_OUTPUT"


def test_missing_and_invalid_inputs_are_typed_errors() -> None:
    with pytest.raises(ProviderError) as caught:
        run_turn("evidence_map", {})
    assert caught.value.code == "PROVIDER_INPUT_MISSING"
    with pytest.raises(ProviderError) as caught:
        run_turn("verification_report", {"context": context_text(make_context()), "evidence_map": "not json"})
    assert (caught.value.code, caught.value.details["cause"]) == ("PROVIDER_INPUT_INVALID", "OUTPUT_NOT_JSON")
    with pytest.raises(ProviderError) as caught:
        run_turn("readme_final", {"readme_struct": '{"title": "x", "evidence_map": "leak"}'}, "markdown")
    assert (caught.value.code, caught.value.details["cause"]) == (
        "PROVIDER_INPUT_INVALID",
        "OUTPUT_SCHEMA_VIOLATION",
    )


def test_anonymous_default_exports_are_named_default() -> None:
    source = "export default class extends Base {}\nexport default { a: 1 };\nexport function* steps() {}\n"
    file = ContextFile(path="w.js", name="w.js", size=len(source), text=source)
    found = [(f.symbol, f.statement) for f in script_export_findings(file)]
    assert found == [
        ("default", "`default` (default class)"),
        ("default", "`default` (default export)"),
        ("steps", "`steps()` (function)"),
    ]


GROUNDED_SOURCE = '''"""Read ``WF_HOME`` into ``Settings`` and ``config.py``; see ``missing.py`` and ``plugins/``.

Second paragraph, not part of the summary.
"""


def load(path: str, *, hex_digest: str = "") -> None:
    """Load ``path`` with ``Settings.from_env``, not ``invented_helper``;
    ids look like ``sha256:<hex>`` or `[a]*b*`, one stray ` stays literal.
    """


class Store:
    """Keeps readings under ``root`` for ``Store.flush``, unlike ``Store.vanish``."""

    def __init__(self, root: str) -> None:
        self.root = root

    def flush(self) -> None:
        """Write out."""
'''

CONFIG_SOURCE = """class Settings:
    @classmethod
    def from_env(cls):
        return cls()
"""


def _grounding_context() -> ContextPayload:
    return make_context(
        files=[_file("pkg/settings/app.py", GROUNDED_SOURCE), _file("pkg/settings/config.py", CONFIG_SOURCE)],
    )


def test_quoted_prose_keeps_code_spans_only_for_what_the_directory_has() -> None:
    _, evidence_map = evidence_map_for(_grounding_context())
    by_kind = {
        (c.kind, c.evidence_symbol): c
        for c in evidence_map.claims
        if c.evidence_path == "pkg/settings/app.py"
    }
    module = by_kind[("module", None)]
    # Sibling definitions, files and child directories stay code; everything else turns into plain text.
    assert module.statement == (
        "`app.py` — Read WF_HOME into `Settings` and `config.py`; see missing.py and `plugins/`."
    )
    assert module.evidence_quote == (
        "Read ``WF_HOME`` into ``Settings`` and ``config.py``; see ``missing.py`` and ``plugins/``."
    )
    # The wrapped first paragraph reads as one sentence; a parameter of the function stays code.
    assert by_kind[("function", "load")].statement == (
        "`load(path: str, *, hex_digest: str = '') -> None` — Load `path` with `Settings.from_env`, not"
        " invented_helper; ids look like sha256:\\<hex> or \\[a\\]\\*b\\*, one stray \\` stays literal."
    )
    # A class's constructor parameters and its own members count for its docstring.
    assert by_kind[("class", "Store")].statement == (
        "`Store` — Keeps readings under `root` for `Store.flush`, unlike Store.vanish. Methods: `flush`."
    )
    report = parse_json_output(_full_thread(_grounding_context())["verification_report"], VerificationReport)
    assert report.rejected_claims == ()


def _child(name: str, readme: str) -> ContextChild:
    return ContextChild(path=f"pkg/{name}", name=name, node_id="node:" + "e" * 64, head_frame=readme)


def test_child_summary_is_its_first_purpose_item_without_the_file_name() -> None:
    readme = (
        "# sub\n\n## Scope\n\n- `__init__.py`\n- `core.py`\n\n"
        "## Purpose\n\n- `__init__.py` — sub: parse and check inputs.\n- `core.py` — Core helpers.\n"
    )
    (finding,) = child_findings(_child("sub", readme))
    assert finding.statement == "`sub/` — sub: parse and check inputs."
    assert finding.quote == "- `__init__.py` — sub: parse and check inputs."
    assert finding.quote in readme


def test_child_summary_without_purpose_lists_what_its_scope_names() -> None:
    readme = (
        "# docs\n\n## Scope\n\n- `a.md` — Alpha\n  - Sections: One; Two\n- `b.md`\n- `c/`\n\n"
        "## API surface\n\n- `x.py`\n  - `f()`\n"
    )
    (finding,) = child_findings(_child("docs", readme))
    assert finding.statement == "`docs/` — `a.md`, `b.md`, `c/`"
    assert finding.quote == "- `a.md` — Alpha"
    many = "# big\n\n## Scope\n\n" + "".join(f"- `f{n}.txt`\n" for n in range(MAX_CHILD_SCOPE_NAMES + 2))
    (finding,) = child_findings(_child("big", many))
    listed = ", ".join(f"`f{n}.txt`" for n in range(MAX_CHILD_SCOPE_NAMES))
    assert finding.statement == f"`big/` — {listed}, …"
    (finding,) = child_findings(_child("bare", "# bare\n"))
    assert (finding.statement, finding.quote) == ("`bare/` — bare", "# bare")
