"""Compute once (issue #13): each analysis runs once a night; the report and the cBioPortal study
read the result tables the analyses stored, and the report says when those predate a load.

The twin goes through the real code location: every centre's import, then the nightly refresh
on a Dagster instance, with the warehouse in a DuckDB file.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from assets.report import clinician_report
from clms_etl.warehouse import Warehouse
from tests.test_dagster_platform import CENTRES, platform_defs, resources

NEW_LAB_DATE = "2026-11-30"


def count_calls(mp: pytest.MonkeyPatch, module, name: str) -> list:
    """Count the calls of ``module.name`` wherever the project bound it (``from ... import name``)."""
    original, calls = getattr(module, name), []

    def counted(*args, **kwargs):
        calls.append(name)
        return original(*args, **kwargs)

    for loaded in [m for n, m in list(sys.modules.items()) if n.split(".")[0] in ("clms_etl", "assets")]:
        for attr, value in list(vars(loaded).items()):
            if value is original:
                mp.setattr(loaded, attr, counted)
    return calls


@pytest.fixture(scope="module")
def nightly(twin_drop, tmp_path_factory):
    """The twin imported centre by centre, then one nightly refresh with the analyses' entry points counted."""
    import clms_etl.molecular.run  # noqa: F401 (bound names to count: imported before counting)
    import clms_etl.survival.run  # noqa: F401
    from clms_etl.molecular import summary
    from clms_etl.survival import study

    root = tmp_path_factory.mktemp("compute_once")
    drop = root / "drop"
    shutil.copytree(twin_drop, drop)
    d = platform_defs(resources(drop, root))
    instance = dg.DagsterInstance.ephemeral()
    for centre in CENTRES:
        assert d.resolve_job_def("import_centre").execute_in_process(partition_key=centre, instance=instance).success
    with pytest.MonkeyPatch.context() as mp:
        analyse_calls, summarise_calls = count_calls(mp, study, "analyse"), count_calls(mp, summary, "summarise")
        result = d.resolve_job_def("nightly_refresh").execute_in_process(instance=instance)
    assert result.success
    return root, drop, result, {"analyse": len(analyse_calls), "summarise": len(summarise_calls)}


def test_each_analysis_runs_exactly_once_per_nightly_refresh(nightly):
    _, _, result, counts = nightly
    assert counts == {"analyse": 1, "summarise": 1}
    done = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {"survival_analysis", "molecular_summary", "cbioportal_study", "clinician_report"} <= done


def _copy_of_the_night(nightly, tmp_path: Path) -> dict:
    root, drop, _, _ = nightly
    shutil.copy(root / "warehouse.duckdb", tmp_path / "warehouse.duckdb")
    shutil.copytree(drop, tmp_path / "drop")
    return resources(tmp_path / "drop", tmp_path)


def _report_alone(res: dict) -> str:
    run = dg.materialize([clinician_report], resources=res, instance=dg.DagsterInstance.ephemeral())
    assert run.success
    return (Path(res["outputs"].path) / "report" / "clms_report.html").read_text()


def test_the_report_shows_the_stored_numbers_after_the_result_tables_are_altered(nightly, tmp_path):
    _, _, night, _ = nightly
    res = _copy_of_the_night(nightly, tmp_path)
    shown = "0.42 [0.41-0.43]"  # no Kaplan-Meier estimate of the twin reads so
    with Warehouse(res["warehouse"].url) as wh:
        assert wh.read_sql("SELECT COUNT(*) AS n FROM analytics.survival_estimate WHERE display = :d", {"d": shown})["n"][0] == 0
        with wh.engine.begin() as conn:  # behind the analyses' back, as an administrator could
            conn.execute(sa.text("UPDATE analytics.survival_estimate SET display = :d WHERE endpoint = 'OS' AND "
                                 "group_variable = 'all' AND ci_transform = 'log' AND estimate = 'survival_24m'"),
                         {"d": shown})
            conn.execute(sa.text("UPDATE analytics.recurrent_alteration SET cases = 77 "
                                 "WHERE gene = 'RB1' AND alteration = 'deletion'"))
    html = _report_alone(res)
    assert shown in html  # survival table: the stored estimate, not a recomputed one
    assert "RB1 deletion in 77 cases" in html  # molecular text: the stored count
    assert night.run_id in html  # provenance: the run that computed the stored results
    assert "stale results" not in html.lower()


def test_the_report_rematerialised_alone_after_a_new_lab_delivery_says_its_results_are_stale(nightly, tmp_path):
    _, _, night, _ = nightly
    res = _copy_of_the_night(nightly, tmp_path)
    lab = tmp_path / "drop" / "molecular"
    delivered = sorted(p for p in lab.iterdir() if p.is_dir())[-1]
    new = lab / NEW_LAB_DATE
    shutil.copytree(delivered, new)
    vcf = sorted((new / "ngs").glob("*.vcf"))[0]  # a re-sent file: new content, same calls
    vcf.write_text(vcf.read_text().replace("##fileDate=", "##fileDate_resent=1\n##fileDate=", 1))
    d = platform_defs(res)
    assert d.resolve_job_def("import_centre").execute_in_process(partition_key="molecular",
                                                                  instance=dg.DagsterInstance.ephemeral()).success
    with Warehouse(res["warehouse"].url) as wh:
        assert str(wh.current_deliveries().filter(centre="molecular")["delivery_date"][0]) == NEW_LAB_DATE

    html = _report_alone(res)
    assert "Notice: stale results" in html
    notice = html[html.index("Notice: stale results"):].split("</p>")[0]
    # the molecular results predate the new delivery; the survival results too (computed from the old one)
    assert "molecular_profile" in notice and f"run {night.run_id}" in notice
