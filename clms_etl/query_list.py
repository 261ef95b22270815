"""The query list a centre's data manager works through in Excel, and its life across deliveries.

One workbook per centre and delivery (REDCap's data-quality module is the model): sheet
« Requêtes » has **one line per problem** — a consequence (a child row quarantined with its
patient, an exact copy of a row already reported as a duplicate patient) is summarised in the
« Conséquences » cell of the problem's own line — with the rule's French label, its Kahn
category, the registry's "what to do", the query's stable number and status, and a
« Réponse du centre » column to fill in; sheet « Synthèse » counts them per problem.

Life cycle: a query's number (:func:`query_ids`) is a hash of centre, rule, canonical table,
patient (or row, or file), field and rank among alike queries, so the same problem keeps its
number from one delivery to the next. :func:`track` turns the previous status rows of a centre
and a new delivery's queries into the new status rows: ``open`` (raised, no answer),
``answered`` (the centre typed an answer in a returned workbook, the problem is still there),
``resolved`` (absent from a later delivery: the next delivery fixed it; listed in that
delivery's workbook as « résolue depuis la dernière livraison »; the warehouse view
``analytics.query_turnaround`` gives each centre's turnaround). :func:`read_answers` reads the
« Réponse du centre » of a workbook the centre returned inside its next delivery.

The bytes depend only on the queries (fixed creation date): the same delivery, the same file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import polars as pl
import xlsxwriter

from clms_etl import rules
from clms_etl.rules import ERROR, WARNING

OPEN, ANSWERED, RESOLVED = "open", "answered", "resolved"
STATUS_FR = {OPEN: "ouverte", ANSWERED: "répondue", RESOLVED: "résolue depuis la dernière livraison"}
SEVERITY_FR = {ERROR: "erreur", WARNING: "avertissement"}
CATEGORY_FR = {"conformance": "conformité", "completeness": "complétude", "plausibility": "plausibilité"}
# Rules that are the consequence of another query on the same patient, summarised on its line.
CONSEQUENCES = ("parent_quarantined", "sample_quarantined")
# rule -> the rule whose line it is summarised on when both concern the same line of the file
SAME_PROBLEM = {"duplicate_row": "duplicate_patient"}

# The status of each query of a centre across its deliveries (warehouse table data_query_status).
STATUS_SCHEMA = {
    "query_id": pl.String,
    "centre": pl.String,
    "rule": pl.String,
    "severity": pl.String,
    "table_name": pl.String,
    "patient_id": pl.String,
    "source_file": pl.String,
    "source_sheet": pl.String,
    "source_row": pl.Int64,
    "field": pl.String,
    "message": pl.String,
    "status": pl.String,
    "opened_on": pl.Date,  # delivery that first raised it (or raised it again after a resolution)
    "last_seen_on": pl.Date,
    "answered_on": pl.Date,
    "answer": pl.String,
    "resolved_on": pl.Date,
}
QUERY_ID_HEADER = "N° de requête"
ANSWER_HEADER = "Réponse du centre"
QUERIES_SHEET = "Requêtes"
# (header, column of a problem line or None for the centre's answer, width in characters)
COLUMNS = [
    (QUERY_ID_HEADER, "query_id", 14),
    ("Statut", "status", 16),
    ("Fichier", "file", 28),
    ("Feuille", "sheet", 14),
    ("Ligne", "row", 8),
    ("Patient (pseudonyme)", "patient_id", 24),
    ("Champ", "field", 26),
    ("Valeur reçue", "value", 18),
    ("Problème", "label", 30),
    ("Catégorie", "category", 14),
    ("Gravité", "severity", 14),
    ("Message", "message", 70),
    ("Que faire", "action", 50),
    ("Conséquences", "consequences", 40),
    (ANSWER_HEADER, "answer", 40),
]
FIXED_CREATED = dt.datetime(2000, 1, 1)  # reproducible bytes: no wall-clock time in the file
EXCEL_MAX_ROWS = 1_048_576


def query_ids(queries: pl.DataFrame) -> pl.Series:
    """The stable number of each query (``QUERY_SCHEMA`` rows): ``Q`` + 10 hex digits of a hash of
    centre, rule, canonical table, patient (else row, else file), field and the query's rank among
    those alike (by file position), so the same problem keeps its number across deliveries."""
    who = pl.coalesce("patient_id", "row_id", "file", pl.lit(""))
    key = pl.concat_str([pl.col(c).fill_null("") for c in ("centre", "rule", "table_name")]
                        + [who, pl.col("field").fill_null("")], separator="|")
    ranked = queries.with_row_index("_i").with_columns(_key=key).sort(["_key", "file", "sheet", "row", "_i"],
                                                                      nulls_last=True)
    ranked = ranked.with_columns(_key=pl.col("_key") + "|" + (pl.int_range(pl.len()).over("_key") + 1).cast(pl.String))
    ids = [("Q" + hashlib.sha256(k.encode()).hexdigest()[:10]).upper() for k in ranked["_key"].to_list()]
    return ranked.with_columns(query_id=pl.Series(ids, dtype=pl.String)).sort("_i")["query_id"]


def problem_lines(queries: pl.DataFrame) -> pl.DataFrame:
    """One line per problem: the queries plus ``query_id`` and ``consequences``, without the
    lines that are another line's consequence (:data:`CONSEQUENCES`: on the first error line of
    the same patient's own row; :data:`SAME_PROBLEM`: on the other rule's line of the same file
    line). A consequence whose cause is not in the list stays a line of its own."""
    lines = queries.with_columns(query_id=query_ids(queries), consequences=pl.lit(None, dtype=pl.String))
    where = pl.coalesce("sheet", "file") + pl.lit(" l. ") + pl.col("row").cast(pl.String).fill_null("?")
    causes = (lines.filter(pl.col("severity") == ERROR, ~pl.col("rule").is_in(CONSEQUENCES),
                           pl.col("table_name").is_in(["patient", "molecular_sample"]), pl.col("patient_id").is_not_null())
              .group_by("patient_id", maintain_order=True).agg(pl.col("query_id").first().alias("_cause")))
    cascaded = lines.filter(pl.col("rule").is_in(CONSEQUENCES)).join(causes, on="patient_id", how="left")
    summaries = [cascaded.filter(pl.col("_cause").is_not_null()).group_by("_cause").agg(
        (pl.len().cast(pl.String) + pl.lit(" ligne(s) liée(s) non chargée(s) avec elle : ")
         + where.unique(maintain_order=True).head(5).str.join(", ")).alias("_text"))]
    line = ["file", "sheet", "row"]
    for rule, host in SAME_PROBLEM.items():
        hosts = lines.filter(pl.col("rule") == host).group_by(line, maintain_order=True).agg(
            pl.col("query_id").first().alias("_cause"))
        folded = lines.filter(pl.col("rule") == rule).join(hosts, on=line, how="inner", nulls_equal=True)
        summaries.append(folded.group_by("_cause").agg(pl.col("message").first().alias("_text")))
    gone = pl.concat([cascaded.filter(pl.col("_cause").is_not_null())["query_id"], *(
        lines.filter(pl.col("rule") == rule).join(lines.filter(pl.col("rule") == host).select(line).unique(),
                                                  on=line, how="semi", nulls_equal=True)["query_id"]
        for rule, host in SAME_PROBLEM.items())])
    notes = pl.concat(summaries).group_by("_cause", maintain_order=True).agg(pl.col("_text").str.join(" ; "))
    return (lines.filter(~pl.col("query_id").is_in(gone.implode()))
            .join(notes, left_on="query_id", right_on="_cause", how="left", maintain_order="left")
            .with_columns(consequences=pl.col("_text")).drop("_text"))


def track(previous: pl.DataFrame | None, queries: pl.DataFrame, centre: str, delivery_date: dt.date,
          answers: pl.DataFrame | None = None) -> pl.DataFrame:
    """The centre's status rows (:data:`STATUS_SCHEMA`) after ``queries`` of ``delivery_date``:
    a problem listed again keeps its number, opening date and answer (``answered`` once the centre
    answered); a problem of the previous rows absent now is ``resolved`` on this delivery; a
    problem listed again after its resolution is open again. ``answers`` (query_id, answer), read
    from the workbook the centre returned with this delivery, answer the queries they name."""
    previous = (pl.DataFrame(schema=STATUS_SCHEMA) if previous is None else previous.cast(STATUS_SCHEMA)
                ).filter(pl.col("centre") == centre)
    answers = (pl.DataFrame(schema={"query_id": pl.String, "answer": pl.String}) if answers is None
               else answers.select("query_id", "answer")).filter(pl.col("answer").str.strip_chars() != "")
    now = problem_lines(queries.filter(pl.col("centre") == centre)).select(
        "query_id", "centre", "rule", "severity", "table_name", "patient_id", pl.col("file").alias("source_file"),
        pl.col("sheet").alias("source_sheet"), pl.col("row").alias("source_row"), "field", "message",
    ).unique("query_id", keep="first", maintain_order=True)
    day = pl.lit(delivery_date, dtype=pl.Date)
    before = previous.select("query_id", *(pl.col(c).alias(f"_{c}") for c in
                                           ("status", "opened_on", "answered_on", "answer", "resolved_on")))
    seen = now.join(before, on="query_id", how="left").join(answers.rename({"answer": "_new"}), on="query_id",
                                                            how="left")
    reopened = pl.col("_status").is_null() | (pl.col("_status") == RESOLVED)
    answer = pl.coalesce("_new", pl.when(~reopened).then(pl.col("_answer")))
    seen = seen.with_columns(
        status=pl.when(answer.is_not_null()).then(pl.lit(ANSWERED)).otherwise(pl.lit(OPEN)),
        opened_on=pl.when(reopened).then(day).otherwise(pl.col("_opened_on")),
        last_seen_on=day,
        answered_on=pl.when(pl.col("_new").is_not_null()).then(day)
        .otherwise(pl.when(~reopened).then(pl.col("_answered_on"))),
        answer=answer,
        resolved_on=pl.lit(None, dtype=pl.Date),
    )
    gone = previous.filter(~pl.col("query_id").is_in(now["query_id"].implode()))
    fixed = gone.join(answers.rename({"answer": "_new"}), on="query_id", how="left").with_columns(
        resolved_on=pl.when(pl.col("status") == RESOLVED).then(pl.col("resolved_on")).otherwise(day),
        answered_on=pl.when(pl.col("_new").is_not_null()).then(day).otherwise(pl.col("answered_on")),
        answer=pl.coalesce("_new", "answer"),
        status=pl.lit(RESOLVED),
    )
    return pl.concat([seen.select(list(STATUS_SCHEMA)), fixed.select(list(STATUS_SCHEMA))]).cast(STATUS_SCHEMA)


def read_answers(folder: Path) -> pl.DataFrame:
    """(query_id, answer) typed in the « Réponse du centre » column of every query workbook the
    centre put back in its delivery ``folder`` (any ``*.xlsx`` with a « Requêtes » sheet whose
    header has the query number and the answer; other workbooks are the centre's data)."""
    import openpyxl

    found = []
    for path in sorted(Path(folder).glob("*.xlsx")):
        try:
            book = openpyxl.load_workbook(path, read_only=True, data_only=True)
        except Exception:  # not a workbook openpyxl reads: not a returned query list
            continue
        try:
            if QUERIES_SHEET not in book.sheetnames:
                continue
            rows = book[QUERIES_SHEET].iter_rows(values_only=True)
            header = [str(h) if h is not None else "" for h in next(rows, ())]
            if QUERY_ID_HEADER not in header or ANSWER_HEADER not in header:
                continue
            at, answer_at = header.index(QUERY_ID_HEADER), header.index(ANSWER_HEADER)
            for row in rows:
                if len(row) > max(at, answer_at) and row[at] and row[answer_at] not in (None, ""):
                    found.append((str(row[at]).strip(), str(row[answer_at]).strip()))
        finally:
            book.close()
    return pl.DataFrame(found, schema={"query_id": pl.String, "answer": pl.String}, orient="row").unique(
        "query_id", keep="last", maintain_order=True)


def write_query_workbook(queries: pl.DataFrame, path: Path, centre: str, status: pl.DataFrame | None = None) -> Path:
    """Write ``centre``'s queries (``QUERY_SCHEMA`` rows; other centres' rows are left out) to
    ``path``, one line per problem. ``status`` (this delivery's :func:`track` rows) adds each line's
    status and the centre's earlier answer, and lists the problems this delivery resolved."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = workbook_lines(queries, centre, status)
    shown = rows.head(EXCEL_MAX_ROWS - 1)

    workbook = xlsxwriter.Workbook(str(path), {"strings_to_numbers": False, "strings_to_formulas": False,
                                               "strings_to_urls": False})
    workbook.set_properties({"title": f"Requêtes de données – {centre}", "created": FIXED_CREATED,
                             "author": "clms-etl"})
    header = workbook.add_format({"bold": True, "bg_color": "#DDE4EE", "border": 1, "text_wrap": True,
                                  "valign": "top"})
    cell = workbook.add_format({"valign": "top"})
    wrapped = workbook.add_format({"valign": "top", "text_wrap": True})
    error = workbook.add_format({"valign": "top", "font_color": "#9C0006", "bold": True})
    resolved = workbook.add_format({"valign": "top", "font_color": "#006100"})

    sheet = workbook.add_worksheet(QUERIES_SHEET)
    text_columns = ("message", "action", "consequences", "answer")
    for j, (title, column, width) in enumerate(COLUMNS):
        sheet.write_string(0, j, title, header)
        sheet.set_column(j, j, width, wrapped if column in text_columns else cell)
    for i, record in enumerate(shown.iter_rows(named=True), start=1):
        for j, (_, column, _) in enumerate(COLUMNS):
            value = record[column]
            if column == "severity":
                sheet.write_string(i, j, SEVERITY_FR.get(value, value or ""), error if value == ERROR else cell)
            elif column == "status":
                sheet.write_string(i, j, STATUS_FR[value], resolved if value == RESOLVED else cell)
            elif value is None:
                sheet.write_blank(i, j, None)
            elif isinstance(value, int):
                sheet.write_number(i, j, value)
            else:
                sheet.write_string(i, j, str(value))
    sheet.freeze_panes(1, 0)
    sheet.autofilter(0, 0, max(shown.height, 1), len(COLUMNS) - 1)

    _summary(workbook, rows.filter(pl.col("status") != RESOLVED), header, wrapped, truncated=rows.height - shown.height)
    workbook.close()
    return path


def workbook_lines(queries: pl.DataFrame, centre: str, status: pl.DataFrame | None = None) -> pl.DataFrame:
    """What :func:`write_query_workbook` writes, in its order: the workbook's bytes depend on
    these lines alone (fixed creation date), so equal lines mean the same file."""
    lines = problem_lines(queries.filter(pl.col("centre") == centre))
    return _ordered(_with_status(_with_rule_text(lines), status, centre)).select([c for _, c, _ in COLUMNS])


def status_changes_workbook(queries: pl.DataFrame, centre: str, status: pl.DataFrame) -> bool:
    """Whether ``status`` (:func:`track` rows) makes ``centre``'s workbook differ from the one written
    without it: an answer, an answered line, a problem resolved by this delivery. A centre's first
    delivery, or one that resolved and answered nothing, gives the same workbook, byte for byte."""
    with_status, without = workbook_lines(queries, centre, status), workbook_lines(queries, centre)
    return with_status.schema != without.schema or not with_status.equals(without, null_equal=True)


def _with_rule_text(lines: pl.DataFrame) -> pl.DataFrame:
    registry = rules.registry()
    text = pl.DataFrame(
        [(r.id, r.label, CATEGORY_FR[r.category], r.action) for r in registry.values()],
        schema={"rule": pl.String, "label": pl.String, "category": pl.String, "action": pl.String}, orient="row")
    return lines.join(text, on="rule", how="left", maintain_order="left").with_columns(
        pl.col("label").fill_null(pl.col("rule")))


def _with_status(lines: pl.DataFrame, status: pl.DataFrame | None, centre: str) -> pl.DataFrame:
    """Each line with its status and earlier answer; the problems resolved by this delivery added."""
    if status is None:
        return lines.with_columns(status=pl.lit(OPEN), answer=pl.lit(None, dtype=pl.String))
    mine = status.filter(pl.col("centre") == centre)
    lines = lines.join(mine.select("query_id", "status", "answer"), on="query_id", how="left",
                       maintain_order="left").with_columns(pl.col("status").fill_null(OPEN))
    latest = mine.select(pl.max_horizontal(pl.col("last_seen_on").max(), pl.col("resolved_on").max())).item()
    fixed = mine.filter(pl.col("status") == RESOLVED, pl.col("resolved_on") == pl.lit(latest, dtype=pl.Date)).select(
        "query_id", "status", "centre", pl.col("source_file").alias("file"), pl.col("source_sheet").alias("sheet"),
        pl.col("source_row").alias("row"), "patient_id", "field", "rule", "severity", "message", "answer",
    )
    return pl.concat([lines, _with_rule_text(fixed)], how="diagonal_relaxed")


def _ordered(lines: pl.DataFrame) -> pl.DataFrame:
    """Open problems first (errors, then warnings), resolved ones last; within each, by file,
    sheet and row as the centre sees them."""
    return lines.with_columns(_done=pl.col("status") == RESOLVED, _rank=_severity_rank()).sort(
        ["_done", "_rank", "file", "sheet", "row", "field", "rule", "message"], nulls_last=True, maintain_order=True
    ).drop("_done", "_rank")


def _severity_rank() -> pl.Expr:
    return pl.col("severity").replace_strict({ERROR: 0, WARNING: 1}, default=2, return_dtype=pl.Int8)


def _summary(workbook, rows: pl.DataFrame, header, wrapped, truncated: int) -> None:
    counts = (
        rows.group_by("label", "category", "severity", maintain_order=True)
        .agg(pl.len().alias("n"), pl.col("message").first().alias("example"))
        .with_columns(_rank=_severity_rank())
        .sort(["_rank", "n", "label"], descending=[False, True, False])
    )
    sheet = workbook.add_worksheet("Synthèse")
    titles = [("Problème", 34), ("Catégorie", 14), ("Gravité", 14), ("Nombre", 10), ("Exemple de message", 90)]
    for j, (title, width) in enumerate(titles):
        sheet.write_string(0, j, title, header)
        sheet.set_column(j, j, width, wrapped if j == 4 else None)
    for i, (label, category, severity, n, example, _) in enumerate(counts.iter_rows(), start=1):
        sheet.write_string(i, 0, label)
        sheet.write_string(i, 1, category or "")
        sheet.write_string(i, 2, SEVERITY_FR.get(severity, severity or ""))
        sheet.write_number(i, 3, n)
        sheet.write_string(i, 4, example or "")
    total = counts.height + 1
    bold = workbook.add_format({"bold": True})
    sheet.write_string(total, 0, "Total", bold)
    sheet.write_number(total, 3, rows.height, bold)
    if truncated:
        sheet.write_string(total + 2, 0, f"Liste tronquée : {truncated} requêtes au-delà de la limite d'Excel "
                                         f"ne figurent pas dans la feuille « Requêtes ».", bold)
    sheet.freeze_panes(1, 0)
