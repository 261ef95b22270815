"""Hostile files: data the nightly did not write (issue #12). One module per format or finding;
each case is a real file on disk (the synthetic twin edited by hand, or built from scratch)
and asserts what the platform does with it: the row quarantined with a query naming file, row
and field, or a clear ImportFailure naming the file — and every source row accounted for."""
