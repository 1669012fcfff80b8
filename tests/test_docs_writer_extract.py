"""Extraction reads a Python package the way its users see it: the names ``__init__``
re-exports, docstrings with their reStructuredText read as Markdown, and one entry per
overloaded function; the evidence rule accepts what the README then shows."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_docs_writer_rules import context_with, judge

from wf_pipeline.metadata.payloads import ContextFile, ContextPayload, ContextTarget
from wf_pipeline.text.docstrings import rst_to_markdown
from wf_pipeline.workflows.docs_writer.extract import local_module, python_reexports
from wf_pipeline.workflows.docs_writer.grounding import parsed_python
from wf_pipeline.workflows.docs_writer.offline import build_evidence_map
from wf_pipeline.workflows.docs_writer.render import build_readme_struct
from wf_pipeline.workflows.docs_writer.verify import verify_evidence_map


def package(files: dict[str, str], children: tuple[str, ...] = ()) -> ContextPayload:
    from wf_pipeline.metadata.payloads import ContextChild

    return ContextPayload(
        target=ContextTarget(path="src/pkg", name="pkg", node_id="node:" + "0" * 64),
        files=tuple(
            ContextFile(path=f"src/pkg/{name}", name=name, size=len(text), language="python", text=text)
            for name, text in sorted(files.items())
        ),
        children=tuple(
            ContextChild(path=f"src/pkg/{name}", name=name, node_id="node:" + "1" * 64) for name in children
        ),
    )


def api_section(context: ContextPayload) -> str:
    """The README's API section for ``context``, through the offline turns' own functions."""
    evidence_map = build_evidence_map(context)
    report = verify_evidence_map(evidence_map, context)
    assert report.rejected_claims == (), report.reasons
    struct = build_readme_struct(evidence_map, report, context)
    assert struct is not None
    return struct.api_surface or ""


REGISTRY = '''"""Registry of implementations."""

__all__ = ["registry", "get_class"]

registry = {}


def get_class(protocol):
    """Look up the class of :data:`registry` for ``protocol``."""
    return registry[protocol]


def register_implementation(name, cls, clobber=False):
    """Add implementation class to the :obj:`registry`."""
    registry[name] = cls


def available_protocols():
    """Return a list of the implemented protocols."""
    return list(registry)


def _private():
    return None
'''
INIT = """from . import caching
from .registry import (
    available_protocols,
    get_class as find_class,
    register_implementation,
)
from .sub.mod import Deep
from os import path as _path

try:
    from ._version import __version__
except ImportError:
    __version__ = "unknown"
