"""The results tables of README.md and docs/ are written from their records (`tools/docs_tables.py`): a number that
drifts from its record fails here and in `make lint`."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tools import docs_tables

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_results_tables_come_from_records_and_match_them():
    readme = (ROOT / "README.md").read_text()
    names = {name.strip() for block in docs_tables.BLOCK.finditer(readme) for name in block.group("name").split(",")}
    assert {"default-run-bf16", "default-run-avx2-cold", "workflow-steps"} <= names
    assert docs_tables.differing() == []
    for name in names:
        record = json.loads((docs_tables.RECORDS / f"{name}.json").read_text())
        assert record["command"] and record["cpu"]["model"] and record["cpu"]["flags"] and record["date"]


@pytest.fixture
def copied(tmp_path, monkeypatch):
    """README.md, docs/*.md and the records in a temporary root, for tables to drift in."""
    (tmp_path / "docs").mkdir()
    shutil.copy2(ROOT / "README.md", tmp_path / "README.md")
    for page in (ROOT / "docs").glob("*.md"):
        shutil.copy2(page, tmp_path / "docs" / page.name)
    shutil.copytree(docs_tables.RECORDS, tmp_path / "docs" / "records")
    monkeypatch.setattr(docs_tables, "ROOT", tmp_path)
    monkeypatch.setattr(docs_tables, "RECORDS", tmp_path / "docs" / "records")
    return tmp_path


def test_a_changed_record_or_a_hand_edited_table_fails_the_check_until_make_docs(copied, capsys):
    record_file = copied / "docs" / "records" / "held-out-avx2-rung-1-20-2.json"
    record = json.loads(record_file.read_text())
    record["rows"][2]["held_out"][0] = 0.980  # A new measurement of stage 3, seed 42.
    record_file.write_text(json.dumps(record))
    assert docs_tables.main(["--check"]) == 1
    assert "docs/results-and-trust.md: held-out-avx2-rung-1-20-2" in capsys.readouterr().err
    assert docs_tables.main([]) == 0 and docs_tables.main(["--check"]) == 0  # make docs writes it in.
    trust = (copied / "docs" / "results-and-trust.md").read_text()
    assert "| 3. Fine tuning | 0.980 / 0.962 / 0.960 | 0.967 (0.020) | 0.979 |" in trust
    speed = copied / "docs" / "speed.md"
    speed.write_text(speed.read_text().replace("| 42 | pool 1, 30 + 4 epochs | 0.970 /", "| 42 | pool 1, 30 + 4 "
                                                                                         "epochs | 0.971 /"))
    assert docs_tables.differing() == ["docs/speed.md: default-run-avx2"]  # A hand edit is found too.


def test_the_readme_results_accuracies_and_needs_follow_the_seeds_record(copied):
    record_file = copied / "docs" / "records" / "default-run-bf16.json"
    record = json.loads(record_file.read_text())
    held_out = record["stages"][2]["held_out"][0]
    held_out.update(accuracy=0.5, correct=held_out["total"] // 2)  # Stage 3 of the first seed, measured anew.
    record["peak_memory_gb"] = 9.9
    record_file.write_text(json.dumps(record))
    assert set(docs_tables.differing()) == {"README.md: default-run-bf16",
                                            "README.md: default-run-bf16, default-run-avx2-cold"}
    assert docs_tables.main([]) == 0
    readme = (copied / "README.md").read_text()
    assert "| 3. Fine tuning | 50.00% (" in readme and "| memory | 9.9 GB at peak" in readme


def test_a_described_cpu_reads_back_as_a_records_fields():
    from lib import SuiteError
    from lib.core import devices

    assert devices.cpu_fields("AMD EPYC, 2 CPUs, flags avx512f avx2 avx512_bf16") == {
        "model": "AMD EPYC", "cores": 2, "flags": ["avx2", "avx512_bf16", "avx512f"]}
    assert devices.cpu_fields("AMD EPYC, 2 CPUs, flags avx2, ONEDNN_MAX_CPU_ISA=AVX2")["held_to"] == \
        "ONEDNN_MAX_CPU_ISA=AVX2"
    assert devices.cpu_fields("Some CPU, 1 CPU, flags none of avx2/avx512")["flags"] == []
    assert devices.cpu_fields(devices.describe_cpu())["cores"] >= 1
    with pytest.raises(SuiteError, match="not in the form"):
        devices.cpu_fields("a CPU")


def test_the_test_times_sentence_reads_the_pytest_steps_of_a_workflow_record():
    record = json.loads((docs_tables.RECORDS / "workflow-steps.json").read_text())
    rows = [{"job": "ci.yml:fast-tests", "step": "The fast tests", "result": "passed: 9 passed", "time": "180 s"},
            {"job": "ci.yml:slow-tests", "step": "The slow tests", "result": "passed: 3 passed", "time": "1500 s"},
            {"job": "ci.yml:lint", "step": "lint", "result": "passed", "time": "600 s"}]
    said = docs_tables.test_times({**record, "rows": rows})
    assert said.startswith("`make test-fast` took 3 minutes and `make test-slow` 25 (`make test` runs both: about 28")
    assert record["command"] in said and record["cpu"]["model"] in said
    with pytest.raises(SystemExit, match="not fast-tests and slow-tests"):
        docs_tables.test_times({**record, "rows": rows[2:]})


def test_a_stage_time_shows_the_start_forecast_where_it_differs_from_the_one_just_before():
    assert docs_tables._forecast_cell(100, 110) == "100 / 110 (+10%)"
    assert docs_tables._forecast_cell(100, 110, 100) == "100 / 110 (+10%)"
    assert docs_tables._forecast_cell(100, 90, 120) == "100 / 90 (-10%) [at the start 120: -25%]"
    assert docs_tables._forecast_cell(None, 90) == "none / 90"
