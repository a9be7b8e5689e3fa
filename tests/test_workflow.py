"""The GitHub Actions workflow (``.github/workflows/ci.yml``), linted here so that a
broken workflow fails in this suite before it fails on GitHub.

* Schema: ``check-jsonschema`` (PyPI, pinned) validates every workflow against the
  GitHub-workflow JSON schema it ships (SchemaStore's, vendored: no network). The
  better-known ``actionlint`` has no wheel on the package index this project
  installs from (its sdist downloads a Go binary at build time), hence this.
* Expressions: every ``${{ ... }}`` is balanced and uses only contexts GitHub
  defines.
* What the workflow must do: run the README's test command on pushes and
  pull requests on the CPU, cache the pip downloads, upload the browser test's
  failure screenshots, and carry an opt-in GPU job with ``COMPANION_DEVICE=cuda``
  on runner labels the maintainer sets; every script it runs exists.
"""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
CI = ROOT / ".github" / "workflows" / "ci.yml"
CONTEXTS = {"github", "env", "vars", "job", "jobs", "steps", "runner", "secrets",
            "strategy", "matrix", "needs", "inputs"}
FUNCTIONS = {"contains", "startsWith", "endsWith", "format", "join", "toJSON", "fromJSON",
             "hashFiles", "success", "always", "cancelled", "failure"}


def _check_jsonschema() -> str:
    exe = pathlib.Path(sys.executable).with_name("check-jsonschema")
    if exe.exists():
        return str(exe)
    found = shutil.which("check-jsonschema")
    if not found:
        pytest.fail("check-jsonschema is not installed (it is in requirements.txt)")
    return found


def _lint(path: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run([_check_jsonschema(), "--builtin-schema", "vendor.github-workflows",
                           str(path)], capture_output=True, text=True, timeout=120)


def _load(path: pathlib.Path) -> dict:
    data = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the key `on` as True.
    if True in data:
        data["on"] = data.pop(True)
    return data


def test_there_is_a_workflow():
    assert CI in WORKFLOWS


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_workflow_matches_the_schema(path):
    proc = _lint(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


MUTATIONS = {
    "misspelt-key": ("runs-on: ubuntu-latest", "runs_on: ubuntu-latest"),
    "wrong-type": ("timeout-minutes: 90", "timeout-minutes: ninety"),
    "unknown-step-key": ("      - uses: actions/checkout@v4", "      - usez: actions/checkout@v4"),
}


def test_the_linter_catches_a_broken_workflow(tmp_path):
    """Each mutation of ci.yml is rejected (one linter run for all: it starts slowly)."""
    text = CI.read_text()
    paths = []
    for name, (old, new) in MUTATIONS.items():
        assert old in text, old
        path = tmp_path / f"{name}.yml"
        path.write_text(text.replace(old, new, 1))
        paths.append(path)
    proc = subprocess.run([_check_jsonschema(), "--builtin-schema", "vendor.github-workflows",
                           *map(str, paths)], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    report = proc.stdout + proc.stderr
    accepted = [p.name for p in paths if p.name not in report]
    assert not accepted, f"the schema accepted {accepted}:\n{report}"


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_expressions_use_known_contexts(path):
    text = path.read_text()
    assert text.count("${{") == text.count("}}"), "unbalanced ${{ }}"
    for expr in re.findall(r"\$\{\{(.*?)\}\}", text):
        expr = re.sub(r"'[^']*'", "''", expr)  # string literals
        for name in re.findall(r"(?<![\w.])([A-Za-z_][\w-]*)(?=\s*[.(\[])", expr):
            assert name in CONTEXTS | FUNCTIONS, f"unknown context or function {name!r}"
    for expr in re.findall(r"^\s*if:\s*(.+)$", text, re.M):
        expr = expr.strip()
        if expr.startswith("${{"):
            continue
        names = re.findall(r"(?<![\w.'])([A-Za-z_][\w-]*)(?=\s*[.(])", expr)
        assert all(n in CONTEXTS | FUNCTIONS for n in names), expr


def _steps(job: dict) -> list[dict]:
    return job.get("steps", [])


def test_cpu_job_runs_the_readme_test_command_on_push_and_pull_request():
    wf = _load(CI)
    assert {"push", "pull_request"} <= set(wf["on"])
    cpu = wf["jobs"]["test-cpu"]
    runs = [s.get("run", "") for s in _steps(cpu)]
    assert "scripts/test.sh" in runs, runs
    assert "scripts/test.sh" in (ROOT / "README.md").read_text()
    assert "COMPANION_DEVICE" not in str(cpu.get("env", {}))
    assert "if" not in cpu


def test_pip_downloads_are_cached():
    for name, job in _load(CI)["jobs"].items():
        caches = [s for s in _steps(job) if str(s.get("uses", "")).startswith("actions/cache@")]
        assert caches, f"{name}: no actions/cache step"
        with_ = caches[0]["with"]
        assert ".cache/pip" in with_["path"]
        assert "hashFiles('requirements.txt'" in with_["key"]


def test_failure_screenshots_are_uploaded():
    for name, job in _load(CI)["jobs"].items():
        uploads = [s for s in _steps(job)
                   if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
        assert uploads, f"{name}: no upload of test-artifacts/"
        assert uploads[0]["if"] == "failure()"
        assert uploads[0]["with"]["path"].rstrip("/") == "test-artifacts"
    # ... which is where the browser test writes them.
    assert 'ARTIFACTS = ROOT / "test-artifacts"' in (ROOT / "tests" / "test_browser.py").read_text()


def test_gpu_job_is_opt_in():
    gpu = _load(CI)["jobs"]["test-gpu"]
    assert "vars.GPU_RUNNER_LABELS" in gpu["if"]
    assert "vars.GPU_RUNNER_LABELS" in gpu["runs-on"]
    assert gpu["env"]["COMPANION_DEVICE"] == "cuda"
    assert "scripts/test.sh" in [s.get("run", "") for s in _steps(gpu)]


def test_actions_are_pinned_and_scripts_exist():
    for job in _load(CI)["jobs"].values():
        for step in _steps(job):
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", step["uses"]), step["uses"]
            for word in step.get("run", "").split():
                if word.startswith("scripts/") or word.startswith(".ci/"):
                    path = ROOT / word
                    assert path.is_file() and path.stat().st_mode & 0o111, word
