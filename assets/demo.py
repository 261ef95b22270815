"""``make demo``: the whole pipeline through Dagster on the embedded DuckDB default.

1. writes the synthetic twin deliveries into the drop folder if it holds none;
2. runs every centre's partition of the import job, then the downstream assets, in this
   machine's Dagster instance (``DAGSTER_HOME``, default ``data/dagster_home``), so the runs
   show in the UI afterwards (``dagster dev -w workspace.yaml`` with the same DAGSTER_HOME);
3. prints where the warehouse, the report and the data-query lists are.
"""

import os
import sys
from pathlib import Path

DEFAULT_DAGSTER_HOME = Path("data/dagster_home")
# The warehouse pool admits one run step at a time (DuckDB has a single writer).
INSTANCE_YAML = """\
concurrency:
  pools:
    default_limit: 1
instance_class:  # every process of the instance writes owner-only files (assets/private_instance.py)
  module: assets.private_instance
  class: OwnerOnlyInstance
telemetry:
  enabled: false
"""


def _instance():
    from clms_etl.files import private_home

    # owner-only whatever created it: the webserver or daemon may run with a looser umask
    home = private_home(os.environ.setdefault("DAGSTER_HOME", str(DEFAULT_DAGSTER_HOME.resolve())))
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(INSTANCE_YAML)
    import dagster as dg

    instance = dg.DagsterInstance.get()
    private_home(home)  # the SQLite files the storage created on opening
    return instance


def _data_docs(url: str, outputs: Path) -> Path:
    if url.startswith("duckdb:///"):
        return Path(url.removeprefix("duckdb:///")).parent / "data_docs" / "index.html"
    return outputs / "data_docs" / "index.html"


def main() -> int:
    import warnings

    from clms_etl.files import private_process

    private_process()  # the runs' files, the warehouse and the outputs: owner-only

    warnings.filterwarnings("ignore", module="dagster")  # preview / supersession notices
    # The demo's explicit opt-in to the public demo key (DuckDB only; a configured key still wins).
    os.environ["CLMS_DEMO"] = "1"
    warnings.filterwarnings("ignore", message=".*is currently in (beta|preview).*")
    from clms_etl.config import Settings
    from clms_etl.deliveries import delivery_dates

    settings = Settings.from_env()
    instance = _instance()
    from assets.definitions import defs
    from assets.partitions import REGISTRY

    if not any(delivery_dates(settings.incoming, c) for c in REGISTRY):
        from clms_etl.synth.generate import generate

        result = generate(settings.incoming, seed=0)
        print(f"wrote the synthetic twin deliveries: {len(result.files)} files under {settings.incoming}")
    # The runs' full logs are in the Dagster UI; the terminal gets warnings and the summary.
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    job = defs.resolve_job_def("import_centre")
    failed = []
    for centre in REGISTRY:
        outcome = job.execute_in_process(partition_key=centre, instance=instance, raise_on_error=False,
                                         run_config=quiet)
        status = "ok" if outcome.success else "FAILED"
        print(f"import {centre:<12} {status}  (run {outcome.run_id[:8]})")
        if not outcome.success:
            failed.append(centre)
    nightly = defs.resolve_job_def("nightly_refresh").execute_in_process(instance=instance, raise_on_error=False,
                                                                                run_config=quiet)
    print(f"nightly refresh  {'ok' if nightly.success else 'FAILED'}  (run {nightly.run_id[:8]})")
    for check in nightly.get_asset_check_evaluations():
        print(f"  check {check.asset_key.to_user_string()}.{check.check_name}: {'passed' if check.passed else 'FAILED'}")
    if not nightly.success:
        failed.append("nightly_refresh")
    print()
    print(f"warehouse     {settings.warehouse_url}")
    print(f"query lists   {settings.outputs / 'queries'}")
    report = settings.outputs / "report" / "clms_report.html"
    print(f"report        {report if report.exists() else '(not written: see the nightly refresh above)'}")
    print(f"tables        {settings.outputs / 'report' / 'clms_tables.xlsx'}")
    print(f"figures       {settings.outputs / 'figures'}  (Figure 2, OncoPrint; PNG and SVG)")
    print(f"exports       {settings.outputs / 'exports'}  (Parquet, CSV, SAS XPT, Stata; README.md = codebook)")
    print(f"cbioportal    {settings.outputs / 'cbioportal'}")
    print(f"data docs     {_data_docs(settings.warehouse_url, settings.outputs)}")
    print(f"dagster runs  CLMS_DEMO=1 DAGSTER_HOME={os.environ['DAGSTER_HOME']} .venv/bin/dagster dev -w workspace.yaml")
    return 1 if failed else 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # duckdb 2.0's bindings print ~100 lines of "nanobind: leaked ..." at interpreter shutdown
    # (a known reference-count report of the extension, harmless): everything is written and
    # closed by now, so leave without the shutdown that prints them.
    os._exit(code)
