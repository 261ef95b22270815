"""R itself as the oracle for statistics: run an R script on the data the product analyses.

``run_r(script, data=...)`` writes each frame to a CSV file in a temporary folder, runs
``Rscript`` with the script (the frames are visible to it as ``data$<name>``, read with
``read.csv``), and returns what the script printed with ``cat(jsonlite-free)`` as JSON: the
script must end by calling ``emit(<named list>)`` which writes JSON with full precision
(``emit`` is defined here in R, without the jsonlite package, which Debian does not always
install with R). Numbers come back as Python floats; ``NA`` as None.

Where ``Rscript`` is missing the test is skipped with a message, unless ``CLMS_REQUIRE_R=1``
(set by ``.ci/run``, which installs R from Debian) makes it a failure: in CI the oracle is
mandatory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import polars as pl
import pytest

R_PACKAGES_HINT = "apt-get install r-base-core r-cran-survival r-cran-cmprsk r-cran-riskregression r-cran-rms"

# A minimal JSON writer: named lists -> objects, vectors of length != 1 -> arrays, NA -> null.
_EMIT = r"""
.json <- function(x) {
  if (is.null(x)) return("null")
  if (is.list(x)) {
    nm <- names(x)
    parts <- vapply(seq_along(x), function(i) .json(x[[i]]), "")
    if (is.null(nm)) return(paste0("[", paste(parts, collapse = ","), "]"))
    return(paste0("{", paste0('"', nm, '":', parts, collapse = ","), "}"))
  }
  if (is.factor(x)) x <- as.character(x)
  one <- function(v) {
    if (is.na(v)) return("null")
    if (is.logical(v)) return(if (v) "true" else "false")
    if (is.numeric(v)) { if (is.infinite(v)) return(if (v > 0) "1e999" else "-1e999"); return(sprintf("%.17g", v)) }
    paste0('"', gsub('"', '\\\\"', as.character(v)), '"')
  }
  vals <- vapply(seq_along(x), function(i) one(x[[i]]), "")
  if (length(x) == 1 && is.null(attr(x, "as_array"))) return(vals)
  paste0("[", paste(vals, collapse = ","), "]")
}
as_array <- function(x) { attr(x, "as_array") <- TRUE; x }
emit <- function(x) cat("\n@@JSON@@", .json(x), "\n", sep = "")
"""


def rscript() -> str:
    """The path of ``Rscript``, or skip (fail under ``CLMS_REQUIRE_R=1``) with a message."""
    path = shutil.which("Rscript")
    if path is None:
        message = f"R is not installed (Rscript not found): {R_PACKAGES_HINT}"
        if os.environ.get("CLMS_REQUIRE_R") == "1":
            pytest.fail(message + " (CLMS_REQUIRE_R=1 makes the R oracle mandatory)")
        pytest.skip(message)
    return path


def require_r_package(name: str) -> None:
    """Skip (fail under ``CLMS_REQUIRE_R=1``) when the R package ``name`` is not installed."""
    out = subprocess.run([rscript(), "-e", f"cat(requireNamespace('{name}', quietly=TRUE))"],
                         capture_output=True, text=True, check=False)
    if out.stdout.strip() != "TRUE":
        message = f"R package {name} is not installed: {R_PACKAGES_HINT}"
        if os.environ.get("CLMS_REQUIRE_R") == "1":
            pytest.fail(message + " (CLMS_REQUIRE_R=1 makes the R oracle mandatory)")
        pytest.skip(message)


def run_r(script: str, data: dict[str, pl.DataFrame] | None = None, packages: tuple[str, ...] = ("survival",)):
    """Run ``script`` in R with ``data`` loaded as ``data$<name>`` data frames; return ``emit``'s JSON."""
    binary = rscript()
    for package in packages:
        require_r_package(package)
    with tempfile.TemporaryDirectory(prefix="clms-r-") as folder:
        loads = []
        for name, frame in (data or {}).items():
            path = Path(folder) / f"{name}.csv"
            frame.write_csv(path, null_value="NA")
            loads.append(f'data${name} <- read.csv("{path}", stringsAsFactors = FALSE, na.strings = "NA")')
        source = "\n".join([_EMIT, "data <- list()", *loads,
                            *(f"suppressPackageStartupMessages(library({p}))" for p in packages), script])
        script_path = Path(folder) / "oracle.R"
        script_path.write_text(source, encoding="utf-8")
        out = subprocess.run([binary, "--vanilla", str(script_path)], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise AssertionError(f"R failed ({out.returncode}):\n{out.stderr[-4000:]}")
    marker = out.stdout.rfind("@@JSON@@")
    if marker < 0:
        raise AssertionError(f"the R script did not call emit():\n{out.stdout[-2000:]}")
    return json.loads(out.stdout[marker + len("@@JSON@@"):].strip())
