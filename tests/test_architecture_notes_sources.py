"""The architecture notes' extractors: imports and entry points per kind of file, and the
analysis that resolves them against a tree-scope context."""

from __future__ import annotations

import re

import pytest

from wf_pipeline.metadata.payloads import ContextFile, ContextPayload, ContextTarget
from wf_pipeline.workflows.architecture_notes.analysis import (
    build_entry_points,
    build_module_graph,
    layers_of,
    synthesize,
    verify_synthesis,
)
from wf_pipeline.workflows.architecture_notes.context_extract import architecture_extract
from wf_pipeline.workflows.architecture_notes.render import NOTICE_MARKER, render_notes
from wf_pipeline.workflows.architecture_notes.sources import entry_points_of, imports_of


def _context(files: dict[str, str], name: str = "repo") -> ContextPayload:
    return ContextPayload(
        target=ContextTarget(path=".", name=name, node_id="n0"),
        files=tuple(
            ContextFile(path=path, name=path.rsplit("/", 1)[-1], size=len(text.encode()), text=text)
            for path, text in sorted(files.items())
        ),
    )


def test_python_absolute_relative_and_multiline_imports():
    text = "import os\nimport a.b as c, d\nfrom .x import y\nfrom .. import (\n    m,\n    n,\n)\n"
    found = [(f.module, f.level, f.names) for f in imports_of("pkg/sub/mod.py", text)]
    assert found == [("os", 0, ()), ("a.b", 0, ()), ("d", 0, ()), ("x", 1, ("y",)), ("", 2, ("m", "n"))]
    # The same statements read from an extract that does not parse (indented imports).
    indented = "def f():\n    from .x import y\n    from .. import (\n        m,\n    )\n"
    extract = architecture_extract("mod.py", indented)
    assert "def f" not in extract
    assert [(f.module, f.level, f.names) for f in imports_of("pkg/mod.py", extract)] == [
        ("x", 1, ("y",)),
        ("", 2, ("m",)),
    ]


def test_script_import_require_and_export_from():
    text = (
        "import React from 'react';\nimport './side.css';\nconst u = require(\"../util\");\n"
        "export { a } from './a';\nexport * from \"./b\";\nconst lazy = import('./c');\n// import x from './no'\n"
    )
    assert [f.module for f in imports_of("src/app.ts", text)] == [
        "react",
        "./side.css",
        "../util",
        "./a",
        "./b",
        "./c",
    ]


def test_pyproject_setup_cfg_and_package_json_entries():
    pyproject = (
        '[project]\nname = "x"\n\n[project.scripts]\nwf = "pkg.cli:main"\n\n[tool.other]\nno = "a:b"\n'
    )
    entries = entry_points_of("pyproject.toml", pyproject)
    assert [(e.kind, e.name, e.reference, e.line) for e in entries] == [
        ("console_script", "wf", "pkg.cli:main", 'wf = "pkg.cli:main"')
    ]
    cfg = "[metadata]\nname = x\n[options.entry_points]\nconsole_scripts =\n    tool = pkg.tool:run\n"
    assert [(e.name, e.reference) for e in entry_points_of("setup.cfg", cfg)] == [("tool", "pkg.tool:run")]
    manifest = '{\n  "name": "@scope/cli",\n  "bin": {"mycli": "./bin/cli.js"},\n  "scripts": {\n    "build": "tsc",\n    "test": "jest"\n  }\n}\n'
    found = [(e.kind, e.name) for e in entry_points_of("package.json", manifest)]
    assert found == [("npm_bin", "mycli"), ("npm_script", "build"), ("npm_script", "test")]
    single = '{"name": "@scope/tool", "bin": "cli.js"}'
    assert [(e.kind, e.name) for e in entry_points_of("package.json", single)] == [("npm_bin", "tool")]


def test_main_dagster_and_route_declarations():
    assert [e.kind for e in entry_points_of("pkg/__main__.py", "from .cli import main\nmain()\n")] == [
        "main_module"
    ]
    source = (
        "from flask import Flask\napp = Flask(__name__)\n\n@app.route('/items')\ndef items(): ...\n\n"
        '@router.post("/users")\nasync def create(): ...\n\n'
        'defs = Definitions(assets=[a])\n\nif __name__ == "__main__":\n    main()\n'
    )
    found = [(e.kind, e.name) for e in entry_points_of("app.py", source)]
    assert found == [
        ("http_route", "ROUTE /items"),
        ("http_route", "POST /users"),
        ("dagster_definitions", "defs"),
        ("main_guard", "app.py"),
    ]
    express = "const app = express();\napp.get('/health', handler);\nrouter.delete(\"/x/:id\", h);\n"
    assert [e.name for e in entry_points_of("server.js", express)] == ["GET /health", "DELETE /x/:id"]


def test_extract_keeps_whole_declaring_lines_only():
    source = '"""Doc."""\nimport os\n\nX = 1\n\n@app.get("/a")\ndef a():\n    return 1\n'
    extract = architecture_extract("m.py", source)
    assert extract == 'import os\n@app.get("/a")\n'
    assert architecture_extract("package.json", "{}") is None
    assert architecture_extract("README.md", "# Title\n") == ""


