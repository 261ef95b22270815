"""``make demo``: the whole pipeline through Dagster on the embedded DuckDB default.

1. writes the synthetic twin deliveries into the drop folder if it holds none;
2. runs ``clms-etl run`` (:func:`assets.run.run_nightly`): the import of every centre that
   delivered, then the nightly refresh, in this machine's Dagster instance (``DAGSTER_HOME``,
   default ``data/dagster_home``, created with deploy/dagster.local.yaml), so the runs show in
   the UI afterwards (``dg dev`` with the same DAGSTER_HOME);
3. prints where the warehouse, the report and the data-query lists are.
"""

import os
import sys
from pathlib import Path


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
    from clms_etl.centres import load_registry
    from clms_etl.config import Settings
    from clms_etl.deliveries import delivery_dates

    settings = Settings.from_env()
    if not any(delivery_dates(settings.incoming, c) for c in load_registry(settings.incoming)):
        from clms_etl.synth.generate import generate

        result = generate(settings.incoming, seed=0)
        print(f"wrote the synthetic twin deliveries: {len(result.files)} files under {settings.incoming}")
    from assets.run import run_nightly

    outcomes = run_nightly(settings.incoming)  # what `clms-etl run` does
    for outcome in outcomes:
        print(outcome.line())
    print()
    print(f"warehouse     {settings.warehouse_url}")
    print(f"query lists   {settings.outputs / 'queries'}")
    report = settings.outputs / "report" / "clms_report.html"
    print(f"report        {report if report.exists() else '(not written: see the nightly refresh above)'}")
    print(f"tables        {settings.outputs / 'report' / 'clms_tables.xlsx'}")
    print(f"figures       {settings.outputs / 'figures'}  (Figure 2, OncoPrint; PNG and SVG)")
    print(f"exports       {settings.outputs / 'exports'}  (Parquet, CSV, SAS XPT, Stata; README.md = codebook)")
    print(f"cbioportal    {settings.outputs / 'cbioportal'}")
    print(f"data docs     {_data_docs(settings.warehouse_url, settings.outputs)}  (every validation; works offline)")
    print(f"quality       {settings.outputs / 'quality' / 'dashboard.html'}  (per centre and Kahn category, trend)")
    print(f"dagster runs  . .venv/bin/activate; CLMS_DEMO=1 DAGSTER_HOME={os.environ['DAGSTER_HOME']} dg dev")
    return 1 if any(o.failed for o in outcomes) else 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # duckdb 2.0's bindings print ~100 lines of "nanobind: leaked ..." at interpreter shutdown
    # (a known reference-count report of the extension, harmless): everything is written and
    # closed by now, so leave without the shutdown that prints them.
    os._exit(code)
