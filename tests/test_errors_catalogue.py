"""The error catalogue: every code the package raises is catalogued with the class that raises it."""

from __future__ import annotations

import ast
import json
import pickle
import re
from pathlib import Path

import pytest

import wf_pipeline
from wf_pipeline import errors
from wf_pipeline.errors import CATALOGUE, ErrorCode, ProviderError, RunError, WfError

PACKAGE_ROOT = Path(wf_pipeline.__file__).parent
CODE_RE = re.compile(r"^[A-Z][A-Z0-9]+(_[A-Z0-9]+)+$")
ERROR_CLASSES = {
    name: value
    for name, value in vars(errors).items()
    if isinstance(value, type) and issubclass(value, WfError)
}
# Profile schema validators raise their code as a pydantic error type; the loader turns it
# into the ProfileError of that code.
ERROR_CLASSES["PydanticCustomError"] = errors.ProfileError


def raised_codes(source: str, where: str) -> list[tuple[str, str, str]]:
    """(code, class name, location) for every ``SomeError(CODE, ...)`` call in ``source``.

    A `Registry` call raises the codes it is given as ``duplicate`` and ``unknown``. A code
    is a string literal, a catalogue constant (``PROVIDER_TIMEOUT`` or
    ``errors.PROVIDER_TIMEOUT``), or, when the call passes a variable, every code-shaped
    literal and catalogue constant of the enclosing function (the loader raises from a
    table of codes), or of the module's helper function that picks the code
    (``status_code(status)``). A call that passes on a caught error's ``exc.code``
    re-raises a code raised elsewhere.
    """
    tree = ast.parse(source)
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    parents: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        class_name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if class_name == "Registry":
            # A registry raises its duplicate and unknown codes as their catalogued class.
            for keyword in node.keywords:
                code = _code_in(keyword.value) if keyword.arg in ("duplicate", "unknown") else None
                if code is not None:
                    entry = CATALOGUE[code]
                    found.append((code, entry.error_class.__name__, f"{where}:{node.lineno}"))
            continue
        if class_name not in ERROR_CLASSES:
            continue
        location = f"{where}:{node.lineno}"
        first = node.args[0] if node.args else next((k.value for k in node.keywords if k.arg == "code"), None)
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            found.append((first.value, class_name, location))
        elif isinstance(first, ast.Name) and first.id in CATALOGUE:
            found.append((first.id, class_name, location))
        elif isinstance(first, ast.Attribute) and first.attr in CATALOGUE:
            found.append((first.attr, class_name, location))
        elif isinstance(first, ast.Attribute) and first.attr == "code":
            continue
        else:
            scope: ast.AST = node
            if isinstance(first, ast.Call) and isinstance(first.func, ast.Name):
                # A code chosen by a helper of this module: the helper's codes.
                scope = functions.get(first.func.id, scope)
            while scope in parents and not isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
                scope = parents[scope]
            literals = [code for inner in ast.walk(scope) for code in (_code_in(inner),) if code is not None]
            assert literals, f"{location}: {class_name} raised with a code the scan cannot resolve"
            found += [(code, class_name, location) for code in literals]
    return found


