"""Notebook sources: each .ipynb paired with a jupytext .py, edited on either side, linted, kept free of outputs
in commits, sharing their set-up cells, and runnable in Colab (with a stand-in for Colab's module)."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest
from conftest import copy_project, run_runner

from lib.core import stages
from lib.run import colab, pairing

ROOT = Path(__file__).resolve().parent.parent
MAKE = ["make", f"VENV={ROOT / '.venv'}"]


def sources() -> dict[str, list]:
    return {stage.stem: jupytext.read(stage.source).cells for stage in stages.STAGES}


def shared_cells(cells) -> list[str]:
    """The Colab cell and the set-up cell: the two code cells after the parameters cell."""
    start = next(index for index, cell in enumerate(cells) if "parameters" in cell.metadata.get("tags", []))
    code = [cell.source for cell in cells[start + 1:] if cell.cell_type == "code"]
    return code[:2]


def test_shared_cells_and_common_parameters_are_the_same_in_every_notebook():
    cells = sources()
    first, *others = cells.values()
    for other in others:
        assert shared_cells(other) == shared_cells(first)
    common = {stem: next(cell.source for cell in stage_cells if "parameters" in cell.metadata.get("tags", []))
              .split("# Common to every stage:")[1] for stem, stage_cells in cells.items()}
    assert len(set(common.values())) == 1, "the common parameters differ between notebooks"
    assert "google.colab" in shared_cells(first)[0] and "load_tensorflow" in shared_cells(first)[1]
    for stem, stage_cells in cells.items():  # Title and story first; the parameters cell short and literal.
        assert stage_cells[0].cell_type == "markdown" and stage_cells[0].source.startswith("# Stage")
        assert colab.badge_link(stem) in stage_cells[0].source


@pytest.mark.parametrize("notebook", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_committed_notebooks_carry_no_outputs_and_no_code_definitions(notebook):
    content = json.loads(notebook.read_text())
    for cell in content["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
            tree = ast.parse("".join(cell["source"]))
            definitions = [node for node in ast.walk(tree)
                           if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))]
            assert not definitions, f"code defined in a notebook cell (it belongs in lib/): {cell['source']}"
        else:
            assert "\\n" not in "".join(cell["source"]), "a literal backslash-n in a markdown cell"
    assert content["cells"][0]["cell_type"] == "markdown"


def test_the_tree_is_in_sync_and_lints_clean():
    assert pairing.check() == []
    ruff = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert ruff.returncode == 0, ruff.stdout


@pytest.mark.parametrize("stage", stages.STAGES, ids=lambda stage: stage.stem)
def test_papermill_reads_every_parameter_with_its_help(stage):
    result = subprocess.run([sys.executable, "-m", "papermill", "--help-notebook", str(stage.notebook)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0 and "Unable to parse" not in result.stdout + result.stderr
    from lib.core import params

    for name, parameter in params.declared(stage.stem).items():
        assert f"  {name}: {parameter.type_name}" in result.stdout


def test_make_help_lists_every_target():
    result = subprocess.run(["make", "help"], cwd=ROOT, capture_output=True, text=True)
    for target in ("setup", "run-feature-extraction", "run-data-augmentation", "run-fine-tuning", "run-all", "test",
                   "clean", "notebooks", "lint"):
        assert target in result.stdout


@pytest.fixture
def project(tmp_path):
    return copy_project(tmp_path / "project")


def make(project: Path, *targets: str) -> subprocess.CompletedProcess:
    return subprocess.run([*MAKE, *targets], cwd=project, capture_output=True, text=True)


def test_an_edit_saved_by_jupyter_reaches_the_py_and_lint_stays_green(project):
    notebook_file = project / "notebooks" / "02_data_augmentation.ipynb"
    notebook = nbformat.read(notebook_file, as_version=4)  # What Jupyter does on save.
    heading = next(cell for cell in notebook.cells if cell.source.startswith("## The augmentation"))
    heading.source = heading.source.replace("## The augmentation", "## The random augmentation")
    nbformat.write(notebook, notebook_file)
    assert "differ" in make(project, "lint").stderr
    synced = make(project, "notebooks")
    assert synced.returncode == 0 and "02_data_augmentation: ipynb -> py" in synced.stdout
    assert "# ## The random augmentation" in (project / "notebooks" / "02_data_augmentation.py").read_text()
    lint = make(project, "lint")
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_an_edit_of_the_py_reaches_the_notebook_and_lint_stays_green(project):
    source = project / "notebooks" / "01_feature_extraction.py"
    source.write_text(source.read_text().replace("epochs: int = 30  # Passes over the training features.",
                                                 "epochs: int = 25  # Passes over the training features."))
    refused = run_runner(project, project / "outputs", "feature_extraction", "--profile", "smoke", "--no-forecast")
    assert refused.returncode == 2 and "differ" in refused.stderr and "make notebooks" in refused.stderr
    synced = make(project, "notebooks")
    assert synced.returncode == 0 and "01_feature_extraction: py -> ipynb" in synced.stdout
    notebook = nbformat.read(project / "notebooks" / "01_feature_extraction.ipynb", as_version=4)
    assert "epochs: int = 25" in notebook.cells[2].source
    lint = make(project, "lint")
    assert lint.returncode == 0, lint.stdout + lint.stderr


def with_outputs(notebook_file: Path) -> None:
    notebook = nbformat.read(notebook_file, as_version=4)
    code = next(cell for cell in notebook.cells if cell.cell_type == "code")
    code.execution_count = 1
    code.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ran\n")]
    nbformat.write(notebook, notebook_file)


def test_outputs_never_reach_a_commit(project):
    notebook_file = project / "notebooks" / "03_fine_tuning.ipynb"
    with_outputs(notebook_file)
    subprocess.run(["git", "add", str(notebook_file)], cwd=project, check=True)
    lint = make(project, "lint")
    assert lint.returncode != 0 and "has outputs" in lint.stderr  # No filter in this clone yet.
    subprocess.run(["git", "reset", "-q"], cwd=project, check=True)
    filter_command = f'"{ROOT / ".venv" / "bin" / "python"}" -m nbstripout --keep-id'
    subprocess.run([sys.executable, "-m", "nbstripout", "--install"], cwd=project, check=True)
    subprocess.run(["git", "config", "filter.nbstripout.clean", filter_command], cwd=project, check=True)
    subprocess.run(["git", "add", str(notebook_file)], cwd=project, check=True)
    staged = json.loads(subprocess.run(["git", "show", ":notebooks/03_fine_tuning.ipynb"], cwd=project,
                                       capture_output=True, text=True, check=True).stdout)
    assert all(not cell.get("outputs") for cell in staged["cells"])  # The commit is clean,
    assert "ran" in notebook_file.read_text()  # the working copy keeps its outputs,
    assert make(project, "lint").returncode == 0  # and lint is green.


def test_one_repository_url_sets_every_colab_link_and_the_ci_badge(project):
    settings = project / "lib" / "run" / "colab.py"
    settings.write_text(settings.read_text().replace(colab.REPOSITORY_URL, "https://github.com/someone/cats-suite"))
    lint = make(project, "lint")
    assert "README.md: links differ from REPOSITORY_URL" in lint.stderr
    assert "docs/development.md: links differ from REPOSITORY_URL" in lint.stderr
    assert make(project, "notebooks").returncode == 0
    for path in [project / "README.md", project / "docs" / "development.md",
                 *sorted((project / "notebooks").glob("0*"))]:
        text = path.read_text()
        assert "YOUR-GITHUB-ACCOUNT" not in text, path.name
        assert "someone/cats-suite" in text, path.name
    badge = "https://github.com/someone/cats-suite/actions/workflows/ci.yml/badge.svg"
    assert badge in (project / "README.md").read_text()
    assert make(project, "lint").returncode == 0
