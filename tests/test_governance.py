"""The governance trail: the shipped specs pass ``wf governance check``, and every way a spec can go wrong
is caught with its code (a gate naming a missing test or benchmark, a malformed spec, an index that
misses a spec). Test ids are resolved like pytest collects them, which a test confirms against pytest's
own collection."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from e2e_support import REPO_ROOT

from wf_pipeline.errors import (
    GOVERNANCE_GATE_MISSING,
    GOVERNANCE_INDEX_INCOMPLETE,
    GOVERNANCE_SPEC_INVALID,
    GOVERNANCE_SPECS_NOT_FOUND,
    GovernanceError,
)
from wf_pipeline.service.governance import (
    INDEX_NAME,
    SPECS_DIR,
    check_gate,
    check_governance,
    find_checkout,
    load_spec,
    owner_domains,
)

WF = REPO_ROOT / ".venv" / "bin" / "wf"
SHIPPED = REPO_ROOT / SPECS_DIR
DOMAINS = owner_domains(REPO_ROOT)

# A spec whose gates all exist in this checkout: one test id and one benchmark script.
VALID_FRONT = {
    "id": "sample-feature",
    "title": "A sample feature",
    "owner_domain": "cas",
    "status": "accepted",
    "exit_criteria": ["a put of the same bytes twice keeps one object"],
    "gates": ["tests/test_cas_store.py::test_second_put_does_not_rewrite", "bench/p4_cas_encrypted.py"],
}


def spec_text(front: dict | str, body: str = "What the feature does.\n") -> str:
    """A spec file's text: ``front`` as a YAML front-matter block (or verbatim when a str), then ``body``."""
    block = front if isinstance(front, str) else yaml.safe_dump(front, sort_keys=False)
    return f"---\n{block}---\n\n{body}"