def _code_in(node: ast.AST) -> str | None:
    """The code a literal or a catalogue constant names, if ``node`` is one."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and CODE_RE.match(node.value):
        return node.value
    if isinstance(node, ast.Name) and node.id in CATALOGUE:
        return node.id
    return None


def package_raises() -> list[tuple[str, str, str]]:
    found = []
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        found += raised_codes(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE_ROOT)))
    return found


def catalogue_problems(found: list[tuple[str, str, str]]) -> list[str]:
    problems = []
    for code, class_name, location in found:
        entry = CATALOGUE.get(code)
        if entry is None:
            problems.append(f"{location}: {code} is not in the catalogue")
        elif entry.error_class is not ERROR_CLASSES[class_name]:
            problems.append(
                f"{location}: {code} raised as {class_name}, catalogued as {entry.error_class.__name__}"
            )
    return problems


def test_every_raised_code_is_catalogued_with_its_class() -> None:
    found = package_raises()
    assert len(found) > 80  # the scan really sees the package
    assert catalogue_problems(found) == []


def test_every_catalogued_code_is_raised_somewhere() -> None:
    raised = {code for code, _, _ in package_raises()}
    # Recorded in the audit trail only: a privileged read outside a grant's scope is told
    # PRIVILEGED_ARTIFACT_UNKNOWN (tests/test_security_grants.py checks each is audited).
    from wf_pipeline.security.privileged import AUDITED_ONLY_CODES

    assert set(AUDITED_ONLY_CODES) <= set(CATALOGUE)
    assert sorted(set(CATALOGUE) - raised - set(AUDITED_ONLY_CODES)) == []


def test_the_scan_reports_an_unknown_code_and_a_wrong_class() -> None:
    source = (
        "def f(x):\n"
        "    raise ProviderError('PROVIDER_NO_SUCH_THING', 'm')\n"
        "def g(x):\n"
        "    raise CasError(PROVIDER_TIMEOUT, 'm')\n"
        "def h(x):\n"
        "    for code in ('RUN_UNKNOWN_TURN', 'RUN_NOT_A_CODE'):\n"
        "        raise RunError(code, 'm')\n"
        "def pick(x):\n"
        "    return CAS_NOT_FOUND if x else 'CAS_NOT_A_CODE'\n"
        "def k(x):\n"
        "    raise CasError(pick(x), 'm')\n"
    )
    assert sorted(catalogue_problems(raised_codes(source, "sample.py"))) == [
        "sample.py:11: CAS_NOT_A_CODE is not in the catalogue",
        "sample.py:2: PROVIDER_NO_SUCH_THING is not in the catalogue",
        "sample.py:4: PROVIDER_TIMEOUT raised as CasError, catalogued as ProviderError",
        "sample.py:7: RUN_NOT_A_CODE is not in the catalogue",
    ]


def test_every_raise_site_names_a_catalogue_constant() -> None:
    """No raise site spells a code as a string: a misspelt constant fails at import, a string never."""
    literals = []
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            class_name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            first = node.args[0]
            if (
                class_name in ERROR_CLASSES
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                literals.append(f"{path.relative_to(PACKAGE_ROOT)}:{node.lineno}: {first.value}")
    assert literals == []


def test_each_entry_is_its_name_with_a_class_a_flag_and_a_meaning() -> None:
    for name, entry in CATALOGUE.items():
        assert isinstance(entry, ErrorCode) and entry == name and CODE_RE.match(name)
        assert getattr(errors, name) is entry  # a module-level constant of the same name
        assert issubclass(entry.error_class, WfError) and entry.error_class is not WfError
        assert isinstance(entry.retryable, bool)
        assert entry.meaning.strip()


@pytest.mark.parametrize(
    ("code", "retryable"),
    [
        ("PROVIDER_TIMEOUT", True),
        ("PROVIDER_CONNECTION_ERROR", True),
        ("PROVIDER_RATE_LIMITED", True),
        ("PROVIDER_SERVER_ERROR", True),
        ("PROVIDER_BAD_RESPONSE", True),
        ("PROVIDER_SIMULATED_FAILURE", True),
        ("RUN_OUTPUT_SHAPE", True),
        ("RUN_OUTPUT_TOO_LARGE", True),
        ("PROVIDER_HTTP_ERROR", False),
        ("PROVIDER_SIMULATED_TARGET_FAILURE", False),
        ("PROVIDER_INPUT_INVALID", False),
        ("PROVIDER_CONFIG_INVALID", False),
        ("METADATA_BUDGET_EXCEEDED", False),
        ("CAS_DIGEST_MISMATCH", False),
    ],
)
def test_retryable_comes_from_the_catalogue(code: str, retryable: bool) -> None:
    entry = CATALOGUE[code]
    assert entry.retryable is retryable
    assert entry.error_class(code, "m").retryable is retryable


def test_a_constant_and_its_name_raise_the_same_error() -> None:
    by_constant = ProviderError(errors.PROVIDER_TIMEOUT, "no answer within 200 ms")
    by_name = ProviderError("PROVIDER_TIMEOUT", "no answer within 200 ms")
    assert by_constant.code == by_name.code == "PROVIDER_TIMEOUT"
    assert type(by_constant.code) is str  # records and JSON carry the plain name
    assert str(by_constant) == "PROVIDER_TIMEOUT: no answer within 200 ms"
    assert by_constant.entry is errors.PROVIDER_TIMEOUT
    assert json.loads(json.dumps({"code": errors.PROVIDER_TIMEOUT})) == {"code": "PROVIDER_TIMEOUT"}
    assert f"{errors.PROVIDER_TIMEOUT}" == "PROVIDER_TIMEOUT"


def test_a_catalogue_entry_pickles_to_itself() -> None:
    assert pickle.loads(pickle.dumps(errors.RUN_OUTPUT_SHAPE)) is errors.RUN_OUTPUT_SHAPE


def test_a_stated_retryable_flag_must_agree_with_the_catalogue() -> None:
    assert ProviderError("PROVIDER_HTTP_ERROR", "401", retryable=False).retryable is False
    with pytest.raises(ValueError, match="PROVIDER_HTTP_ERROR is catalogued with retryable=False"):
        ProviderError("PROVIDER_HTTP_ERROR", "401", retryable=True)
    assert "retryable" not in ProviderError("PROVIDER_TIMEOUT", "t", retryable=True).details


def test_an_uncatalogued_code_is_not_retryable_unless_stated() -> None:
    assert RunError("RUN_SOMETHING_NEW", "m").retryable is False
    assert RunError("RUN_SOMETHING_NEW", "m", retryable=True).retryable is True
    assert RunError("RUN_SOMETHING_NEW", "m").entry is None


def test_to_dict_carries_code_message_and_figures() -> None:
    error = RunError(errors.RUN_OUTPUT_TOO_LARGE, "output has 300 bytes, limit 200", size=300, limit=200)
    assert error.to_dict() == {
        "code": "RUN_OUTPUT_TOO_LARGE",
        "message": "output has 300 bytes, limit 200",
        "details": {"size": 300, "limit": 200},
    }