def test_graph_resolves_tree_imports_and_leaves_external_ones_out():
    context = _context(
        {
            "pkg/__init__.py": "from .core import run\n",
            "pkg/core.py": "import os\nfrom pkg.util import helper\n",
            "pkg/util/__init__.py": "from ..core import run\n",
            "pkg/__main__.py": "from pkg import core\n",
            "web/app.ts": "import { x } from '../web2/lib';\nimport y from 'react';\n",
            "web2/lib.ts": "export const x = 1;\n",
            "pyproject.toml": '[project.scripts]\nrun = "pkg.core:run"\n',
        }
    )
    graph = build_module_graph(context)
    assert {(e.source, e.target) for e in graph.edges} == {
        ("pkg", "pkg/util"),
        ("pkg/util", "pkg"),
        ("web", "web2"),
    }
    layers = layers_of(graph)
    # pkg and pkg/util import each other: one level; web2 imports nothing, web imports web2.
    assert [(layer.level, layer.packages) for layer in layers] == [
        (0, ("pkg", "pkg/util", "web2")),
        (1, ("web",)),
    ]
    entries = build_entry_points(context)
    assert {(e.kind, e.name, e.target) for e in entries.entry_points} == {
        ("main_module", "pkg", None),
        ("console_script", "run", "pkg/core.py"),
    }


def test_root_package_is_named_after_the_root():
    # A copied package (like `rich`): the root holds __init__.py and imports itself by name.
    context = _context(
        {
            "__init__.py": "",
            "console.py": "from rich.text import Text\n",
            "text.py": "",
            "sub/__init__.py": "from .. import console\n",
        },
        name="rich",
    )
    graph = build_module_graph(context)
    assert {(e.source, e.target) for e in graph.edges} == {("sub", ".")}


@pytest.mark.parametrize("strict", [False, True])
def test_every_synthesised_claim_verifies_and_render_shows_the_notice_only_after_reverify(strict):
    context = _context(
        {"a/__init__.py": "from b import x\n", "b/__init__.py": "x = 1\n", "b/__main__.py": ""}
    )
    synthesis = synthesize(context, build_module_graph(context), build_entry_points(context))
    report = verify_synthesis(synthesis, context, strict=strict)
    assert report.rejected_claims == () and report.verified_share == 1.0
    notes = render_notes(synthesis, report, report if strict else None)
    assert (NOTICE_MARKER in notes) is strict
    assert "- `a/` imports `b/`" in notes


def test_a_claim_that_does_not_hold_is_rejected_and_left_out():
    context = _context({"a/__init__.py": "from b import x\n", "b/__init__.py": "x = 1\n"})
    synthesis = synthesize(context, build_module_graph(context), build_entry_points(context))
    edge_claim = next(c for c in synthesis.claims if c.section == "dependencies")
    broken = synthesis.model_copy(
        update={
            "claims": tuple(
                c.model_copy(update={"evidence_quote": "from c import y"}) if c is edge_claim else c
                for c in synthesis.claims
            )
        }
    )
    report = verify_synthesis(broken, context)
    assert [(r.claim_id, r.reason) for r in report.rejected_claims] == [
        (edge_claim.claim_id, "QUOTE_NOT_FOUND")
    ]
    assert report.verified_share < 1.0
    assert "`a/` imports" not in render_notes(broken, report)
    # The stricter rules reject a quote that is only part of a line.
    partial = synthesis.model_copy(
        update={
            "claims": tuple(
                c.model_copy(update={"evidence_quote": "from b"}) if c is edge_claim else c
                for c in synthesis.claims
            )
        }
    )
    assert verify_synthesis(partial, context).rejected_claims == ()
    assert [r.reason for r in verify_synthesis(partial, context, strict=True).rejected_claims] == [
        "QUOTE_NOT_WHOLE_LINE"
    ]


