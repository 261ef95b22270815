"""Issue #14: a night where nothing changed recomputes nothing; a changed delivery recomputes what
depends on it. Skipping is Dagster's data versions at work (assets/unchanged.py), and each asset
and check says in its metadata why it was, or was not, recomputed.

The twin goes through the real code location on a Dagster instance on disk (SQLite storage under
a DAGSTER_HOME), the warehouse in a DuckDB file: every centre's import, then the nightly refresh;
the refresh again on the same deliveries; then one centre delivers again and the night runs again.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from assets.unchanged import RECOMPUTED, TARGET_DATA_VERSION, WHY, nothing_loaded_since_refresh
from tests.test_compute_once import count_calls
from tests.test_dagster_platform import CENTRES, NIGHTLY_ASSETS, dagster_home, platform_defs, resources

pytestmark = pytest.mark.slow
# Before each night's refresh: would its executor run the steps in the run's own process
# (assets.unchanged.nothing_loaded_since_refresh)? Filled by the `nights` fixture.
IN_PROCESS_REFRESH: list[bool] = []
CHANGED_CENTRE = "molecular"  # the laboratory: one partition of the imports like any centre
NEW_DATE = "2026-11-30"


def _metadata(result: dg.ExecuteJobResult) -> dict[str, dict]:
    return {e.asset_key.to_user_string(): e.event_specific_data.materialization.metadata
            for e in result.get_asset_materialization_events()}


def _data_versions(instance: dg.DagsterInstance) -> dict[str, str]:
    from assets.unchanged import data_version

    return {name: data_version(instance, dg.AssetKey(name)) for name in NIGHTLY_ASSETS}


def _checks(result: dg.ExecuteJobResult) -> dict[tuple[str, str], dg.AssetCheckEvaluation]:
    return {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}


@pytest.fixture(scope="module")
def nights(twin_drop, tmp_path_factory):
    """Three nights on one instance: the first, the same again, then one centre delivered anew.
    The survival analysis's and the molecular summary's entry points are counted in each refresh."""
    from clms_etl.molecular import summary
    from clms_etl.survival import study
    import clms_etl.molecular.run  # noqa: F401 (bound names to count: imported before counting)
    import clms_etl.survival.run  # noqa: F401

    root = tmp_path_factory.mktemp("unchanged_night")
    drop = root / "drop"
    shutil.copytree(twin_drop, drop)
    d = platform_defs(resources(drop, root))
    imports, refresh = d.resolve_job_def("import_centre"), d.resolve_job_def("nightly_refresh")
    nights = []
    IN_PROCESS_REFRESH.clear()
    with dg.DagsterInstance.from_config(str(dagster_home(root))) as instance:
        for night, centres in enumerate((CENTRES, [], [CHANGED_CENTRE])):
            if night == 2:  # one week later, the laboratory sends a file again: a new delivery
                delivered = sorted(p for p in (drop / CHANGED_CENTRE).iterdir() if p.is_dir())[-1]
                shutil.copytree(delivered, drop / CHANGED_CENTRE / NEW_DATE)
                vcf = sorted((drop / CHANGED_CENTRE / NEW_DATE / "ngs").glob("*.vcf"))[0]  # new content, same calls
                vcf.write_text(vcf.read_text().replace("##fileDate=", "##fileDate_resent=1\n##fileDate=", 1))
            for centre in centres:
                assert imports.execute_in_process(partition_key=centre, instance=instance).success
            IN_PROCESS_REFRESH.append(nothing_loaded_since_refresh(instance, dg.AssetKey("warehouse"),
                                                                   dg.AssetKey("centre_warehouse")))
            with pytest.MonkeyPatch.context() as mp:
                analyse, summarise = count_calls(mp, study, "analyse"), count_calls(mp, summary, "summarise")
                result = refresh.execute_in_process(instance=instance)
                assert result.success
                nights.append((result, analyse + summarise, _data_versions(instance), root))
    return nights


def test_an_unchanged_night_recomputes_no_analysis_and_says_why(nights):
    (first, first_calls, first_versions, root), (again, again_calls, again_versions, _), _ = nights
    assert sorted(first_calls) == ["analyse", "summarise"]
    assert all(m[RECOMPUTED].value is True for m in _metadata(first).values())

    assert again_calls == []  # neither the survival analysis nor the molecular summary ran
    metadata = _metadata(again)
    assert set(metadata) == NIGHTLY_ASSETS  # every asset still reports, with its previous result
    skipped = {name for name, m in metadata.items() if m[RECOMPUTED].value is False}
    assert skipped == NIGHTLY_ASSETS - {"warehouse"}  # the warehouse counts its rows: that is its version
    for name in skipped - {"quality_dashboard"}:
        assert metadata[name][WHY].value.startswith("not recomputed: code version 1 and inputs' data versions ("), name
        assert "warehouse " in metadata[name][WHY].value, name
    assert metadata["quality_dashboard"][WHY].value.startswith("not recomputed")
    # the same data versions: nothing downstream of them is stale
    assert again_versions == first_versions
    # the previous results stay visible on the latest materialisation
    assert metadata["survival_analysis"]["table1"] == _metadata(first)["survival_analysis"]["table1"]
    assert Path(metadata["clinician_report"]["report_html"].path).is_file()


def test_an_unchanged_night_repeats_its_checks_instead_of_running_them(nights):
    (first, *_), (again, *_), _ = nights
    before, now = _checks(first), _checks(again)
    assert set(now) == set(before)
    for key, evaluation in now.items():
        assert evaluation.passed == before[key].passed, key
        assert evaluation.metadata[RECOMPUTED].value is False, key
        assert evaluation.metadata[WHY].value.startswith("not re"), key
    # the expectations say on which data version of their asset they were last made
    ge = now[("warehouse", "great_expectations")]
    assert ge.metadata[TARGET_DATA_VERSION] == before[("warehouse", "great_expectations")].metadata[TARGET_DATA_VERSION]


def test_a_centre_delivering_again_recomputes_the_warehouse_and_every_analysis(nights):
    (first, _, first_versions, root), _, (changed, calls, versions, _) = nights
    assert sorted(calls) == ["analyse", "summarise"]
    metadata = _metadata(changed)
    assert all(m[RECOMPUTED].value is True for m in metadata.values())
    assert versions["warehouse"] != first_versions["warehouse"]
    assert "warehouse data version" in metadata["survival_analysis"][WHY].value  # what moved, in the UI
    assert metadata["survival_analysis"][WHY].value.startswith("recomputed: ")
    assert all(e.metadata[RECOMPUTED].value is True for e in changed.get_asset_check_evaluations()
               if RECOMPUTED in e.metadata)
    assert metadata["warehouse"]["deliveries_version"].value == versions["warehouse"]


def test_only_the_refresh_of_a_night_without_a_load_runs_in_one_process(nights):
    # first night: centres loaded; second: nothing delivered; third: the laboratory delivered again
    assert IN_PROCESS_REFRESH == [False, True, False]
