"""A stage's report, `<stage>.html`: the executed notebook as one standalone page made for people.

It is titled after its stage, opens on the result (validation and held-out accuracy with their 95% intervals, the
comparison with the stage before it photo by photo, best epoch, time, the course notes' number, the learning curves
and the stage's key figure, all from what the stage wrote), and only then shows the notebook, its code folded and
TensorFlow's own log lines left out of the cell outputs (the executed `.ipynb` beside it keeps everything). It loads
nothing from the network. A stage that did not finish opens on a banner saying how it ended. Everything that
reaches the page from a file, a parameter or an error is escaped.
"""
from __future__ import annotations

import base64
import datetime
from pathlib import Path

from lib import TENSORFLOW_LOG_LINE
from lib.core import records, report_split, stages, storage
from lib.pages import html

# The accuracies a stage reports, each shown with its 95% interval and counts where the stage kept them.
ACCURACIES = ("val_accuracy", "val_accuracy_tta", "test_accuracy", "test_accuracy_tta")


def _seconds(metrics: records.Metrics) -> float | None:
    try:
        started, finished = (datetime.datetime.fromisoformat(metrics[key]) for key in ("started", "finished"))
    except (KeyError, TypeError, ValueError):
        return None
    return (finished - started).total_seconds()


def _figures(folder: Path, stage: stages.Stage) -> list[dict[str, str]]:
    found = []
    for name in ("learning_curves.png", stage.key_figure):
        path = folder / name
        if path.is_file():
            found.append({"name": name, "uri": "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()})
    return found


def header(folder: Path, stage: stages.Stage, banner: str | None = None) -> str:
    """The panel the report opens on: the stage's result from `folder`, or the banner of a stage that stopped."""
    metrics = records.read_metrics(folder)
    accuracies = {key: records.accuracy_text(metrics or {}, key) for key in ACCURACIES}
    return html.render("stage_header.html.j2", heading=f"Stage {stage.number}: {stage.title}", run=folder.parent.name,
                       profile=(metrics or {}).get("profile"), notebook=f"{stage.stem}.ipynb", banner=banner,
                       metrics=metrics, sentence=records.sentence(metrics) if metrics else "", accuracies=accuracies,
                       compared=(metrics or {}).get("compared_with_previous") or {},
                       photos={split: report_split.photos_of(metrics or {}, split) for split in ("validation", "test")},
                       report_name=report_split.name_of(metrics or {}),
                       seconds=_seconds(metrics) if metrics else None, figures=_figures(folder, stage))


def _for_the_page(notebook) -> None:
    """What the page leaves out of the notebook: TensorFlow's log lines in the cells' stderr streams (and streams
    left empty by it), and the "Open in Colab" badge, an image from the network that means nothing in a report."""
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            cell.source = "\n".join(line for line in cell.source.splitlines()
                                    if "colab-badge.svg" not in line and not line.startswith("[colab]: "))
        kept = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                output["text"] = "".join(line for line in output["text"].splitlines(keepends=True)
                                         if not TENSORFLOW_LOG_LINE.match(line))
                if not output["text"].strip():
                    continue
            kept.append(output)
        if "outputs" in cell:
            cell["outputs"] = kept


def render(notebook_file: Path, html_file: Path, stage: stages.Stage, banner: str | None = None) -> Path:
    """Render a stage's executed notebook into its report at `html_file`, atomically; `banner` (plain text) says
    how a stage that did not finish ended."""
    import nbconvert
    import nbformat

    notebook = nbformat.read(notebook_file, as_version=4)
    _for_the_page(notebook)
    notebook.metadata["title"] = f"Stage {stage.number}: {stage.title} ({html_file.parent.parent.name})"
    exporter = nbconvert.HTMLExporter(template_name="report", extra_template_basedirs=[str(html.TEMPLATES_DIR)])
    body, _ = exporter.from_notebook_node(
        notebook, resources={"suite_header": header(html_file.parent, stage, banner)})
    return storage.write_text(html_file, body)