def test_the_notes_gate_warns_on_the_low_confidence_path_and_fails_a_notice_out_of_place():
    from dataclasses import dataclass, field

    from wf_pipeline.gates import evaluate
    from wf_pipeline.workflows import load_builtin_workflows

    @dataclass(frozen=True)
    class NotesGate:
        gate_id: str = "notes_gate"
        gate_type: str = "arch_notes"
        required_fields: tuple[str, ...] = ()
        rules: dict = field(default_factory=dict)
        fail_on_violation: bool = True

    load_builtin_workflows()
    context = _context({"a/__init__.py": "from b import x\n", "b/__init__.py": "x = 1\n"})
    synthesis = synthesize(context, build_module_graph(context), build_entry_points(context))
    report = verify_synthesis(synthesis, context)
    reverify = verify_synthesis(synthesis, context, strict=True)
    inputs = {
        "context": context.model_dump_json(),
        "architecture_synthesis": synthesis.model_dump_json(),
        "architecture_verification": report.model_dump_json(),
    }
    low = {**inputs, "architecture_reverification": reverify.model_dump_json()}
    with_notice, without_notice = render_notes(synthesis, report, reverify), render_notes(synthesis, report)

    # The low-confidence path: the notice, a non-blocking finding pointing at it, outcome warn.
    warned = evaluate(NotesGate(), with_notice, low)
    assert (warned.outcome, warned.reasons) == ("warn", ("NOTES_NEED_REVIEW",))
    [finding] = warned.findings
    assert (finding.rule_id, finding.pointer) == ("notes.needs_review", "output:3")
    # The straight path passes; a notice out of place, or a missing one, fails.
    assert evaluate(NotesGate(), without_notice, inputs).outcome == "pass"
    assert evaluate(NotesGate(), with_notice, inputs).reasons == ("NOTICE_UNEXPECTED",)
    missing = evaluate(NotesGate(), without_notice, low)
    assert (missing.outcome, missing.reasons) == ("fail", ("NOTES_NEED_REVIEW", "NOTICE_MISSING"))


_DOCSTRING_EXAMPLES = '''"""Routing helpers.

Example::

    @app.route("/")
    def index(): ...

    @app.route("/")
    def again(): ...

    defs = Definitions(assets=[a])
"""
from flask import Flask

# @app.get("/commented")
GREETING = """
@app.post("/in-a-string")
"""


@app.get("/real")
def real(): ...


@api.get("/real")
def real_again(): ...


def build():
    """defs = Definitions(assets=[b])"""
    defs = Definitions(assets=[c])
    return defs


Definitions(assets=[d])
'''


def test_entry_points_come_from_code_not_strings_and_each_is_listed_once():
    expected = [
        ("http_route", "GET /real", '@app.get("/real")'),
        ("dagster_definitions", "defs", "defs = Definitions(assets=[c])"),
        ("dagster_definitions", "Definitions", "Definitions(assets=[d])"),
    ]
    found = [(e.kind, e.name, e.line) for e in entry_points_of("pkg/routes.py", _DOCSTRING_EXAMPLES)]
    assert found == expected
    # A file that does not parse declares nothing by pattern.
    assert entry_points_of("pkg/broken.py", '@app.get("/x")\ndef f(:\n') == []
    # Through the workflow's extract (which rarely parses) the same entries, each quote a line of it.
    extract = architecture_extract("routes.py", _DOCSTRING_EXAMPLES)
    context = ContextPayload(
        target=ContextTarget(path=".", name="repo", node_id="n0"),
        files=(ContextFile(path="pkg/routes.py", name="routes.py", size=123, text=extract, extracted=True),),
    )
    entries = build_entry_points(context).entry_points
    assert [(e.kind, e.name, e.evidence_quote) for e in entries] == expected
    synthesis = synthesize(context, build_module_graph(context), build_entry_points(context))
    assert verify_synthesis(synthesis, context, strict=True).rejected_claims == ()
    # JS/TS: routes inside comments, block comments included, are not routes.
    script = (
        "/*\n app.get('/doc', h);\n*/\n// app.get('/line', h);\napp.get('/live', h);\napp.get('/live', h);\n"
    )
    assert [e.name for e in entry_points_of("server.js", script)] == ["GET /live"]


def test_biggest_modules_say_which_source_modules_were_not_read():
    huge_size = 11 * 1024 * 1024
    context = ContextPayload(
        target=ContextTarget(path=".", name="repo", node_id="n0"),
        files=(
            ContextFile(path="pkg/__init__.py", name="__init__.py", size=0, text=""),
            ContextFile(path="pkg/huge.py", name="huge.py", size=huge_size, omitted="oversized"),
            ContextFile(path="pkg/late.py", name="late.py", size=900, omitted="budget"),
            ContextFile(path="pkg/small.py", name="small.py", size=40, text="x = 1\n" * 6 + "\n" * 4),
        ),
    )
    synthesis = synthesize(context, build_module_graph(context), build_entry_points(context))
    report = verify_synthesis(synthesis, context)
    assert report.rejected_claims == ()
    notes = render_notes(synthesis, report)
    biggest = notes.split("## Biggest modules", 1)[1]
    assert "- `pkg/small.py`: 40 bytes" in biggest
    assert (
        "Not ranked: 2 source modules were not read (1 left out to fit the context budget, "
        f"1 over the scan's size limit); the largest is `pkg/huge.py` ({huge_size:,} bytes)."
    ) in biggest
    # Every code span of the notes names a file or folder of the tree.
    paths = {f.path for f in context.files} | {"pkg/", "."}
    assert set(re.findall(r"`([^`\n]+)`", notes)) <= paths
    # Every module read: no caveat.
    read = context.model_copy(update={"files": (context.files[0], context.files[3])})
    read_synthesis = synthesize(read, build_module_graph(read), build_entry_points(read))
    assert "Not ranked" not in render_notes(read_synthesis, verify_synthesis(read_synthesis, read))
