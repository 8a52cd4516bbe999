"""The notebooks and their paired jupytext sources: keeping each pair in sync and the commits clean.

    python -m lib.run.pairing sync     (make notebooks)   bring each pair in line, whichever side was edited
    python -m lib.run.pairing check    (make lint)        fail if a pair differs, a commit would hold outputs,
                                                          or a link differs from the repository URL
    python -m lib.run.pairing check pairs|outputs|links   only those (the pre-commit hooks, one each)

Each `notebooks/<stem>.ipynb` (what Jupyter, Colab and papermill open) is paired with `<stem>.py` in
jupytext's percent format (what editors, linters and reviews read). Pairs are compared by content (cell
types, sources and tags), never by file times, which a fresh clone scrambles. `sync` takes the side that
differs from git's last commit as the edited one (the newer file when both or neither do), keeps a
notebook's outputs in the working copy, and copies the repository URL of `lib/run/colab.py` into every Colab
cell, badge and Actions link of the notebooks, the README and docs/.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lib import SuiteError
from lib.core import paths, stages
from lib.run import colab

README = paths.PROJECT_ROOT / "README.md"
DOCS_DIR = paths.PROJECT_ROOT / "docs"
CHECKS = ("pairs", "outputs", "links")


def _cells(notebook: dict) -> list[tuple[str, str, tuple[str, ...]]]:
    cells = []
    for cell in notebook.get("cells", []):
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        cells.append((cell["cell_type"], source.strip(), tuple(cell.get("metadata", {}).get("tags", []))))
    return cells


def difference(stage: stages.Stage) -> str | None:
    """How a stage's notebook and its paired `.py` differ (None when their cells are the same)."""
    import jupytext

    if not stage.source.is_file():
        return f"{stage.source.name} is missing"
    from_notebook = _cells(json.loads(stage.notebook.read_text(encoding="utf-8")))
    from_source = _cells(jupytext.read(stage.source))
    if len(from_notebook) != len(from_source):
        return f"{len(from_notebook)} cells in the .ipynb, {len(from_source)} in the .py"
    for number, (left, right) in enumerate(zip(from_notebook, from_source), start=1):
        if left != right:
            return f"cell {number} differs"
    return None


def check_in_sync(stem: str) -> None:
    """A `SuiteError` when a stage's notebook differs from its paired `.py`: the runner never runs stale code."""
    stage = stages.get(stem)
    found = difference(stage)
    if found:
        raise SuiteError(f"notebooks/{stage.notebook.name} and its paired {stage.source.name} differ ({found}). "
                         "Run `make notebooks` to sync them (the side you edited wins), then run again.")


def _git(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *arguments], cwd=paths.PROJECT_ROOT, capture_output=True, text=True)


def _changed_since_commit(path: Path) -> bool | None:
    """Whether `path` differs from git's HEAD (None outside git or for a file git does not track)."""
    relative = path.relative_to(paths.PROJECT_ROOT)
    committed = _git("show", f"HEAD:{relative}")
    if committed.returncode != 0:
        return None
    return committed.stdout != path.read_text(encoding="utf-8")


def _edited_side(stage: stages.Stage) -> str:
    """'ipynb' or 'py': the side of a differing pair to copy from."""
    notebook_changed, source_changed = _changed_since_commit(stage.notebook), _changed_since_commit(stage.source)
    if notebook_changed and not source_changed:
        return "ipynb"
    if source_changed and not notebook_changed:
        return "py"
    return "ipynb" if stage.notebook.stat().st_mtime > stage.source.stat().st_mtime else "py"


def _jupytext(*arguments: str) -> None:
    from jupytext.cli import jupytext as jupytext_command

    jupytext_command(["--quiet", *arguments])


def _write_links(path: Path) -> bool:
    text = path.read_text(encoding="utf-8")
    updated = colab.with_current_links(text)
    if updated != text:
        path.write_text(updated, encoding="utf-8")
    return updated != text


