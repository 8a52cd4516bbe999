"""CI where users run it: the GitHub Actions workflows name only make targets that exist and pass actionlint, run
what docs/development.md says they run, keep no repository address of their own, and the pre-commit hooks refuse
a commit of an unsynced notebook pair or of notebook outputs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from conftest import complete_stage, copy_project

from lib.run import colab
from tools import accuracy_minimum, workflow_steps

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
BIN = Path(sys.executable).parent
ACTIONLINT = [str(BIN / "actionlint"), f"-shellcheck={BIN / 'shellcheck'}"]


def missing_targets(workflow: Path, makefile: Path = ROOT / "Makefile") -> list[str]:
    """The targets of `make` calls in a workflow's `run:` steps that the Makefile does not define."""
    defined = workflow_steps.makefile_targets(makefile.read_text())
    workflow_data = workflow_steps.load(workflow)
    scripts = [step.get("run", "") for job in workflow_data["jobs"].values() for step in job.get("steps", [])]
    return [target for script in scripts for target in workflow_steps.make_targets(script) if target not in defined]


def test_every_make_target_a_workflow_names_exists():
    assert [path.name for path in WORKFLOWS] == ["ci.yml", "real-data.yml"]
    named = {target for path in WORKFLOWS for step in workflow_steps.plan([path], "workflow_dispatch")
             for target in workflow_steps.make_targets(step.get("command") or "")}
    assert {"setup", "lint", "test-fast", "test-slow", "test-oldest", "run-all", "run-feature-extraction"} <= named
    for path in WORKFLOWS:
        assert missing_targets(path) == [], path.name


def test_a_workflow_naming_a_missing_target_fails(tmp_path):
    workflow = tmp_path / "broken.yml"
    workflow.write_text("on: push\njobs:\n  check:\n    runs-on: ubuntu-latest\n    steps:\n"
                        "      - run: make lint && make test-fastest PROFILE=smoke\n"
                        "      - run: |\n          cd docs\n          make -C .. run-everything\n")
    assert missing_targets(workflow) == ["test-fastest", "run-everything"]
    assert workflow_steps.make_targets("remake x; cmake y; make -j2 a b=1 'c'") == ["a", "c"]
    assert {"help", "setup", "lint", "test", "test-fast"} <= workflow_steps.makefile_targets(
        (ROOT / "Makefile").read_text())
    assert not {"PYTHON", "SHELL", ".PHONY"} & workflow_steps.makefile_targets((ROOT / "Makefile").read_text())


def test_actionlint_passes_on_the_workflows_and_fails_on_a_broken_one(tmp_path):
    passed = subprocess.run([*ACTIONLINT, *map(str, WORKFLOWS)], capture_output=True, text=True)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text((ROOT / ".github" / "workflows" / "ci.yml").read_text()
                      .replace("runs-on:", "runs_on:", 1).replace("retention-days", "retention_days", 1))
    failed = subprocess.run([*ACTIONLINT, str(broken)], capture_output=True, text=True)
    assert failed.returncode == 1
    assert 'unexpected key "runs_on"' in failed.stdout and '"retention_days" is not defined' in failed.stdout


def test_a_push_runs_lint_each_test_once_the_smoke_notebooks_and_the_oldest_versions():
    steps = workflow_steps.plan(WORKFLOWS, "push")
    commands = [step["command"].strip() for step in steps if not step["skip"]]
    assert commands == ["make setup", "make lint", "make setup", "make test-fast", "make setup", "make test-slow",
                        "make setup", "make run-all PROFILE=smoke RUN=ci-smoke", "make test-oldest"]
    skipped = [step for step in steps if step["skip"]]
    assert all(step["skip"].startswith("needs GitHub") for step in skipped if step["workflow"] == "ci.yml")
    assert [step["workflow"] for step in skipped if step["job"] == "*"] == ["real-data.yml"]
    ci = workflow_steps.load(ROOT / ".github" / "workflows" / "ci.yml")
    upload = next(step for step in ci["jobs"]["notebooks"]["steps"] if "upload-artifact" in step.get("uses", ""))
    assert upload["if"] == "always()" and upload["with"]["path"].split() == ["outputs/ci-smoke/",
                                                                           "!outputs/ci-smoke/**/*.keras"]
    # Pushes to the default branch and pull requests, one concurrency group per pull request or branch.
    assert ci["on"]["push"] == {"branches": ["main"]} and "pull_request" in ci["on"]
    assert ci["concurrency"]["group"] == "ci-${{ github.event.pull_request.number || github.ref_name }}"
    for path in WORKFLOWS:
        for job in workflow_steps.load(path)["jobs"].values():
            python = next(step for step in job["steps"] if "setup-python" in step.get("uses", ""))
            assert python["with"] == {"python-version": "3.11"} and python["id"] == "python"
            cache = next(step for step in job["steps"] if "actions/cache" in step.get("uses", "")
                         and "venv" in step["with"]["path"])
            assert "hashFiles('requirements.txt'" in cache["with"]["key"], path.name
            assert "steps.python.outputs.python-version" in cache["with"]["key"], path.name
            assert job["runs-on"] == "ubuntu-latest"


