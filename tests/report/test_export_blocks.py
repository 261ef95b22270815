"""The exports written block by block of patients are, byte for byte, the files one block gives."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clms_etl.report.exports import export_analysis
from clms_etl.warehouse import Warehouse

# what differs between two writes of the same data: the write time (SAS transport: "05DEC26:10:24:31"
# in its headers; Stata: <timestamp>; the codebook's "Exported ..." line)
_WRITE_TIMES = (
    (re.compile(rb"\d\d[A-Z]{3}\d\d:\d\d:\d\d:\d\d"), b"<time>"),
    (re.compile(rb"<timestamp>.[^<]*</timestamp>", re.DOTALL), b"<timestamp></timestamp>"),
    (re.compile(rb"Exported \d{4}-\d\d-\d\d \d\d:\d\d UTC"), b"Exported <time>"),
)


def _files(folder: Path) -> dict[str, bytes]:
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        content = path.read_bytes()
        for pattern, fixed in _WRITE_TIMES:
            content = pattern.sub(fixed, content)
        out[str(path.relative_to(folder))] = content
    return out


@pytest.fixture(scope="module")
def analysed_warehouse(tmp_path_factory):
    """The twin cohort with the survival and molecular analyses stored: result tables of many rows
    (ph_residual: one per event and term), written in blocks of whole (endpoint, model, term) groups."""
    import clms_etl.analyses  # noqa: F401  (declares the result tables)
    from clms_etl.molecular.run import write_outputs as molecular_outputs
    from clms_etl.survival.run import write_outputs as survival_outputs
    from tests.warehouse.helpers import load_twin

    root = tmp_path_factory.mktemp("analysed")
    with Warehouse(f"duckdb:///{root / 'warehouse.duckdb'}") as wh:
        wh.create()
        load_twin(wh, root)
        survival_outputs(wh, root / "outputs", "blocks-run")
        molecular_outputs(wh, root / "outputs", "blocks-run")
        yield wh


@pytest.mark.parametrize("shareable", [False, True], ids=["in_house", "shareable"])
def test_exports_written_in_blocks_of_patients_are_the_files_of_one_block(analysed_warehouse, tmp_path, shareable):
    whole = export_analysis(analysed_warehouse, tmp_path / "one", shareable=shareable, k_threshold=2,
                            block_patients=10**9)
    assert whole.rows["patient_summary"] == 79
    assert whole.rows["ph_residual"] > 7 * 5  # more than one block of result rows
    expected = _files(tmp_path / "one")
    assert len(expected) == 4 * len(whole.rows) + 4  # 4 formats, codebook (csv, README), XPT name map + formats
    for size in (1, 7):
        export_analysis(analysed_warehouse, tmp_path / str(size), shareable=shareable, k_threshold=2,
                        block_patients=size)
        got = _files(tmp_path / str(size))
        assert got.keys() == expected.keys()
        different = [name for name in expected if got[name] != expected[name]]
        assert not different, (size, different)
