"""What a release carries: a licence, a citation file that names the work the suite builds on, a changelog, and
one version that all of them and the suite agree on."""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from lib.core import versions

ROOT = Path(__file__).resolve().parent.parent


def test_one_version_in_the_code_the_citation_and_the_changelog():
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert citation["version"] == versions.SUITE_VERSION
    released = re.findall(r"^## (\d+\.\d+\.\d+) \((\d{4}-\d\d-\d\d)\)$",
                          (ROOT / "CHANGELOG.md").read_text(encoding="utf-8"), re.MULTILINE)
    assert released[0] == (versions.SUITE_VERSION, citation["date-released"])


def test_the_citation_is_complete_and_credits_what_the_suite_builds_on():
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert citation["cff-version"] == "1.2.0" and citation["type"] == "software"
    assert {"message", "title", "authors", "license"} <= set(citation)
    assert citation["license"] == "MIT" and (ROOT / "LICENSE").read_text().startswith("MIT License")
    cited = " ".join(reference["title"] for reference in citation["references"])
    assert "Very Deep Convolutional Networks" in cited and "Deep Learning with Python" in cited and "Asirra" in cited
    for reference in citation["references"]:
        assert reference["authors"] and reference["year"], reference["title"]


def test_every_run_manifest_records_the_suite_version():
    from lib.run import manifest

    record = manifest.start("release-check", {"name": "smoke", "path": "params/smoke.yaml"}, "")
    assert record["versions"]["suite"] == versions.SUITE_VERSION and record["versions"]["python"]