def test_no_ci_job_runs_a_test_another_job_ran():
    """`make test` is the sum of `make test-fast` and `make test-slow` (complementary markers), and no job runs
    `make test` beside them."""
    steps = [step for step in workflow_steps.plan(WORKFLOWS, "push") if not step["skip"]]
    commands = [step["command"].strip() for step in steps]
    assert "make test" not in commands
    assert commands.count("make test-fast") == 1 and commands.count("make test-slow") == 1
    makefile = (ROOT / "Makefile").read_text()
    assert '-m pytest -q -m "not slow" tests' in makefile and "-m pytest -q -m slow tests" in makefile


def test_the_real_data_job_runs_stage_one_on_downloads_and_checks_the_minimum():
    workflow = workflow_steps.load(ROOT / ".github" / "workflows" / "real-data.yml")
    assert workflow_steps.triggers(workflow) == {"schedule", "workflow_dispatch"}
    commands = [step["command"].strip() for step in workflow_steps.plan([ROOT / ".github/workflows/real-data.yml"],
                                                                         "schedule") if not step["skip"]]
    assert commands == ["make setup", "make run-feature-extraction PROFILE=cpu RUN=real-data",
                        ".venv/bin/python tools/accuracy_minimum.py real-data"]
    assert "DATA_DIR" not in str(workflow) and "VGG16_WEIGHTS" not in str(workflow)  # The suite downloads both.
    assert accuracy_minimum.MINIMUM == 0.95


def test_the_accuracy_minimum_check(capsys):
    complete_stage("good", "01_feature_extraction", status="complete", val_accuracy=0.962)
    complete_stage("poor", "01_feature_extraction", status="complete", val_accuracy=0.91)
    complete_stage("unfinished", "01_feature_extraction", status="interrupted", val_accuracy=0.97)
    assert accuracy_minimum.main(["good"]) == 0 and "0.9620, at or above the minimum 0.95" in capsys.readouterr().out
    assert accuracy_minimum.main(["poor"]) == 1 and "0.9100, BELOW the minimum 0.95" in capsys.readouterr().out
    assert accuracy_minimum.main(["unfinished"]) == 2 and "has not completed" in capsys.readouterr().err
    assert accuracy_minimum.main(["absent"]) == 2 and "make run-feature-extraction" in capsys.readouterr().err


def test_the_repository_address_lives_only_in_colab_py():
    badge = f"[![CI]({colab.actions_link('ci.yml')}/badge.svg)]({colab.actions_link('ci.yml')})"
    assert badge in (ROOT / "README.md").read_text()
    assert colab.actions_link() in (ROOT / "docs" / "development.md").read_text()
    for path in WORKFLOWS + [ROOT / ".pre-commit-config.yaml", ROOT / "Makefile"]:
        assert colab.github_path() not in path.read_text(), path.name