def write_specs(folder: Path, specs: dict[str, str], *, index: str | None = None) -> Path:
    """``folder`` holding each spec (file name -> text) and an index linking every one (or ``index``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in specs.items():
        (folder / name).write_text(text, encoding="utf-8")
    if index is None:
        index = "# Specs\n\n" + "".join(f"- [{name}]({name})\n" for name in specs)
    (folder / INDEX_NAME).write_text(index, encoding="utf-8")
    return folder


def wf(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WF_")}
    env["WF_HOME"] = str(home)
    return subprocess.run(
        [str(WF), "governance", "check", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


# --- the shipped specs -----------------------------------------------------------------------


def test_the_shipped_specs_pass():
    result = check_governance(REPO_ROOT)

    assert result["problems"] == []
    assert result["ok"] is True
    files = sorted(p.name for p in SHIPPED.glob("*.md") if p.name != INDEX_NAME)
    assert [s["file"] for s in result["specs"]] == files
    assert len(files) >= 40  # one per accepted feature of the project
    for summary in result["specs"]:
        assert summary["ok"] is True
        assert summary["owner_domain"] in DOMAINS
        assert summary["gates"] >= 1
    # Every gate of every spec was found, by kind.
    gates = [
        gate for path in SHIPPED.glob("*.md") if path.name != INDEX_NAME for gate in _front(path)["gates"]
    ]
    assert result["gates_found"]["test"] + result["gates_found"]["benchmark"] == len(gates)
    assert result["gates_found"]["benchmark"] >= 1
    # The trail covers itself.
    assert "governance-trail.md" in files


def test_the_shipped_specs_name_tests_pytest_collects(tmp_path):
    # The ast resolution agrees with pytest's own collection for the shipped gates of a few files
    # (collection only, nothing runs).
    gates = sorted(
        {
            gate
            for path in SHIPPED.glob("*.md")
            if path.name != INDEX_NAME
            for gate in _front(path)["gates"]
            if gate.startswith(("tests/test_cas_store.py::", "tests/test_gates.py::", "tests/test_text.py::"))
        }
    )
    assert len(gates) >= 10
    collected = _collect(REPO_ROOT, gates)
    # A parametrized function is collected by its ids; its bare name selects them all.
    bare = {node.split("[", 1)[0] for node in collected}
    assert set(gates) <= collected | bare


def test_wf_governance_check_passes_on_the_checkout_and_writes_no_home(tmp_path):
    home = tmp_path / "home"

    text = wf(cwd=REPO_ROOT, home=home)
    as_json = wf("--json", cwd=REPO_ROOT / "tests", home=home)  # from a subfolder of the checkout

    assert text.returncode == 0, text.stdout + text.stderr
    assert "GOVERNANCE_" not in text.stdout + text.stderr
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["ok"] is True and report["problems"] == []
    assert report["specs_dir"] == SPECS_DIR.as_posix()
    assert not home.exists()  # the check reads the checkout only


def test_make_lint_runs_the_check():
    # Dry runs: make prints the commands each target would run, and `make test` depends on lint.
    for target in ("lint", "test"):
        made = subprocess.run(
            ["make", "-n", target], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
        )
        assert made.returncode == 0, made.stderr
        commands = [line.split() for line in made.stdout.splitlines()]
        assert [".venv/bin/wf", "governance", "check"] in commands, made.stdout


# --- gates that do not exist ---------------------------------------------------------------------


def test_a_spec_naming_a_missing_test_fails_with_the_spec_and_the_gate(tmp_path):
    missing = {
        "tests/test_cas_store.py::test_no_such_test": "a function",
        "tests/test_no_such_file.py::test_anything": "a file",
        "tests/test_cas_store.py::TestNoSuchClass::test_anything": "a class",
        "bench/p0_no_such_benchmark.py": "a benchmark",
    }
    bad = {**VALID_FRONT, "id": "bad-feature", "gates": [*VALID_FRONT["gates"], *missing]}
    folder = write_specs(
        tmp_path / "specs",
        {"sample-feature.md": spec_text(VALID_FRONT), "bad-feature.md": spec_text(bad)},
    )

    result = check_governance(REPO_ROOT, folder)

    assert result["ok"] is False
    assert sorted((p["code"], p["spec"], p["gate"]) for p in result["problems"]) == sorted(
        (GOVERNANCE_GATE_MISSING, "bad-feature.md", gate) for gate in missing
    )
    assert {s["file"]: s["ok"] for s in result["specs"]} == {
        "bad-feature.md": False,
        "sample-feature.md": True,
    }
    # The gates that exist were found all the same.
    assert result["gates_found"] == {"test": 2, "benchmark": 2}

    # The command exits 1 and prints each problem as CODE: message, naming the spec and the gate.
    ran = wf("--specs", str(folder), cwd=REPO_ROOT, home=tmp_path / "home")
    assert ran.returncode == 1
    lines = [line for line in ran.stdout.splitlines() if line.startswith("GOVERNANCE_")]
    assert len(lines) == len(missing)
    for gate in missing:
        assert any(
            line.startswith(f"{GOVERNANCE_GATE_MISSING}: bad-feature.md") and gate in line for line in lines
        ), lines


def test_renaming_a_test_a_shipped_spec_names_fails_the_check(tmp_path):
    # The shipped specs, with one gate pointing at a renamed test: exactly that gate is reported.
    folder = tmp_path / "specs"
    shutil.copytree(SHIPPED, folder)
    spec = folder / "cas-content-addressed-store.md"
    gate = "tests/test_cas_store.py::test_second_put_does_not_rewrite"
    renamed = gate + "_renamed"
    assert gate in _front(spec)["gates"]
    spec.write_text(spec.read_text(encoding="utf-8").replace(gate, renamed), encoding="utf-8")

    result = check_governance(REPO_ROOT, folder)

    assert [(p["code"], p["spec"], p["gate"]) for p in result["problems"]] == [
        (GOVERNANCE_GATE_MISSING, spec.name, renamed)
    ]


@pytest.mark.parametrize(
    "gate",
    [
        "tests/test_cas_store.py",  # a bare file: no test named
        "docs/keys.md",  # neither a test file nor a benchmark
        "bench/README.md",  # under bench/ but no script
        "tests/conftest.py::test_x",  # not a file pytest collects tests from
        "../outside/test_x.py::test_x",  # leaves the checkout
        "/etc/test_x.py::test_x",  # absolute
        "tests/test_cas_store.py::",  # an empty part
        "tests/test_cas_store.py::TestX[1]::test_y",  # a parameter id on a class
    ],
)
def test_a_gate_of_no_known_form_is_a_malformed_spec(gate):
    with pytest.raises(GovernanceError) as caught:
        check_gate(REPO_ROOT, gate)
    assert caught.value.code == GOVERNANCE_SPEC_INVALID


def test_a_test_file_that_does_not_parse_has_no_tests(tmp_path):
    root = _checkout(tmp_path, {"tests/test_broken.py": "def test_x(:\n"})
    with pytest.raises(GovernanceError) as caught:
        check_gate(root, "tests/test_broken.py::test_x")
    assert caught.value.code == GOVERNANCE_GATE_MISSING


# --- class and parametrized ids ------------------------------------------------------------------

SAMPLE_TESTS = """
import pytest


