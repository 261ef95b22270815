"""One query per SQL check: Great Expectations' ``unexpected_rows_expectation``, counted only.

GE 1.x's :class:`UnexpectedRowsExpectation` depends on two metrics, the query's rows
(``unexpected_rows_query.table``) and their number (``unexpected_rows_query.row_count``), and each is one
query: the database evaluates every SQL check of the suites twice. The rows reach the result only under
the ``COMPLETE`` result format; the warehouse's checkpoint asks for ``SUMMARY`` (the verdict and the
count), so they were computed to be dropped. :class:`UnexpectedRowsCountExpectation` depends on the
count alone: the same verdict, observed value and Data Docs (GE's renderers of the parent class), half
the queries. The suites keep declaring ``unexpected_rows_expectation`` (GE's own type, which their JSON
validates against); :mod:`clms_etl.warehouse.expectations` runs each as this subclass.

Imported only when the suites run (importing Great Expectations is slow).
"""

from __future__ import annotations

from typing import ClassVar, Tuple

from great_expectations.expectations.core.unexpected_rows_expectation import UnexpectedRowsExpectation

DECLARED_TYPE = "unexpected_rows_expectation"  # what the suites declare
COUNTED_TYPE = "unexpected_rows_count_expectation"  # what runs: GE names a class by its snake case


class UnexpectedRowsCountExpectation(UnexpectedRowsExpectation):
    """``unexpected_rows_expectation`` whose result is the number of rows its query returns (none: success),
    without fetching them."""

    metric_dependencies: ClassVar[Tuple[str, ...]] = ("unexpected_rows_query.row_count",)

    def _validate(self, metrics: dict, **_: object) -> dict:  # (GE also passes the run's configuration, engine)
        count = metrics["unexpected_rows_query.row_count"]
        return {"success": count == 0, "result": {"observed_value": count}}