def linked_documents() -> list[Path]:
    """The pages whose Colab badges and Actions links follow `REPOSITORY_URL`: the README and docs/*.md."""
    return [path for path in [README, *sorted(DOCS_DIR.glob("*.md"))] if path.is_file()]


def sync() -> list[str]:
    """Bring every pair in line and the repository's links up to date; return what was done, one line each."""
    done = []
    for stage in stages.STAGES:
        if not stage.source.is_file() or difference(stage) is not None:
            side = "ipynb" if not stage.source.is_file() else _edited_side(stage)
            if side == "ipynb":
                _jupytext("--to", "py:percent", str(stage.notebook))
            else:
                _jupytext("--to", "ipynb", "--update", str(stage.source))
            done.append(f"{stage.stem}: {side} -> {'py' if side == 'ipynb' else 'ipynb'}")
        if _write_links(stage.source):
            _jupytext("--to", "ipynb", "--update", str(stage.source))
            done.append(f"{stage.stem}: links set from REPOSITORY_URL in lib/run/colab.py")
    for path in linked_documents():
        if _write_links(path):
            done.append(f"{path.relative_to(paths.PROJECT_ROOT)}: links set from REPOSITORY_URL in lib/run/colab.py")
    return done


def committed_outputs(stage: stages.Stage) -> str | None:
    """Why what git would commit of a stage's notebook holds outputs (None when it holds none).

    Checks the staged copy, and the working copy unless git's nbstripout filter cleans it on `git add`.
    """
    versions = {}
    staged = _git("show", f":{stage.notebook.relative_to(paths.PROJECT_ROOT)}")
    if staged.returncode == 0:
        versions["the staged copy"] = staged.stdout
    filtered = _git("check-attr", "filter", "--", str(stage.notebook)).stdout.strip().endswith("nbstripout")
    if not (filtered and _git("config", "--get", "filter.nbstripout.clean").stdout.strip()):
        versions["the working copy (no nbstripout filter: run `make setup`)"] = stage.notebook.read_text("utf-8")
    for where, text in versions.items():
        for cell in json.loads(text).get("cells", []):
            if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count")):
                return f"{where} of {stage.notebook.name} has outputs"
    return None


def check(kinds: tuple[str, ...] = CHECKS) -> list[str]:
    """Every problem `make lint` reports about the notebooks and the links, of the `kinds` among `CHECKS`:
    differing pairs, outputs git would commit, links that differ from `REPOSITORY_URL`."""
    problems = []
    for stage in stages.STAGES:
        found = difference(stage) if "pairs" in kinds else None
        if found:
            problems.append(f"{stage.notebook.name} and {stage.source.name} differ ({found}): run `make notebooks`")
        outputs = committed_outputs(stage) if "outputs" in kinds else None
        if outputs:
            problems.append(f"{outputs}: clear them (Jupyter: Edit > Clear Outputs of All Cells) or `make setup`")
    linked = [stage.source for stage in stages.STAGES if stage.source.is_file()] + linked_documents()
    for path in linked if "links" in kinds else []:
        if colab.with_current_links(path.read_text(encoding="utf-8")) != path.read_text(encoding="utf-8"):
            problems.append(f"{path.relative_to(paths.PROJECT_ROOT)}: links differ from REPOSITORY_URL in "
                            "lib/run/colab.py: run `make notebooks`")
    return problems


def main(argv: list[str]) -> int:
    if argv == ["sync"]:
        for line in sync() or ["Notebooks and their .py twins already match."]:
            print(line)
        return 0
    if argv[:1] == ["check"] and set(argv[1:]) <= set(CHECKS):
        problems = check(tuple(argv[1:]) or CHECKS)
        for problem in problems:
            print(f"ERROR: {problem}", file=sys.stderr)
        if not problems:
            print("Notebooks match their .py twins, carry no outputs to commit, and link to lib/run/colab.py's URL."
                  if len(argv) == 1 else f"No problem found: {' '.join(argv[1:])}.")
        return 1 if problems else 0
    print(f"usage: python -m lib.run.pairing sync | check [{'|'.join(CHECKS)} ...]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
