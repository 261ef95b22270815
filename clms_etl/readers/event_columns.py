"""The engine's hook for events written as columns (one record per patient): not tabular.

Declared columns ``event.<kind>.<part>`` (:mod:`clms_etl.formats`) become event
rows: a local recurrence, one metastasis row per site on the metastasis date (a date without
sites is one row, site unknown), a death whenever the record says the patient died (dead
vital status, a death date or a cause), the last news only for patients not dead (a dead
patient's last news is the death). ``event.relapse.treatment`` goes on the first relapse's
row(s). ``row_id``: the declared pattern for table ``event`` plus ``:<kind>``
(``:metastasis:<n>`` for the n-th site). Contradictions are queries, never a silent choice:
``vital_status_contradiction``, ``missing_vital_status``, ``missing_event_date``,
``last_news_differs_from_death``, ``treatment_without_relapse``, ``metastasis_site_other``.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from clms_etl import model
from clms_etl.readers.base import number_within, say
from clms_etl.readers.cells import fold, is_missing

EVENT_RANK = {"local_recurrence": 0, "metastasis": 1, "death": 2, "last_news": 3}


def suffix(kind: str | None) -> str:
    """The row_id suffix of the event row a cell of this event kind feeds (queries point at it)."""
    if kind in (None, "relapse"):
        return ""
    return ":metastasis:1" if kind == "metastasis" else f":{kind}"


class _Parts:
    """The parsed event columns by ``kind.part``; an absent one reads as all null."""

    def __init__(self, c, v: dict):
        self.c, self.v = c, v
        self.columns = {col.field.removeprefix("event."): col for col in c.declaration.in_table("event")
                        if col.key in v}

    def values(self, part: str, dtype=pl.Date, what: str = "values") -> pl.Series:
        col = self.columns.get(part)
        return getattr(self.v[col.key], what) if col else pl.repeat(None, self.c.n, dtype=dtype, eager=True)

    def precision(self, part: str) -> pl.Series:
        return self.values(part, pl.String, "precision")

    def present(self, part: str) -> pl.Series:
        return self.values(part, pl.Boolean, "present").fill_null(False)

    def header(self, part: str) -> str:
        col = self.columns.get(part)
        return self.c.header[col.key] if col else part

    def raw(self, part: str) -> pl.Series | None:
        col = self.columns.get(part)
        return self.c.raw[col.key] if col else None


def events(c, v: dict, ids: pl.DataFrame) -> pl.DataFrame:
    """The canonical event rows of every record (``c``: the engine's :class:`Columns`)."""
    p, vital_column = _Parts(c, v), c.declaration.column("patient.vital_status")
    vital = (v[vital_column.key].values if vital_column and vital_column.key in v
             else pl.repeat(None, c.n, dtype=pl.String, eager=True))
    dead = (vital == "dead").fill_null(False)
    died = dead | p.present("death.date") | p.present("death.cause")
    sites = _sites(c, p)
    has_sites = pl.int_range(0, c.n, eager=True).is_in(sites["i"].unique().implode())
    lr_ok, me_ok = p.present("local_recurrence.date"), p.present("metastasis.date") | has_sites
    lr, me = p.values("local_recurrence.date"), p.values("metastasis.date")
    # the relapse treatment belongs to the first relapse (all its site rows when it is a
    # metastasis): the recurrence unless a metastasis is dated earlier (unknown date: last)
    far = pl.lit(dt.date.max)
    first_is_lr = lr_ok & (~me_ok | pl.select(lr.fill_null(far) <= me.fill_null(far)).to_series())
    ttt = p.values("relapse.treatment", pl.String)
    src = ids.with_columns(
        lr=lr, lr_p=p.precision("local_recurrence.date"), lr_ok=lr_ok,
        lr_t=pl.select(pl.when(first_is_lr).then(ttt)).to_series(),
        me=me, me_p=p.precision("metastasis.date"), me_only=p.present("metastasis.date") & ~has_sites,
        me_t=pl.select(pl.when(me_ok & ~first_is_lr).then(ttt)).to_series(),
        dc=p.values("death.date"), dc_p=p.precision("death.date"), cause=p.values("death.cause", pl.String),
        died=died, dn=p.values("last_news.date"), dn_p=p.precision("last_news.date"),
        news=~died & p.present("last_news.date"))
    none = pl.lit(None, dtype=pl.String)

    def kind(mask: str, kind_name: str, date: str, precision: str, cause=none, treatment=none, site=none,
             sub=pl.lit(1, dtype=pl.Int64), frame: pl.DataFrame = src) -> pl.DataFrame:
        return frame.filter(pl.col(mask)).select(
            "i", "patient_id", "source_row", event_kind=pl.lit(kind_name), event_date=pl.col(date),
            event_date_precision=pl.col(precision), metastasis_site=site, death_cause=cause, treatment=treatment,
            sub=sub, rank=pl.lit(EVENT_RANK[kind_name], dtype=pl.Int8))

    sited = sites.join(src, on="i", how="inner").with_columns(pl.lit(True).alias("all"))
    frame = pl.concat([
        kind("lr_ok", "local_recurrence", "lr", "lr_p", treatment=pl.col("lr_t")),
        kind("all", "metastasis", "me", "me_p", treatment=pl.col("me_t"), site=pl.col("metastasis_site"),
             sub=pl.col("sub"), frame=sited),
        kind("me_only", "metastasis", "me", "me_p", treatment=pl.col("me_t")),
        kind("died", "death", "dc", "dc_p", cause=pl.col("cause")),
        kind("news", "last_news", "dn", "dn_p")])
    c.flag(has_sites & ~p.present("metastasis.date"), "event", p.header("metastasis.date"), None, "event_date_missing",
           say("sites_without_date", column=p.header("metastasis.sites")), suffix=suffix("metastasis"))
    _death_queries(c, p, vital_column, vital, dead, died)

    # number 1..n per patient row in date order (ties: rank, then site order) - a sort, no windows
    frame = frame.sort(["i", "event_date", "rank", "sub"], nulls_last=True)
    base = c.row_id_expr("event")
    frame = frame.with_columns(
        number_within("i").alias("event_no"), source_file=pl.lit(c.declaration.file.name),
        row_id=pl.when(pl.col("event_kind") == "metastasis")
        .then(pl.concat_str(base, pl.lit(":metastasis:"), pl.col("sub").cast(pl.String)))
        .otherwise(pl.concat_str(base, pl.lit(":"), pl.col("event_kind"))))
    c.flag(p.present("relapse.treatment") & ~lr_ok & ~me_ok, "event", p.header("relapse.treatment"),
           p.raw("relapse.treatment"), "treatment_without_relapse", say("treatment_without_relapse"))
    return model.conform("event", frame)


def _sites(c, p: _Parts) -> pl.DataFrame:
    """(i, sub, metastasis_site): the sites list split on commas, decoded, one row per distinct site."""
    if (column := p.columns.get("metastasis.sites")) is None:
        return pl.DataFrame(schema={"i": pl.Int64, "sub": pl.Int64, "metastasis_site": pl.String})
    frame = pl.DataFrame({"i": pl.int_range(0, c.n, eager=True), "text": p.values("metastasis.sites", pl.String)})
    frame = frame.filter(p.present("metastasis.sites")).with_columns(pl.col("text").str.split(",")).explode(
        "text").with_columns(pl.col("text").str.strip_chars()).filter(pl.col("text") != "")
    fast = frame["text"].str.to_lowercase().replace_strict(column.codes, default=None, return_dtype=pl.String)
    todo = fast.is_null().arg_true()
    if len(todo):
        header = c.header[column.key]
        decoded = [_site(c, column, i, header, text)
                   for i, text in zip(frame["i"].gather(todo).to_list(), frame["text"].gather(todo).to_list())]
        fast = fast.scatter(todo, pl.Series(decoded, dtype=pl.String))
    frame = frame.with_columns(fast.alias("metastasis_site")).filter(pl.col("metastasis_site").is_not_null())
    frame = frame.unique(["i", "metastasis_site"], keep="first", maintain_order=True)
    # (a record's sites are one run of rows: numbered along it, not by a window over every record)
    return frame.select("i", number_within("i").cast(pl.Int64).alias("sub"), "metastasis_site")


def _site(c, column, i: int, header: str, text: str) -> str | None:
    """One hand-typed site, compared folded (a plural too); outside the list: ``other``, reported."""
    if is_missing(text):
        return None
    folded = {fold(k): value for k, value in column.codes.items()}
    hit = folded.get(fold(text)) or folded.get(fold(text).removesuffix("s"))
    if hit:
        return hit
    c.cells(i, "event", suffix("metastasis")).error(header, text, "metastasis_site_other",
                                                    say("metastasis_site_other", value=text))
    return column.other


def _death_queries(c, p: _Parts, vital_column, vital: pl.Series, dead: pl.Series, died: pl.Series) -> None:
    if vital_column is not None and vital_column.key in c.raw.columns:
        column, raw = c.header[vital_column.key], c.raw[vital_column.key]
        for i in (died & ~dead & vital.is_not_null()).arg_true().to_list():
            c.cells(i, "patient").error(column, raw[i], "vital_status_inconsistent", say(
                "vital_status_inconsistent", column=column, value=raw[i], death_date=p.header("death.date"),
                death_cause=p.header("death.cause")))
        c.flag(died & vital.is_null(), "patient", column, raw, "missing_vital_status",
               say("missing_vital_status", column=column))
    c.flag(dead & ~p.present("death.date"), "event", p.header("death.date"), None, "event_date_missing",
           say("death_without_date"), suffix=suffix("death"))
    news = p.header("last_news.date")
    c.flag(died & (p.values("last_news.date") != p.values("death.date")), "event", news, p.raw("last_news.date"),
           "last_news_of_dead_patient", say("last_news_of_dead_patient"), suffix=suffix("death"))