"""


def test_the_package_api_includes_what_init_re_exports() -> None:
    context = package(
        {"__init__.py": INIT, "registry.py": REGISTRY, "caching.py": '"""Caches."""\n'}, children=("sub",)
    )
    api = api_section(context)
    init_block = api.split("- `registry.py`")[0]
    assert "- `__init__.py`" in init_block
    for line in [
        "  - `caching` — re-exported module (`caching.py`)",
        "  - `available_protocols` — re-exported from `registry.py`",
        "  - `find_class` — re-exported from `registry.py` (named `get_class` there)",
        "  - `register_implementation` — re-exported from `registry.py`",
        "  - `Deep` — re-exported from `sub/`",
    ]:
        assert line in init_block.splitlines(), (line, init_block)
    assert "_path" not in api and "__version__" not in api
    # registry.py's own __all__ leaves them out, but the package exports them: documented there too.
    registry_block = api.split("- `registry.py`")[1]
    assert (
        "`register_implementation(name, cls, clobber=False)` — Add implementation class to the `registry`."
        in (registry_block)
    )
    assert "`available_protocols()` — Return a list of the implemented protocols." in registry_block
    assert "_private" not in api


@pytest.mark.parametrize(
    ("source", "exported"),
    [
        # __all__ decides, as a list, a tuple or extended with +=; absolute imports count too.
        ('from .a import x, y\nfrom os import sep\n__all__ = ["x", "sep"]\n', ["x", "sep"]),
        ('from .a import x, y\n__all__ = ("y",)\n', ["y"]),
        ('from .a import x\nfrom .b import y\n__all__ = ["x"]\n__all__ += ["y"]\n', ["x", "y"]),
        (
            'from .a import x, y, z, w\n__all__ = ["x"]\n__all__.extend(["y", "w"])\n'
            '__all__.append("z")\n__all__.remove("w")\n',
            ["x", "y", "z"],
        ),
        # Without __all__: relative imports of public names, and ``import a as a`` forms.
        (
            "from .a import x, _y\nimport json\nimport numpy as numpy\nfrom os import sep as sep\n",
            ["x", "numpy", "sep"],
        ),
    ],
)
def test_re_exports_follow_all_or_the_relative_import_rule(source: str, exported: list[str]) -> None:
    module = parsed_python(source)
    assert module is not None
    assert [r.name for r in python_reexports(module, package_init=True)] == exported


def test_a_module_that_is_not_init_exports_imports_only_through_all() -> None:
    module = parsed_python("from .a import x\nfrom .b import y\n__all__ = ['y']\n")
    assert module is not None
    assert [r.name for r in python_reexports(module, package_init=False)] == ["y"]
    bare = parsed_python("from .a import x\n")
    assert bare is not None and python_reexports(bare, package_init=False) == []


@pytest.mark.parametrize(
    ("source", "directory", "local"),
    [
        (".registry", "src/pkg", ["registry"]),
        (".sub.mod", "src/pkg", ["sub", "mod"]),
        ("pkg.registry", "src/pkg", ["registry"]),  # an absolute import of the package itself
        ("stationkit.sensors.base", "stationkit/sensors", ["base"]),
        ("..other", "src/pkg", None),
        ("os.path", "src/pkg", None),
        ("pkg", "src/pkg", None),
    ],
)
def test_which_imports_are_of_the_directory_itself(
    source: str, directory: str, local: list[str] | None
) -> None:
    assert local_module(source, directory) == local


# --- reStructuredText ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rst", "markdown"),
    [
        ("Return one ``OpenFile`` object.", "Return one `OpenFile` object."),
        ("A :class:`Foo` and :func:`bar`.", "A `Foo` and `bar`."),
        (":meth:`~pkg.mod.Cls.run` runs", "`run` runs"),
        (":py:class:`pkg.mod.Cls`", "`pkg.mod.Cls`"),
        (":mod:`json`, :attr:`.size`, :exc:`!KeyError`", "`json`, `size`, `KeyError`"),
        (":data:`~a.REG`, :obj:`None`, :const:`X`", "`REG`, `None`, `X`"),
        (":func:`open <fsspec.open>`", "`open`"),
        ("See :ref:`the guide <guide>` and :term:`backend`.", "See the guide and backend."),
        ("Set :envvar:`HOME`; :pep:`484`, :rfc:`9110`.", "Set `HOME`; PEP 484, RFC 9110."),
        ("Read `the docs <https://example.org>`_ or `Intro`_.", "Read the docs or Intro."),
        ("In a structure like::", "In a structure like:"),
        ("Plain `code` and *emphasis* stay.", "Plain `code` and *emphasis* stay."),
        (r"attach all :func:`option`\s and :class:`Foo`\ s", "attach all `option`s and `Foo`s"),
        ("Before.\n\n.. deprecated:: 1.6.0\n    Use ``b``.\n\nAfter.", "Before.\n\n\nAfter."),
        (".. dialect:: mysql+aiomysql\n    :name: aiomysql\n\n    :url: x\nText.", "\nText."),
        ("  .. note:: n\n  Kept.", "\n  Kept."),
        ("Ellipsis... and ..dots stay.", "Ellipsis... and ..dots stay."),
    ],
)
def test_restructuredtext_becomes_markdown(rst: str, markdown: str) -> None:
    assert rst_to_markdown(rst) == markdown


def test_docstrings_reach_the_readme_as_markdown() -> None:
    source = (
        '"""Core types: the :class:`Reading` record and ``Sensor``."""\n\n'
        "class Reading:\n"
        '    """A value read by a :class:`~pkg.base.Sensor` at ``time``."""\n\n'
        "    def __init__(self, time):\n"
        "        self.time = time\n\n\n"
        "class Sensor:\n"
        "    pass\n"
    )
    context = package({"base.py": source})
    statements = [claim.statement for claim in build_evidence_map(context).claims]
    assert statements[0] == "`base.py` — Core types: the `Reading` record and `Sensor`."
    assert statements[1] == "`Reading` — A value read by a `Sensor` at `time`."
    assert not any(":class:" in s or "``" in s for s in statements)
    api_section(context)  # every claim verifies


def test_directives_never_reach_the_readme() -> None:
    source = (
        '""".. dialect:: mysql+aiomysql\n    :name: aiomysql\n    :dbapi: aiomysql\n\n'
        'The aiomysql dialect.\n"""\n\n'
        "def f():\n"
        '    """.. deprecated:: 1.6.0\n        Use g.\n\n    Run f.\n    """\n\n'
        "def g():\n"
        '    """Uses ``x`` and :func:`_sql.select` too.\n\n    .. versionadded:: 2.0\n    """\n'
    )
    context = package({"aiomysql.py": source})
    statements = [claim.statement for claim in build_evidence_map(context).claims]
    assert statements[:3] == [
        "`aiomysql.py` — The aiomysql dialect.",
        "`f()` — Run f.",
        # Spans naming nothing here read as text; an `_` that cannot pair into emphasis stays as written.
        "`g()` — Uses x and _sql.select too.",
    ]
    assert not any(".." in s or "\\_" in s for s in statements)
    api_section(context)  # every claim verifies