@pytest.fixture(params=["sqlite", "postgres"])
def store(request):
    return request.param


@pytest.mark.parametrize("n, label", [(1, "a"), (2, "b")])
def test_param(n, label):
    assert n


def test_with_fixture(store):
    assert store


def test_plain():
    assert True


def make_value():
    return 1


class TestBase:
    def test_inherited(self):
        assert True


class TestOuter(TestBase):
    def test_method(self):
        assert True

    @pytest.mark.parametrize("x", ["x", "y"])
    def test_param_method(self, x):
        assert x

    class TestInner:
        def test_inner(self):
            assert True


class Builder:
    def test_not_collected(self):
        assert True


class TestWithInit:
    def __init__(self):
        self.value = 1

    def test_not_collected(self):
        assert True
"""

RESOLVED = [
    "tests/test_sample.py::test_param[1-a]",
    "tests/test_sample.py::test_param[2-b]",
    "tests/test_sample.py::test_param",
    "tests/test_sample.py::test_with_fixture[sqlite]",
    "tests/test_sample.py::test_plain",
    "tests/test_sample.py::TestOuter::test_method",
    "tests/test_sample.py::TestOuter::test_param_method[y]",
    "tests/test_sample.py::TestOuter::test_inherited",
    "tests/test_sample.py::TestOuter::TestInner::test_inner",
    "tests/test_sample.py::TestBase::test_inherited",
]
MISSING = [
    "tests/test_sample.py::test_absent",
    "tests/test_sample.py::make_value",  # not a test function
    "tests/test_sample.py::test_plain[x]",  # takes no argument: no parametrized id
    "tests/test_sample.py::TestOuter::test_absent",
    "tests/test_sample.py::TestAbsent::test_method",
    "tests/test_sample.py::Builder::test_not_collected",  # not a Test class
    "tests/test_sample.py::TestWithInit::test_not_collected",  # pytest skips a class with __init__
    "tests/test_sample.py::TestOuter::TestInner::test_method",  # the inner class has no such method
    "tests/test_sample.py::test_method",  # a method is not a module-level test
]


def test_class_and_parametrized_ids_resolve(tmp_path):
    root = _checkout(tmp_path, {"tests/test_sample.py": SAMPLE_TESTS})

    for gate in RESOLVED:
        assert check_gate(root, gate) == "test", gate
    for gate in MISSING:
        with pytest.raises(GovernanceError) as caught:
            check_gate(root, gate)
        assert caught.value.code == GOVERNANCE_GATE_MISSING, gate


def test_the_resolution_agrees_with_pytest_collection(tmp_path):
    # pytest collects every id the check resolves, and none of those it reports missing. A
    # parametrized function is collected by its ids only, so its bare name is compared as such.
    root = _checkout(tmp_path, {"tests/test_sample.py": SAMPLE_TESTS})
    collected = _collect(root, ["tests/test_sample.py"])
    bare = {node.split("[", 1)[0] for node in collected}

    for gate in RESOLVED:
        assert gate in collected or gate in bare, gate
    for gate in MISSING:
        assert gate not in collected and gate not in bare, gate


# --- malformed specs ---------------------------------------------------------------------------

MALFORMED = {
    "no front matter": "# A feature\n\nNo front matter at all.\n",
    "front matter never closed": "---\nid: sample-feature\n\nbody\n",
    "not YAML": spec_text("id: [unclosed\n"),
    "not a mapping": spec_text("- a\n- list\n"),
    "missing id": spec_text({k: v for k, v in VALID_FRONT.items() if k != "id"}),
    "missing title": spec_text({k: v for k, v in VALID_FRONT.items() if k != "title"}),
    "missing owner_domain": spec_text({k: v for k, v in VALID_FRONT.items() if k != "owner_domain"}),
    "missing status": spec_text({k: v for k, v in VALID_FRONT.items() if k != "status"}),
    "missing exit_criteria": spec_text({k: v for k, v in VALID_FRONT.items() if k != "exit_criteria"}),
    "missing gates": spec_text({k: v for k, v in VALID_FRONT.items() if k != "gates"}),
    "unknown field": spec_text({**VALID_FRONT, "owner": "someone"}),
    "unknown owner domain": spec_text({**VALID_FRONT, "owner_domain": "billing"}),
    "owner domain that is a module, not a package": spec_text({**VALID_FRONT, "owner_domain": "errors"}),
    "id that is not the file name": spec_text({**VALID_FRONT, "id": "another-feature"}),
    "id of the wrong shape": spec_text({**VALID_FRONT, "id": "Sample_Feature"}),
    "status other than accepted": spec_text({**VALID_FRONT, "status": "draft"}),
    "gates as one string": spec_text({**VALID_FRONT, "gates": "tests/test_cas_store.py::test_x"}),
    "no gate": spec_text({**VALID_FRONT, "gates": []}),
    "no exit criterion": spec_text({**VALID_FRONT, "exit_criteria": []}),
    "an empty exit criterion": spec_text({**VALID_FRONT, "exit_criteria": ["  "]}),
    "a gate named twice": spec_text({**VALID_FRONT, "gates": [VALID_FRONT["gates"][0]] * 2}),
    "a title that is a number": spec_text({**VALID_FRONT, "title": 7}),
    "nothing after the front matter": spec_text(VALID_FRONT, body="\n"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_specs_are_invalid(tmp_path, case):
    path = tmp_path / "sample-feature.md"
    path.write_text(MALFORMED[case], encoding="utf-8")

    with pytest.raises(GovernanceError) as caught:
        load_spec(path, DOMAINS)

    assert caught.value.code == GOVERNANCE_SPEC_INVALID


def test_the_valid_sample_loads(tmp_path):
    # The base every malformed case departs from is itself valid.
    folder = write_specs(tmp_path / "specs", {"sample-feature.md": spec_text(VALID_FRONT)})

    result = check_governance(REPO_ROOT, folder)

    assert result["ok"] is True, result["problems"]
    assert result["gates_found"] == {"test": 1, "benchmark": 1}


def test_one_malformed_spec_hides_no_other_problem(tmp_path):
    broken_gate = {**VALID_FRONT, "id": "gate-feature", "gates": ["tests/test_cas_store.py::test_absent"]}
    folder = write_specs(
        tmp_path / "specs",
        {
            "sample-feature.md": spec_text({**VALID_FRONT, "owner_domain": "billing"}),
            "gate-feature.md": spec_text(broken_gate),
        },
    )

    result = check_governance(REPO_ROOT, folder)

    assert sorted((p["code"], p["spec"]) for p in result["problems"]) == [
        (GOVERNANCE_GATE_MISSING, "gate-feature.md"),
        (GOVERNANCE_SPEC_INVALID, "sample-feature.md"),
    ]
    ran = wf("--specs", str(folder), "--json", cwd=REPO_ROOT, home=tmp_path / "home")
    assert ran.returncode == 1
    assert sorted(p["code"] for p in json.loads(ran.stdout)["problems"]) == [
        GOVERNANCE_GATE_MISSING,
        GOVERNANCE_SPEC_INVALID,
    ]


# --- the index and the spec folder ---------------------------------------------------------------


def test_the_index_must_link_every_spec(tmp_path):
    specs = {"sample-feature.md": spec_text(VALID_FRONT)}

    # A mention in code is no link, and a link to a spec that does not exist is reported too.
    unlinked = write_specs(tmp_path / "a", specs, index="# Specs\n\n`[x](sample-feature.md)`\n")
    dead = write_specs(tmp_path / "b", specs, index="- [x](sample-feature.md)\n- [y](gone.md#scope)\n")
    linked = write_specs(tmp_path / "c", specs, index="- [x](sample-feature.md#exit-criteria)\n")
    no_index = write_specs(tmp_path / "d", specs)
    (no_index / INDEX_NAME).unlink()

    assert [(p["code"], p["spec"]) for p in check_governance(REPO_ROOT, unlinked)["problems"]] == [
        (GOVERNANCE_INDEX_INCOMPLETE, "sample-feature.md")
    ]
    assert [(p["code"], p["spec"]) for p in check_governance(REPO_ROOT, dead)["problems"]] == [
        (GOVERNANCE_INDEX_INCOMPLETE, INDEX_NAME)
    ]
    assert check_governance(REPO_ROOT, linked)["problems"] == []
    assert [p["code"] for p in check_governance(REPO_ROOT, no_index)["problems"]] == [
        GOVERNANCE_INDEX_INCOMPLETE
    ]


def test_no_spec_folder_no_spec_or_no_checkout_is_not_found(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    only_index = write_specs(tmp_path / "only-index", {})

    for start, specs in (
        (REPO_ROOT, tmp_path / "absent"),
        (REPO_ROOT, empty),
        (REPO_ROOT, only_index),
        (tmp_path, None),
    ):
        with pytest.raises(GovernanceError) as caught:
            check_governance(start, specs)
        assert caught.value.code == GOVERNANCE_SPECS_NOT_FOUND

    # Outside any checkout the command says so and exits 1.
    ran = wf(cwd=tmp_path, home=tmp_path / "home")
    assert ran.returncode == 1
    assert ran.stderr.startswith(f"{GOVERNANCE_SPECS_NOT_FOUND}: ")


def test_the_checkout_is_found_from_any_folder_inside_it():
    assert find_checkout(REPO_ROOT / "tests" / "conformance") == REPO_ROOT
    assert find_checkout(REPO_ROOT) == REPO_ROOT


# --- support -------------------------------------------------------------------------------------


def _front(path: Path) -> dict:
    text = path.read_text(encoding="utf-8")
    return yaml.safe_load(text.split("---\n", 2)[1])


def _checkout(tmp_path: Path, files: dict[str, str]) -> Path:
    """A minimal checkout: pyproject.toml beside wf_pipeline/, plus ``files`` (path -> text)."""
    root = tmp_path / "checkout"
    (root / "wf_pipeline").mkdir(parents=True)
    (root / "wf_pipeline" / "__init__.py").write_text("")
    (root / "pyproject.toml").write_text('[project]\nname = "sample"\n\n[tool.pytest.ini_options]\n')
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def _collect(root: Path, args: list[str]) -> set[str]:
    """The node ids pytest collects for ``args`` under ``root`` (``--collect-only``, nothing runs)."""
    ran = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            *args,
        ],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    return {line.strip() for line in ran.stdout.splitlines() if "::" in line}
