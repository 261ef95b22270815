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


def test_the_blocks_an_export_killed_mid_way_left_beside_the_exports_are_removed_by_the_next(analysed_warehouse,
                                                                                            tmp_path):
    left = tmp_path / "out" / ".patient_summary-blocks-x1y2z3"
    left.mkdir(parents=True)
    (left / "0.arrow").write_bytes(b"rows of the warehouse")
    (tmp_path / "out" / ".keep").write_text("not ours")
    export_analysis(analysed_warehouse, tmp_path / "out", formats=("csv",), k_threshold=2, block_patients=7)
    assert not left.exists()
    assert (tmp_path / "out" / ".keep").exists()
    assert not list((tmp_path / "out").glob(".*-blocks-*"))


def test_a_dataset_is_written_while_the_next_is_read(analysed_warehouse, tmp_path, monkeypatch):
    import threading

    from clms_etl.report import exports

    next_read = threading.Event()
    read_source, csv_write = exports._read_source, exports._CsvFile.write
    read = []

    def reading(source, *args):
        read.append(source.name)
        if len(read) == 2:
            next_read.set()
        return read_source(source, *args)

    def writing(file, frame):
        if file.out.name.endswith("patient_summary.csv"):  # the first dataset waits for the second's read
            assert next_read.wait(timeout=60), "patient_summary was written before survival was read"
        csv_write(file, frame)

    monkeypatch.setattr(exports, "_read_source", reading)
    monkeypatch.setattr(exports._CsvFile, "write", writing)
    result = export_analysis(analysed_warehouse, tmp_path / "out", formats=("csv",), k_threshold=2, block_patients=7)
    assert read[:2] == ["patient_summary", "survival"]
    assert result.rows["patient_summary"] == len((tmp_path / "out" / "csv" / "patient_summary.csv")
                                                 .read_text(encoding="utf-8-sig").splitlines()) - 1


def test_a_failed_write_stops_the_export_with_its_error_and_leaves_no_blocks(analysed_warehouse, tmp_path,
                                                                             monkeypatch):
    from clms_etl.report import exports

    csv_write = exports._CsvFile.write

    def failing(file, frame):
        if file.out.name.endswith("survival.csv"):
            raise OSError("No space left on device")
        csv_write(file, frame)

    monkeypatch.setattr(exports._CsvFile, "write", failing)
    with pytest.raises(OSError, match="No space left"):
        export_analysis(analysed_warehouse, tmp_path / "out", formats=("csv",), k_threshold=2, block_patients=7)
    assert not list((tmp_path / "out").glob(".*-blocks-*"))


