"""The shape of the code: `lib/` in layers that import only downwards and never in a circle, small functions,
every module under test, and notebooks that show their Keras in short cells."""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lib.core import stages

ROOT = Path(__file__).resolve().parent.parent
LIB = ROOT / "lib"
# Lowest first: a module may import from its own layer or a lower one, never from a higher one.
LAYERS = ("lib.core", "lib.study", "lib.pages", "lib.run", "lib.runner")


def modules() -> dict[str, Path]:
    """Every module of `lib/` by dotted name (a package by its `__init__.py`)."""
    found = {}
    for path in LIB.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(source: str, package: str, known: dict[str, Path]) -> set[str]:
    """The `lib` modules a source imports anywhere (inside functions too), relative imports resolved."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names |= {base, *(f"{base}.{alias.name}" for alias in node.names)}
    found = set()
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name:
            found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    known = modules()
    graph = {}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = imported(path.read_text(), package, known) - {name, "lib"}
    return graph


def layer(module: str) -> int:
    return next((index for index, prefix in enumerate(LAYERS) if module == prefix or module.startswith(prefix + ".")),
                -1)


def test_lib_has_no_import_circle_and_imports_only_downwards():
    graph = import_graph()
    state: dict[str, str] = {}
    circles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                circles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []
    upward = [(module, target) for module, targets in graph.items() for target in targets
              if layer(target) > layer(module)]
    assert upward == []


def test_the_core_knows_neither_tensorflow_nor_the_cluster():
    for name, path in modules().items():
        if layer(name) == 0:
            tree = ast.parse(path.read_text())
            top_level = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
            names = {alias.name for node in top_level for alias in node.names} | {
                node.module for node in top_level if isinstance(node, ast.ImportFrom)}
            assert not {"tensorflow", "keras"} & names, name


@pytest.mark.parametrize("modules", ["lib.runner",
                                     "lib.pages.summary, lib.pages.compare, lib.pages.report, lib.pages.seeds"])
def test_the_runner_and_the_pages_start_without_tensorflow(modules):
    """What importing them reaches, through every module they import in turn: `--help`, a parameter mistake and
    the pages answer at once, and TensorFlow starts only where a stage or the forecast needs it."""
    script = f"import sys, {modules}; print(sorted({{'tensorflow', 'keras'}} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]", f"importing {modules} loads {loaded.stdout.strip()}"


# The names the runner keeps its messages under: a decision read from such text changes when the text is reworded.
MESSAGE_NAMES = re.compile(r"(message|choice|why|reason|verdict|description|note|sentence|text)$")


def test_the_runner_decides_on_fields_not_on_the_wording_of_messages():
    found = []
    for path in [LIB / "runner.py", *sorted((LIB / "run").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in {"startswith", "endswith"}):
                receiver = node.func.value
                name = receiver.attr if isinstance(receiver, ast.Attribute) else getattr(receiver, "id", "")
                if MESSAGE_NAMES.search(name):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


def test_lib_is_a_few_packages_with_small_functions():
    top_level = sorted(path.name for path in LIB.glob("*.py"))
    assert top_level == ["__init__.py", "runner.py"]
    assert sorted(path.name for path in LIB.iterdir() if path.is_dir() and path.name != "__pycache__") == [
        "core", "pages", "run", "study"]
    long = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long.append(f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert long == []


def test_every_module_of_lib_is_imported_by_a_test():
    known = modules()
    tested = set()
    for path in (ROOT / "tests").glob("*.py"):
        tested |= imported(path.read_text(), "tests", known)
    untested = sorted(name for name, path in known.items() if path.name != "__init__.py" and name not in tested)
    assert untested == []


def code_cells(stem: str) -> list[str]:
    notebook = json.loads((ROOT / "notebooks" / f"{stem}.ipynb").read_text())
    return ["".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code"
            and "parameters" not in cell["metadata"].get("tags", [])]


@pytest.mark.parametrize("stem", stages.STEMS)
def test_each_notebook_shows_its_keras_in_short_cells(stem):
    source = (ROOT / "notebooks" / f"{stem}.py").read_text()
    assert "keras.optimizers.RMSprop(" in source and ".compile(" in source and "training.BestEpoch()" in source
    assert max(len(cell.splitlines()) for cell in code_cells(stem)) <= 15
    if stem == "01_feature_extraction":
        assert "keras.layers.Dense(256, activation=\"relu\")" in source and "classifier.summary()" in source
    if stem == "03_fine_tuning":
        trainable = source.index("layer.trainable = layer.name in unfreeze_layers")
        assert source.index("conv_base.trainable = True") < trainable < source.index(".compile(", trainable)


def test_stage_one_builds_the_classifier_the_later_stages_load():
    """Stage 1's classifier, written out in its notebook, has the layers of `models.build_classifier`, which stages
    2 and 3 build when they start from scratch and fill with stage 1's weights when they do not."""
    import keras

    from lib.study import models

    cells = code_cells("01_feature_extraction")
    cell = next(cell for cell in cells if cell.startswith("classifier = keras.Sequential"))
    namespace = {"keras": keras, "dropout": 0.3, "conv_base": type("Base", (), {"output_shape": (None, 4, 4, 512)})}
    exec(cell.replace("classifier.summary()", ""), namespace)

    def layers_of(model):
        return [{key: value for key, value in layer.get_config().items() if key != "name"} for layer in model.layers]

    assert layers_of(namespace["classifier"]) == layers_of(models.build_classifier((4, 4, 512), 0.3))
    assert namespace["classifier"].name == "classifier"