@pytest.mark.parametrize(
    "quote",
    [
        "Return one ``OpenFile`` object,",  # as written
        "Return one `OpenFile` object,",  # as the README shows it
        "the :class:`~pkg.Cache` for it",
        "the `Cache` for it",
    ],
)
def test_a_quote_of_the_converted_docstring_is_grounded_for_gate_and_verifier(quote: str) -> None:
    source = (
        'def open(path):\n    """Return one ``OpenFile`` object,\n    the :class:`~pkg.Cache` for it."""\n'
    )
    claim = {"statement": "Opens files.", "evidence_path": "pkg/core.py", "evidence_quote": quote}
    gate, report = judge(context_with("core.py", source, "python"), claim)
    assert gate.passed, gate.reasons
    assert report.verified_claims == ("c001",)


@pytest.mark.parametrize("quote", ["Return one `Other` object.", "the `Cache` for them"])
def test_a_converted_quote_that_is_not_in_the_source_is_rejected(quote: str) -> None:
    source = (
        'def open(path):\n    """Return one ``OpenFile`` object,\n    the :class:`~pkg.Cache` for it."""\n'
    )
    claim = {"statement": "Opens files.", "evidence_path": "pkg/core.py", "evidence_quote": quote}
    gate, report = judge(context_with("core.py", source, "python"), claim)
    assert gate.reasons == ("CLAIM_QUOTE_NOT_FOUND:c001",)
    assert report.reasons == {"c001": "EVIDENCE_NOT_FOUND"}


# --- overloads -------------------------------------------------------------------------

OVERLOADED = '''import typing
from typing import overload


@overload
def parse(value: str) -> int:
    """Parse a number."""


@typing.overload
def parse(value: bytes) -> int: ...


def parse(value):
    return int(value)


class Cache:
    @property
    def size(self) -> int:
        return 0

    @size.setter
    def size(self, value: int) -> None:
        pass

    @overload
    def get(self, key: str) -> str: ...
    @overload
    def get(self, key: int) -> int: ...
    def get(self, key):
        return key


@overload
def stub_only(x: int) -> int: ...
@overload
def stub_only(x: str) -> str: ...
'''


def test_overloads_collapse_into_one_entry() -> None:
    context = package({"parse.py": OVERLOADED})
    claims = build_evidence_map(context).claims
    by_symbol = {}
    for claim in claims:
        by_symbol.setdefault(claim.evidence_symbol, []).append(claim.statement)
    # The implementation's signature, the docstring of the variant that has one.
    assert by_symbol["parse"] == ["`parse(value)` — Parse a number."]
    assert by_symbol["Cache"] == ["`Cache` — Methods: `size`, `get`."]
    assert by_symbol["stub_only"] == ["`stub_only(x: int) -> int`"]
    api = api_section(context)
    assert api.count("`parse(") == 1 and api.count("`stub_only(") == 1


# --- a real package --------------------------------------------------------------------


@pytest.mark.slow
def test_wf_run_on_fsspec_documents_what_its_init_re_exports(tmp_path) -> None:
    """fsspec's registry.py lists only three names in ``__all__``; its ``__init__`` re-exports
    ``register_implementation`` and ``available_protocols`` from it."""
    import importlib.util
    import os
    import subprocess

    from e2e_support import REPO_ROOT, WF_VARIABLES, copy_tree

    spec = importlib.util.find_spec("fsspec")
    assert spec is not None and spec.origin is not None
    tree = copy_tree(Path(spec.origin).parent, tmp_path / "fsspec")
    out = tmp_path / "out"
    env = {name: value for name, value in os.environ.items() if name not in WF_VARIABLES}
    env |= {"WF_HOME": str(tmp_path / "home"), "WF_CONFIG_DIR": str(tmp_path / "home" / "user-config")}
    subprocess.run(
        [
            str(REPO_ROOT / ".venv" / "bin" / "wf"),
            "run",
            "docs_writer_thread_v1",
            str(tree),
            "--out",
            str(out),
        ],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        timeout=900,
    )
    readme = (out / "README.md").read_text()
    api = readme.split("## API surface", 1)[1].split("\n## ", 1)[0]
    init_block = api.split("- `__init__.py`", 1)[1].split("\n- `", 1)[0]
    for name in ("register_implementation", "available_protocols"):
        assert f"  - `{name}` — re-exported from `registry.py`" in init_block.splitlines(), init_block
    registry_block = api.split("- `registry.py`", 1)[1].split("\n- `", 1)[0]
    assert "  - `register_implementation(name, cls, clobber=False, errtxt=None)` — " in registry_block
    assert "  - `available_protocols()` — " in registry_block
    # Its docstrings' reStructuredText reads as Markdown.
    assert "``" not in api and ":class:`" not in api and ":func:`" not in api