@pytest.fixture
def hooked_project(tmp_path, monkeypatch):
    """A copy of the project as a git repository with `make setup`'s nbstripout filter and pre-commit hooks,
    using this .venv (as the hooks' entries do, by the relative path .venv/bin/python)."""
    project = copy_project(tmp_path / "project")
    (project / ".venv").symlink_to(ROOT / ".venv")
    monkeypatch.setenv("PRE_COMMIT_HOME", str(tmp_path / "pre-commit-cache"))
    python = str(ROOT / ".venv" / "bin" / "python")
    for command in ([python, "-m", "nbstripout", "--install"],
                    ["git", "config", "filter.nbstripout.clean", f'"{python}" -m nbstripout --keep-id'],
                    [python, "-m", "pre_commit", "install", "--allow-missing-config"]):
        subprocess.run(command, cwd=project, check=True, capture_output=True)
    return project


def commit(project: Path, *paths: str) -> tuple[int, str]:
    """`git add` and `git commit` of `paths`: the commit's exit status and what its hooks printed."""
    subprocess.run(["git", "add", *paths], cwd=project, check=True)
    environment = {**os.environ, "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
                   "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com"}
    result = subprocess.run(["git", "commit", "-q", "-m", "change"], cwd=project, capture_output=True, text=True,
                            env=environment)
    return result.returncode, result.stdout + result.stderr


def test_the_hooks_refuse_an_unsynced_pair_and_notebook_outputs(hooked_project):
    project = hooked_project
    source = project / "notebooks" / "01_feature_extraction.py"
    source.write_text(source.read_text().replace("epochs: int = 30", "epochs: int = 25"))
    status, printed = commit(project, "notebooks/01_feature_extraction.py")
    assert status == 1 and "each notebook matches its paired .py" in printed and "differ" in printed, printed
    subprocess.run(["git", "checkout", "-q", "HEAD", "--", "."], cwd=project, check=True)

    notebook_file = project / "notebooks" / "03_fine_tuning.ipynb"
    notebook = nbformat.read(notebook_file, as_version=4)
    code = next(cell for cell in notebook.cells if cell.cell_type == "code")
    code.execution_count, code.outputs = 1, [nbformat.v4.new_output("stream", name="stdout", text="ran\n")]
    nbformat.write(notebook, notebook_file)
    # A clone without the filter `make setup` installs (or a tool that bypasses it): outputs would be staged.
    subprocess.run(["git", "config", "--remove-section", "filter.nbstripout"], cwd=project, check=True)
    status, printed = commit(project, "notebooks/03_fine_tuning.ipynb")
    assert status == 1 and "no notebook outputs in the commit" in printed and "has outputs" in printed, printed


def test_the_steps_run_in_order_and_their_outcomes_and_pytest_counts_go_into_a_record(tmp_path, capsys):
    workflow = tmp_path / "w.yml"
    workflow.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
                        "      - uses: actions/checkout@v4\n"
                        "      - run: echo '========= 12 passed, 1 deselected in 3.20s ========='\n"
                        "      - run: exit 3\n"
                        "  b:\n    needs: a\n    runs-on: ubuntu-latest\n    steps:\n      - run: echo never\n")
    rows = workflow_steps.run(workflow_steps.plan([workflow], "push"))
    assert [row[2] for row in rows] == ["skipped", "passed: 12 passed, 1 deselected", "FAILED (3)", "skipped"]
    assert rows[3][3] == "a job it needs did not pass" and "never" not in capsys.readouterr().out.split("|")[0]
    path = workflow_steps.write_record("steps", rows, ["w.yml"], folder=tmp_path)
    record = json.loads(path.read_text())
    assert record["kind"] == "workflow_steps" and record["cpu"]["cores"] >= 1 and record["date"]
    assert record["rows"][1] == {"job": "w.yml:a", "step": "echo '========= 12 passed, 1 deselected in 3.20s "
                                 "========='", "result": "passed: 12 passed, 1 deselected", "time": rows[1][3]}
    assert record["command"] == ".venv/bin/python tools/workflow_steps.py w.yml"


@pytest.mark.parametrize("tool", sorted(path.name for path in (ROOT / "tools").glob("*.py")
                                        if path.name not in {"__init__.py", "docs_tables.py"}))
def test_each_tool_starts_as_a_script_from_any_folder(tool, tmp_path):
    """`.venv/bin/python tools/<tool> --help` from another folder: what it imports of lib/ and tools/ is found."""
    result = subprocess.run([sys.executable, str(ROOT / "tools" / tool), "--help"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0 and "usage:" in result.stdout, result.stderr[-2000:]
