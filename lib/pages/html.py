"""Standalone HTML pages from the jinja2 templates in `lib/pages/templates/`, with autoescaping.

The run's summary page, the comparison of runs and the prediction gallery are rendered here; figures are
embedded as data URIs so that each page stands on its own.
"""
from __future__ import annotations

import base64
import functools
import io
from pathlib import Path
from typing import Any

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


def percent(value: Any, digits: int = 1) -> str:
    """0.9731 -> '97.3%'; None -> ''."""
    return "" if value is None else f"{value:.{digits}%}"


def duration(seconds: Any) -> str:
    """Seconds as '7 min 04 s' (or '42 s'); None -> ''."""
    if seconds is None:
        return ""
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


@functools.lru_cache(maxsize=1)
def _environment():
    import jinja2

    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
                                     autoescape=jinja2.select_autoescape(["html", "j2"]),
                                     undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    environment.filters.update(percent=percent, duration=duration)
    return environment


def render(template: str, **context: Any) -> str:
    """The page of `template` (a file name in `lib/pages/templates/`) filled with `context`."""
    return _environment().get_template(template).render(**context)


def figure_data_uri(figure, close: bool = True) -> str:
    """A matplotlib figure as an embeddable PNG data URI (closed afterwards unless `close` is False)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    if close:
        import matplotlib.pyplot as plt

        plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def png_data_uri(pixels) -> str:
    """A uint8 image array as an embeddable PNG data URI."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