@pytest.mark.postgres
def test_exports_in_blocks_on_postgresql_are_the_files_of_one_block(pg_url, tmp_path, monkeypatch):
    """The blocks' range queries run on PostgreSQL too (pseudonym bounds, result-table key bounds,
    compared byte-wise there): a bound that cut a group or skipped a row would change a file."""
    import clms_etl.analyses  # noqa: F401  (declares the result tables)
    from clms_etl.molecular.run import write_outputs as molecular_outputs
    from clms_etl.survival.run import write_outputs as survival_outputs
    from tests.warehouse.helpers import TEST_KEY, load_twin

    monkeypatch.setenv("CLMS_PSEUDONYM_KEY", TEST_KEY.decode())
    with Warehouse(pg_url) as wh:
        wh.create()
        load_twin(wh, tmp_path)
        survival_outputs(wh, tmp_path / "outputs", "blocks-run")
        molecular_outputs(wh, tmp_path / "outputs", "blocks-run")
        whole = export_analysis(wh, tmp_path / "one", shareable=False, k_threshold=2, block_patients=10**9)
        assert whole.rows["patient_summary"] == 79 and whole.rows["ph_residual"] > 7 * 5
        read, read_sql = [], wh.read_sql
        monkeypatch.setattr(wh, "read_sql", lambda query, params=None: read.append(query) or read_sql(query, params))
        made, temporary_copy = [], wh.temporary_copy
        monkeypatch.setattr(wh, "temporary_copy", lambda name, *a, **k: made.append(name) or temporary_copy(name, *a, **k))
        export_analysis(wh, tmp_path / "seven", shareable=False, k_threshold=2, block_patients=7)
    expected, got = _files(tmp_path / "one"), _files(tmp_path / "seven")
    assert got.keys() == expected.keys()
    assert [name for name in expected if got[name] != expected[name]] == []
    # the per-patient views' blocks come from their copies (Warehouse.block_copy): PostgreSQL computed
    # the whole view again for each block of pseudonyms (the range reaches none of its aggregates)
    blocks = [q for q in read if ":low" in q or ":high" in q]
    assert len([q for q in blocks if "pg_temp.block_copy_" in q]) >= 2 * (79 // 7)
    assert not [q for q in blocks if re.search(r"FROM analytics\.(patient_summary|survival)\b", q)]
    # the survival view is computed row by row from patient_summary: its blocks from that copy's blocks, not
    # from a copy of its own (five rows per patient to copy and index)
    assert "block_copy_analytics_patient_summary" in made and "block_copy_analytics_survival" not in made
    assert len([q for q in blocks if "'OS' AS endpoint" in q and "pg_temp.block_copy_analytics_patient_summary" in q]) \
        >= 79 // 7
    # and a result table of several blocks from its copy, indexed on the blocks' columns: ph_residual has
    # no index of its own (clms_etl.results), each block read the whole table
    assert len([q for q in blocks if "pg_temp.block_copy_analytics_ph_residual" in q]) > 1
    assert not [q for q in blocks if re.search(r"FROM analytics\.ph_residual\b", q)]


def _pyreadstat_bytes(frame, fmt: str, path: Path, marks: dict | None = None) -> bytes:
    import pyreadstat

    if fmt == "xpt":
        pyreadstat.write_xport(frame, str(path), file_label="t", table_name="t", file_format_version=5)
    else:
        pyreadstat.write_dta(frame, str(path), version=14, missing_user_values=marks or None)
    content = path.read_bytes()
    for pattern, fixed in _WRITE_TIMES:
        content = pattern.sub(fixed, content)
    return content


@pytest.mark.parametrize("fmt", ["xpt", "dta"])
def test_sas_and_stata_files_from_polars_frames_are_those_of_the_pandas_frames(analysed_warehouse, tmp_path, fmt):
    # pyreadstat writes the rows from polars without a pandas missing-value test per cell: same bytes; and
    # the Stata rows the export encodes with numpy are readstat's
    import polars as pl

    from clms_etl.report.exports import (
        DTA_NAME_LENGTH, XPT_NAME_LENGTH, _dta_encoded, _dta_rows, _mark_infinities, _xpt_encoded, _xpt_rows, _numeric_codes, _polars_for_stats, _to_pandas_for_stats, analysis_datasets, coded_columns,
        protect, short_names)

    edge = pl.DataFrame({
        "number": [1.5, None, float("nan"), -0.0, 1e-300, -7.25e75, 2.0**-260],
        "count": pl.Series([1, None, 3, -4, 0, 2**40, 7], dtype=pl.Int64),
        "flag": [True, None, False, True, False, True, None],
        "text": ["a", None, "", "é" * 150, "x" * 250, "ü", "plain"],
        "nothing": pl.Series([None] * 7, dtype=pl.String),
    })
    frames = [edge, *(d.frame for d in protect(analysis_datasets(analysed_warehouse))[0])]
    compared = 0
    for i, frame in enumerate(frames):
        if fmt == "dta":
            frame = _numeric_codes(frame, coded_columns(frame))
        frame = frame.rename(short_names(frame.columns, XPT_NAME_LENGTH if fmt == "xpt" else DTA_NAME_LENGTH))
        fast = _polars_for_stats(frame, fmt)
        if fast is None:  # a number Stata cannot hold: the pandas path only
            continue
        slow = _to_pandas_for_stats(frame, fmt)
        marks = _mark_infinities(slow) if fmt == "dta" else {}
        written = _pyreadstat_bytes(fast, fmt, tmp_path / f"fast{i}")
        assert written == _pyreadstat_bytes(slow, fmt, tmp_path / f"slow{i}", marks), i
        # the rows numpy encodes are those readstat writes
        widths = {c: max(fast[c].str.len_bytes().max() or 0, 1) for c, t in fast.schema.items() if t == pl.String}
        raw = (tmp_path / f"fast{i}").read_bytes()
        if fmt == "dta":
            start, end = _dta_rows(raw)
            assert _dta_encoded(fast, widths, "<") == raw[start:end], i
        else:
            start, row_bytes = _xpt_rows(raw, fast.width)
            assert _xpt_encoded(fast, widths) == raw[start:start + fast.height * row_bytes], i
        compared += 1
    assert compared >= len(frames) - 3


def test_the_reports_patients_read_in_blocks_are_the_patients_read_at_once(analysed_warehouse):
    import polars as pl

    from clms_etl.survival.run import _patient_blocks
    from clms_etl.survival.study import TUMOUR_EXTRA_SQL

    whole = analysed_warehouse.read_sql(TUMOUR_EXTRA_SQL)
    blocks = list(_patient_blocks(analysed_warehouse, 7))
    assert len(blocks) == -(-whole.height // 7) and all(b.height <= 7 for b in blocks)
    assert pl.concat(blocks).sort(pl.all()).equals(whole.sort(pl.all()))


def test_sas_transport_numbers_are_readstats_ibm_floats_to_the_bit_over_the_whole_range(tmp_path):
    import numpy as np
    import pandas as pd
    import pyreadstat

    from clms_etl.report.exports import _ibm_doubles, _xpt_rows

    rng = np.random.default_rng(14)
    values = np.concatenate([
        rng.standard_normal(20_000) * 10.0 ** rng.integers(-85, 85, 20_000),  # beyond both ends of IBM's range
        [0.0, -0.0, 1.0, -1.0, 1 / 3, 5e-324, 2.0**-256, 2.0**-257, 2.0**-260, 2.0**-261, 2.0**248, 2.0**249,
         2.0**252, -(2.0**252), np.inf, -np.inf]])
    pyreadstat.write_xport(pd.DataFrame({"x": values}), str(tmp_path / "x.xpt"), table_name="x", file_format_version=5)
    raw = (tmp_path / "x.xpt").read_bytes()
    start, _ = _xpt_rows(raw, 1)
    theirs = np.frombuffer(raw[start:start + 8 * len(values)], dtype=">u8")
    assert (_ibm_doubles(values) == theirs).all()


def test_the_reports_patients_read_in_blocks_on_postgresql_come_from_one_copy_of_the_view(pg_url, tmp_path,
                                                                                            monkeypatch):
    """Table 1's blocks on PostgreSQL: the rows of one read, each block an index range of one copy of
    the query's rows, never the view computed (nor the tumour table joined) again per block of pseudonyms."""
    import polars as pl

    from clms_etl.survival.run import _patient_blocks
    from clms_etl.survival.study import TUMOUR_EXTRA_SQL
    from tests.warehouse.helpers import TEST_KEY, load_twin

    monkeypatch.setenv("CLMS_PSEUDONYM_KEY", TEST_KEY.decode())
    with Warehouse(pg_url) as wh:
        wh.create()
        load_twin(wh, tmp_path)
        whole = wh.read_sql(TUMOUR_EXTRA_SQL)
        read, read_sql = [], wh.read_sql
        monkeypatch.setattr(wh, "read_sql", lambda query, params=None: read.append(query) or read_sql(query, params))
        blocks = list(_patient_blocks(wh, 7))
    assert len(blocks) == -(-whole.height // 7)
    assert pl.concat(blocks).sort(pl.all()).equals(whole.sort(pl.all()))
    ranged = [q for q in read if ":low" in q or ":high" in q]
    assert ranged and all("pg_temp.table1_patients" in q and "analytics.patient_summary" not in q
                          and "tumour" not in q for q in ranged)
