"""Identifiers cannot travel: what leaves a reader is screened against the delivery's own identifiers.

Readers know which columns of their files hold identifiers (names, first names, hospital
numbers, birth dates) and register those cells, raw, in :class:`Identifiers` (``ctx.identifiers``).
:func:`screen_read` then runs once on every reader's result, whatever the format:

* a **shifted line** (a record whose field count is wrong: a separator typed inside a cell) can
  carry any identifier in any column, so matching is not enough: every canonical row built from
  that line is quarantined whole (an error query per row, rule ``wrong_field_count``) with every
  value masked, and the line's other queries, which quote shifted cells, are dropped;
* every other string value of every canonical frame, and the ``value`` and ``message`` of every
  query, is searched for the delivery's identifiers; a match is replaced in place by
  :data:`~clms_etl.data_queries.IDENTIFIER_MASK` and raises an ``identifier_in_text`` warning that
  names file, row and column, so the data manager can remove it from the chart.

What matches (text compared folded: lower case, no accents):

* a name or first name as a **whole word** (``Roy`` masks "Roy" and "ROY", not "Royal"); a
  compound name word by word. A word of fewer than 3 letters (``Ly``, ``Le``) and the particles
  of French names (``de``, ``des``, ``van``, ``épouse``...) are too common to be hunted inside
  text: they are masked only when they are a field's whole value (a shifted cell);
* a hospital number as a **whole token** of at least 5 characters (a 4-digit number is more
  likely a year), with or without its leading zeros; a shorter one only as a whole value;
* a birth date in the spellings of a French chart: ``05/10/1933``, ``5/10/1933``, ``05-10-1933``,
  ``05.10.1933``, ``05/10/33``, ``1933-10-05``, ``1933/10/05``, ``5 oct. 1933``, ``5 octobre 1933``,
  ``1er octobre 1933``, ``05101933``, ``19331005``;
* any registered cell as a field's whole value, whatever its spelling.

Everything is vectorised polars over the *distinct* strings of a column; only the strings that
do contain an identifier are rewritten one by one.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass, field
from functools import cached_property

import polars as pl

from clms_etl import contract, model, rules
from clms_etl.dates import FRENCH_MONTHS
from clms_etl.data_queries import IDENTIFIER_MASK, QUERY_SCHEMA

NAME = "name"
HOSPITAL_NUMBER = "hospital_number"
BIRTH_DATE = "birth_date"
KINDS = (NAME, HOSPITAL_NUMBER, BIRTH_DATE)

MIN_NAME_WORD = 3  # letters; shorter name words only as a whole value
MIN_NUMBER_TOKEN = 5  # characters; shorter hospital numbers only as a whole value
MIN_WHOLE_VALUE = 2  # a one-character cell is no identifier
# Particles and civil-status words of French names: never hunted alone inside text.
NAME_PARTICLES = frozenset({
    "des", "les", "van", "von", "der", "den", "del", "della", "dos", "das", "ben", "ibn", "mac",
    "saint", "sainte", "epouse", "nee", "veuve", "dit", "dite",
})

SHIFT_RULE = "wrong_field_count"  # the reader's query for a record with a wrong field count
MASKED_RULE = "identifier_in_text"
# Columns the screen never rewrites: provenance, pseudonyms and keys built by the reader.
KEPT = frozenset({*model.PROVENANCE, "patient_id", "centre", "sample_id", "case_no", "surgery_no", "event_no",
                  "event_kind"})

_WORD = r"[\p{L}\p{N}]+"
_MONTH = "|".join(sorted(FRENCH_MONTHS, key=len, reverse=True))
_YEAR = r"\d{4}|\d{2}"
_DATE = (rf"\b(?:\d{{1,2}}\s*[/.\-]\s*\d{{1,2}}\s*[/.\-]\s*(?:{_YEAR})"
         rf"|\d{{4}}\s*[/.\-]\s*\d{{1,2}}\s*[/.\-]\s*\d{{1,2}}"
         rf"|(?:1er|\d{{1,2}})\s*(?:{_MONTH})\.?\s*(?:{_YEAR}))\b")
_DATE_PY = re.compile(_DATE)
# Non-ASCII characters never inside a date -> ASCII ones the date pattern treats alike (neither a
# word character nor a space; a space)
_DATE_ALIKE = (["«", "»", "\u00a0", "\u202f"], ["#", "#", " ", " "])
_WORD_PY = re.compile(r"[^\W_]+")
_DMY = re.compile(r"(\d{1,2})\s*[/.\-]\s*(\d{1,2})\s*[/.\-]\s*(\d{4}|\d{2})")
_YMD = re.compile(r"(\d{4})\s*[/.\-]\s*(\d{1,2})\s*[/.\-]\s*(\d{1,2})")
_D_MONTH_Y = re.compile(rf"(1er|\d{{1,2}})\s*({_MONTH})\.?\s*(\d{{4}}|\d{{2}})")


def _accent_table() -> dict[str, str]:
    """Each lower-case Latin letter with a diacritic (Latin-1, Extended-A/B and Additional, the
    ligatures) -> its letters without it; combining marks -> nothing. A table, not a Unicode
    normalisation: polars applies it in one Aho-Corasick pass, twice as fast."""
    letters = [*range(0xC0, 0x250), *range(0x1E00, 0x1F00), *range(0xFB00, 0xFB07)]
    table = {}
    for code in letters:
        low = chr(code).lower()
        bare = "".join(c for c in unicodedata.normalize("NFKD", low) if not unicodedata.combining(c))
        if bare != low and len(low) == 1:
            table[low] = bare
    return table | {chr(code): "" for code in range(0x300, 0x370)}


_ACCENTS = _accent_table()
_ACCENTS_PY = str.maketrans(_ACCENTS)


def fold(text: str) -> str:
    """Lower case, no accents (the form identifiers are compared in); same as :func:`_fold_series`."""
    return text.lower().translate(_ACCENTS_PY)


def _fold_series(values: pl.Series) -> pl.Series:
    """:func:`fold` of each of ``values``, vectorised: lower case, then the accent table, applied
    only to the strings that are not plain ASCII (a chart's numbers and dates: the table has
    nothing to do there)."""
    lower = values.str.to_lowercase()
    accented = (lower.str.len_bytes() != lower.str.len_chars()).fill_null(False)  # a multi-byte character
    if not accented.any():
        return lower
    where = accented.arg_true()
    return lower.scatter(where, lower.gather(where).str.replace_many(list(_ACCENTS), list(_ACCENTS.values())))


def _whole(text: str) -> str:
    return " ".join(fold(text).split())


def date_key(text: str) -> tuple[int, int, int] | None:
    """(day, month, year as written: 4 or 2 digits) of a folded date spelling, None if it is none."""
    text = text.strip()
    if m := _DMY.fullmatch(text):
        d, mo, y = m.groups()
    elif m := _YMD.fullmatch(text):
        y, mo, d = m.groups()
    elif m := _D_MONTH_Y.fullmatch(text):
        d, month, y = m.groups()
        d, mo = ("1" if d == "1er" else d), FRENCH_MONTHS[month]
    else:
        return None
    return int(d), int(mo), int(y)


@dataclass
class Identifiers:
    """The identifier cells of one delivery, raw, as the reader found them, and their columns."""

    texts: dict[str, list[pl.Series]] = field(default_factory=lambda: {kind: [] for kind in KINDS})
    days: list[pl.Series] = field(default_factory=list)  # birth dates the file held as dates
    columns: set[str] = field(default_factory=set)
    births: list[pl.DataFrame] = field(default_factory=list)  # (patient_id, day): each patient's own

    def add_births(self, patient_ids, days) -> None:
        """Each patient's parsed birth date: a date column of the same patient holding it is masked."""
        frame = pl.DataFrame({"patient_id": pl.Series(patient_ids, dtype=pl.String),
                              "day": pl.Series(days, dtype=pl.Date)})
        self.births.append(frame.drop_nulls())
        self.days.append(frame.get_column("day"))

    def add(self, kind: str, values, column: str | None = None) -> None:
        """Register the cells of one identifier column (a Series, or any iterable of cells)."""
        if kind not in KINDS:
            raise ValueError(f"unknown identifier kind {kind!r}")
        if not isinstance(values, pl.Series):  # cells of a workbook: text, numbers, dates
            values = [v for v in values if v is not None]
            days = [v.date() if isinstance(v, dt.datetime) else v for v in values if isinstance(v, dt.date)]
            self.days.append(pl.Series(days, dtype=pl.Date))
            values = pl.Series([_number_text(v) for v in values if not isinstance(v, dt.date)], dtype=pl.String)
        if values.dtype in (pl.Date, pl.Datetime):
            self.days.append(values.cast(pl.Date))
        else:
            self.texts[kind].append(values.cast(pl.String))
        if column:
            self.columns.add(column)

    def screen(self) -> Screen:
        return Screen.build(self)


@dataclass
class Screen:
    """The compiled look-up sets of one delivery (folded forms)."""

    # (the look-up sets are only probed, never listed: built without making their values unique)
    word_series: pl.Series  # name words and hospital-number tokens hunted inside text
    whole_series: pl.Series  # values masked when they are a field's whole value
    date_parts: pl.DataFrame  # d, m, y of each birth date, y as 4 and as 2 digits
    columns: set[str]  # the centre's identifier columns (their own queries need no warning)
    births: pl.DataFrame  # (patient_id, day)

    @classmethod
    def build(cls, ids: Identifiers) -> Screen:
        """Vectorised: a delivery registers millions of cells."""
        def folded(kind: str) -> pl.Series:
            parts = [s for s in ids.texts[kind] if s.len()]
            values = pl.concat(parts).drop_nulls().unique() if parts else pl.Series([], dtype=pl.String)
            return _fold_series(values).str.strip_chars().str.replace_all(r"\s+", " ")

        def tokens(values: pl.Series) -> pl.Series:
            return values.to_frame("v").select(pl.col("v").str.extract_all(_WORD)).to_series().explode().drop_nulls()

        names, numbers, births = folded(NAME), folded(HOSPITAL_NUMBER), folded(BIRTH_DATE)
        name_words = tokens(names)
        name_words = name_words.filter((name_words.str.len_chars() >= MIN_NAME_WORD)
                                       & ~name_words.str.contains(r"^\d+$")
                                       & ~name_words.is_in(pl.Series(sorted(NAME_PARTICLES)).implode()))
        numbers = pl.concat([numbers, numbers.str.strip_chars_start("0")])
        # a number of one word is its own only token: only the others are split
        number_words = pl.concat([numbers, tokens(numbers.filter(numbers.str.contains(rf"^(?:{_WORD})$").not_()))])
        number_words = number_words.filter((number_words.str.len_chars() >= MIN_NUMBER_TOKEN)
                                           & number_words.str.contains(r"\d"))
        days = pl.concat([_parse_days(births), *ids.days]).drop_nulls().unique()
        day_words = pl.concat([days.dt.strftime("%d%m%Y"), days.dt.strftime("%Y%m%d")])
        parts = days.to_frame("day").select(d=pl.col("day").dt.day().cast(pl.Int32),
                                            m=pl.col("day").dt.month().cast(pl.Int32),
                                            y=pl.col("day").dt.year().cast(pl.Int32))
        dates = pl.concat([parts, parts.with_columns(pl.col("y") % 100)])
        words = pl.concat([name_words, number_words, day_words])
        whole = pl.concat([names.filter(names.str.len_chars() >= MIN_WHOLE_VALUE),
                           numbers.filter(numbers.str.len_chars() >= 4),
                           births.filter(births.str.len_chars() >= 6)])
        births = pl.concat([pl.DataFrame(schema={"patient_id": pl.String, "day": pl.Date}), *ids.births])
        return cls(words, whole, dates, set(ids.columns), births if _one_each(births) else births.unique())

    @cached_property
    def words(self) -> set[str]:
        return set(self.word_series.to_list())

    @cached_property
    def whole(self) -> set[str]:
        return set(self.whole_series.to_list())

    @cached_property
    def dates(self) -> set[tuple[int, int, int]]:
        return set(self.date_parts.iter_rows())

    @cached_property
    def birth_of_each(self) -> bool:
        """Whether each patient has one birth date (then a row's is found by one look-up per table)."""
        return _one_each(self.births)

    @property
    def empty(self) -> bool:
        return self.word_series.is_empty() and self.whole_series.is_empty() and self.date_parts.is_empty()

    # --- vectorised search ---------------------------------------------------------------------

    def hits(self, values: pl.Series) -> pl.Series:
        """The distinct strings of ``values`` that contain an identifier (exact: checked in Python)."""
        return self._search(values)[0]

    def _search(self, values: pl.Series) -> tuple[pl.Series, set[str], set[str]]:
        """:meth:`hits`, and the words and whole values of the delivery found in them (the small
        sets the texts are then rewritten with)."""
        values = values.drop_nulls().unique()
        if self.empty or values.is_empty():
            return values.clear(), set(), set()
        frame = pl.DataFrame({"v": values, "f": _fold_series(values)})
        words, whole = self.word_series, self.whole_series
        # The delivery's sets are large, the text's distinct tokens few: the sets are probed with
        # the tokens (a hash set of the few), then the text filtered by the tokens found.
        tokens = frame.select("v", t=pl.col("f").str.extract_all(_WORD)).explode("t").drop_nulls("t")
        found_words = words.filter(words.is_in(tokens.get_column("t").unique().implode()))
        token_hit = tokens.filter(pl.col("t").is_in(found_words.implode())).get_column("v")
        frame = frame.with_columns(w=pl.col("f").str.strip_chars().str.replace_all(r"\s+", " "))
        found_whole = whole.filter(whole.is_in(frame.get_column("w").implode()))
        whole_hit = frame.filter(pl.col("w").is_in(found_whole.implode())).get_column("v")
        # (the dates searched with « », » and the no-break spaces of French messages replaced by
        # characters the date pattern sees alike: the texts become ASCII, where polars' regex
        # engine handles the pattern's Unicode \b several times faster)
        dated = frame.select("v", d=pl.col("f").str.replace_many(*_DATE_ALIKE).str.extract_all(_DATE)) \
            .explode("d").drop_nulls("d")
        date_hit = dated.head(0).get_column("v")
        if not (self.date_parts.is_empty() or dated.is_empty()):
            spelled = dated.get_column("d").unique()
            found = _date_parts(spelled).join(self.date_parts, on=["d", "m", "y"], how="semi").get_column("v")
            date_hit = dated.filter(pl.col("d").is_in(found.implode())).get_column("v")
        hit = pl.concat([token_hit, whole_hit, date_hit]).unique()
        return hit, set(found_words.to_list()), set(found_whole.to_list())

    def mask_text(self, text: str) -> str:
        """``text`` with every identifier in it replaced by the mask."""
        return self._mask(text, self.words, self.whole)

    def _mask(self, text: str, words: set[str], whole: set[str]) -> str:
        if _whole(text) in whole:
            return IDENTIFIER_MASK
        folded, origin = _fold_indexed(text)
        spans = [m.span() for m in _WORD_PY.finditer(folded) if m.group() in words]
        spans += [m.span() for m in _DATE_PY.finditer(folded) if date_key(m.group()) in self.dates]
        if not spans:
            return text
        out, at = [], 0
        for start, end in _merged(spans):
            a, b = origin[start], origin[end - 1] + 1
            if a < at:  # overlaps the previous span through a multi-character fold
                a = at
            out.append(text[at:a])
            out.append(IDENTIFIER_MASK)
            at = b
        out.append(text[at:])
        return "".join(out)

    def masked(self, values: pl.Series) -> dict[str, str]:
        """{string: masked string} for the distinct strings of ``values`` that contain an identifier."""
        out = {}
        hits, words, whole = self._search(values)
        for text in hits.to_list():
            new = self._mask(text, words, whole)
            if new != text:
                out[text] = new
        return out

    def mask_series(self, values: pl.Series, mapping: dict[str, str] | None = None) -> tuple[pl.Series, pl.Series]:
        """``values`` masked (through ``mapping``, from :meth:`masked`, when given), and a boolean
        Series telling which rows were."""
        mapping = self.masked(values) if mapping is None else mapping
        if not mapping:
            return values, pl.Series(values.name, [False] * values.len(), dtype=pl.Boolean)
        hit = values.is_in(pl.Series(list(mapping), dtype=pl.String).implode())
        return values.replace(mapping), hit


def _one_each(births: pl.DataFrame) -> bool:
    return births.get_column("patient_id").is_unique().all()


def _number_text(raw) -> str:
    if isinstance(raw, float) and raw.is_integer():  # an Excel number cell
        return str(int(raw))
    return str(raw)


def _date_parts(texts: pl.Series) -> pl.DataFrame:
    """``v`` (each folded text) and its d, m, y (year as written) when it is a date spelling
    :func:`date_key` reads — the same reading, vectorised."""
    texts = texts.str.strip_chars()
    month = pl.col("mo").replace_strict(FRENCH_MONTHS, default=None, return_dtype=pl.Int32)
    return texts.to_frame("v").select(
        "v",
        pl.col("v").str.extract_groups(f"^{_DMY.pattern}$").struct.rename_fields(["d", "m", "y"]).alias("dmy"),
        pl.col("v").str.extract_groups(f"^{_YMD.pattern}$").struct.rename_fields(["y", "m", "d"]).alias("ymd"),
        pl.col("v").str.extract_groups(f"^{_D_MONTH_Y.pattern}$").struct.rename_fields(["d", "mo", "y"]).alias("dmo"),
    ).unnest("dmo").with_columns(
        d=pl.coalesce(pl.col("dmy").struct.field("d"), pl.col("ymd").struct.field("d"),
                      pl.col("d").replace("1er", "1")).cast(pl.Int32, strict=False),
        m=pl.coalesce(pl.col("dmy").struct.field("m").cast(pl.Int32, strict=False),
                      pl.col("ymd").struct.field("m").cast(pl.Int32, strict=False), month),
        y=pl.coalesce(pl.col("dmy").struct.field("y"), pl.col("ymd").struct.field("y"), pl.col("y"))
        .cast(pl.Int32, strict=False),
    ).select("v", "d", "m", "y")


# Spellings a chart's date column usually has, read directly: a text that is exactly the date
# written back in its format is the date :func:`_date_parts` would read (four times faster).
_USUAL_DAYS = ("%d/%m/%Y", "%Y-%m-%d")


def _parse_days(texts: pl.Series) -> pl.Series:
    """The full dates among folded birth-date cells (which may repeat or come in any order)."""
    texts = texts.str.strip_chars()
    days = []
    for spelling in _USUAL_DAYS:
        day = texts.str.to_date(spelling, strict=False)
        # (a year below 100 is a two-digit year to the regular reading: left to it)
        read = ((day.dt.strftime(spelling) == texts) & day.dt.year().is_between(100, 9999)).fill_null(False)
        days.append(day.filter(read))
        texts = texts.filter(~read)
    return pl.concat([*days, _spelled_days(texts)]).alias("day")


def _spelled_days(texts: pl.Series) -> pl.Series:
    frame = _date_parts(texts)
    # a two-digit year of a birth date: the last century or this one, never the future
    this = dt.date.today().year % 100
    year = pl.when(pl.col("y") < 100).then(pl.col("y") + pl.when(pl.col("y") > this).then(1900).otherwise(2000)) \
        .otherwise(pl.col("y"))
    return frame.select(
        pl.format("{}-{}-{}", year, *(pl.col(c).cast(pl.String).str.zfill(2) for c in ("m", "d")))
        .str.to_date("%Y-%m-%d", strict=False)
    ).to_series().alias("day")


def _fold_indexed(text: str) -> tuple[str, list[int]]:
    """:func:`fold` of ``text`` and, for each folded character, its position in ``text``."""
    chars, origin = [], []
    for i, ch in enumerate(text):
        for f in fold(ch):
            chars.append(f)
            origin.append(i)
    return "".join(chars), origin


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[list[int]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(a, b) for a, b in out]


# --- applied to a reader's result --------------------------------------------------------------

@dataclass
class Screened:
    """What :func:`screen_read` found, for :func:`screen_validated` to finish after validation."""

    screen: Screen
    shifted: pl.DataFrame  # (file, row) of the shifted lines


def screen_read(result, identifiers: Identifiers, source_columns: dict | None = None):
    """``result`` (a :class:`~clms_etl.readers.base.ReadResult`) with shifted lines quarantined and
    masked, every identifier masked in its frames and queries, and the warnings that say where."""
    from clms_etl.data_queries import QueryLog
    from clms_etl.readers.base import ReadResult

    screen = identifiers.screen()
    names = source_columns or {}
    queries = result.queries_frame()
    shift_queries = queries.filter((pl.col("rule") == SHIFT_RULE) & pl.col("row").is_not_null())
    shifted = shift_queries.select("file", "row").unique(maintain_order=True)
    named = shift_queries.select("table_name", "row_id").drop_nulls()
    frames, found = {}, []
    for table, frame in result.frames.items():
        frames[table], errors = _quarantine_shifted(table, frame, shifted, named, result)
        found.append(errors)
    on_shifted = _on_lines(queries, shifted)
    queries = queries.filter(~on_shifted | (pl.col("rule") == SHIFT_RULE)).with_columns(
        pl.when(pl.col("rule") == SHIFT_RULE).then(pl.lit(IDENTIFIER_MASK)).otherwise(pl.col("value")).alias("value")
    )
    # every distinct text searched at once: one search, whatever the number of columns
    texts = [c for table, frame in frames.items() for _, c in _text_columns(table, frame)]
    mapping = screen.masked(pl.concat([*texts, queries.get_column("value"), queries.get_column("message")]))
    for table, frame in frames.items():
        frame, warnings = _screen_frame(table, frame, mapping, names.get(table, {}), result)
        frames[table], births = _screen_dates(table, frame, screen, names.get(table, {}), result)
        found += [warnings, births]
    queries = pl.concat([screen_queries(queries, screen, mapping), *found], how="vertical")
    log = QueryLog()
    log.append_frame(queries)
    screened = ReadResult(result.centre, result.delivery_date, frames, log, result.files, result.source_rows)
    for name in ("source_columns",):  # optional attributes a reader may set
        if hasattr(result, name):
            setattr(screened, name, getattr(result, name))
    return screened, Screened(screen, shifted)


def screen_validated(validated, screened: Screened) -> None:
    """Screen, in place, the queries validation added (they quote canonical values); on a shifted
    line only its quarantine queries stay (its values are masked, their checks mean nothing)."""
    queries = validated.queries
    # (one query per problem may have dropped a repeated reader query: the count is validation's)
    done, added = queries.head(validated.from_reader), queries.slice(validated.from_reader)
    keep = ~_on_lines(added, screened.shifted) | pl.col("rule").is_in([SHIFT_RULE, "parent_quarantined"])
    validated.queries = pl.concat([done, screen_queries(added.filter(keep), screened.screen)], how="vertical")


def screen_text(text: str | None, identifiers: Identifiers) -> str | None:
    """One message (an import failure) screened the same way."""
    if not text:
        return text
    return identifiers.screen().mask_text(text)


def screen_queries(queries: pl.DataFrame, screen: Screen, mapping: dict[str, str] | None = None) -> pl.DataFrame:
    """Queries with identifiers masked in ``value`` and ``message``, plus one warning per cell."""
    if queries.is_empty() or screen.empty:
        return queries
    if mapping is None:
        mapping = screen.masked(pl.concat([queries.get_column("value"), queries.get_column("message")]))
    value, value_hit = screen.mask_series(queries.get_column("value"), mapping)
    message, message_hit = screen.mask_series(queries.get_column("message"), mapping)
    hit = value_hit | message_hit
    if not hit.any():
        return queries
    out = queries.with_columns(value.alias("value"), message.alias("message"))
    cells = (
        queries.filter(hit & ~pl.col("field").is_in(list(screen.columns)).fill_null(False)
                       & (pl.col("rule") != MASKED_RULE))
        .unique(["file", "sheet", "row", "table_name", "row_id", "field"], maintain_order=True)
    )
    warnings = cells.select(*_where(), *_masked_query(pl.col("field").fill_null(pl.lit("cette ligne"))))
    return pl.concat([out, warnings.cast(QUERY_SCHEMA)], how="vertical")


def _on_lines(queries: pl.DataFrame, shifted: pl.DataFrame) -> pl.Series:
    if shifted.is_empty():
        return pl.Series([False] * queries.height, dtype=pl.Boolean)
    lines = shifted.select(pl.struct("file", "row")).to_series().implode()
    return queries.select(pl.struct("file", "row").is_in(lines)).to_series()


def _where() -> list[pl.Expr]:
    return [pl.col(c) for c in ("centre", "delivery_date", "file", "sheet", "row", "table_name", "row_id",
                                "patient_id", "field")]


def _masked_query(shown: pl.Expr) -> list[pl.Expr]:
    severity, template = rules.severity(MASKED_RULE), rules.rule(MASKED_RULE).message_fr
    before, after = template.split("{field}")
    return [pl.lit(IDENTIFIER_MASK).alias("value"), pl.lit(MASKED_RULE).alias("rule"),
            pl.lit(severity).alias("severity"), pl.concat_str(pl.lit(before), shown, pl.lit(after)).alias("message")]


def _provenance(table: str, result) -> list[pl.Expr]:
    return [
        pl.lit(result.centre).alias("centre"), pl.lit(result.delivery_date, dtype=pl.Date).alias("delivery_date"),
        pl.col("source_file").alias("file"), pl.col("source_sheet").alias("sheet"),
        pl.col("source_row").alias("row"), pl.lit(table).alias("table_name"), "row_id",
        (pl.col("patient_id") if "patient_id" in model.TABLES[table] else pl.lit(None, dtype=pl.String))
        .alias("patient_id"),
    ]


def _quarantine_shifted(table: str, frame: pl.DataFrame, shifted: pl.DataFrame, named: pl.DataFrame, result):
    """Rows built from a shifted line: every value masked (text) or emptied, and an error query
    for each row the reader's own query does not name yet."""
    none = pl.DataFrame(schema=QUERY_SCHEMA)
    if shifted.is_empty() or frame.is_empty():
        return frame, none
    line = pl.struct(pl.col("source_file").alias("file"), pl.col("source_row").alias("row"))
    mark = frame.select(line.is_in(shifted.select(pl.struct("file", "row")).to_series().implode())).to_series()
    if not mark.any():
        return frame, none
    masked = frame.with_columns(
        (pl.when(mark & pl.col(c).is_not_null()).then(pl.lit(IDENTIFIER_MASK)).otherwise(pl.col(c))
         if t == pl.String else pl.when(~mark).then(pl.col(c))).alias(c)
        for c, t in frame.schema.items() if c not in KEPT
    )
    severity, message = rules.severity(SHIFT_RULE), rules.rule(SHIFT_RULE).message_fr
    already = named.filter(pl.col("table_name") == table).get_column("row_id")
    errors = masked.filter(mark & ~pl.col("row_id").is_in(already.implode())).select(
        *_provenance(table, result), pl.lit(None, dtype=pl.String).alias("field"),
        pl.lit(IDENTIFIER_MASK).alias("value"), pl.lit(SHIFT_RULE).alias("rule"),
        pl.lit(severity).alias("severity"), pl.lit(message).alias("message"),
    )
    return masked, errors.cast(QUERY_SCHEMA)


def _label(table: str, column: str) -> str:
    """The column's French label in the contract, or its own name."""
    return contract.field_labels(table).get(column, column) if table in contract.TABLES else column


def _text_columns(table: str, frame: pl.DataFrame) -> list[tuple[str, pl.Series]]:
    """(column, its distinct values to search) for each text column the screen rewrites."""
    vocabulary = contract.coded_columns(table) if table in contract.TABLES else {}
    out = []
    for column, dtype in frame.schema.items():
        if dtype != pl.String or column in KEPT or column.endswith("_precision"):
            continue
        candidates = frame.get_column(column).unique()
        if column in vocabulary:  # the reader's own codes are not the chart's text
            candidates = candidates.filter(~candidates.is_in(pl.Series([str(v) for v in vocabulary[column]]).implode()))
        out.append((column, candidates))
    return out


def _screen_frame(table: str, frame: pl.DataFrame, mapping: dict[str, str], names: dict, result):
    """Identifiers masked (``mapping``: text -> masked text) in the frame's text columns; a
    warning per masked cell."""
    from clms_etl.validate import _shown_field

    none = pl.DataFrame(schema=QUERY_SCHEMA)
    if not mapping or frame.is_empty():
        return frame, none
    keys = pl.Series(list(mapping), dtype=pl.String)
    warnings = []
    for column, candidates in _text_columns(table, frame):
        if not candidates.is_in(keys.implode()).any():
            continue
        values = frame.get_column(column)
        hit = values.is_in(keys.implode())
        frame = frame.with_columns(values.replace(mapping).alias(column))
        shown = _shown_field(names.get(column), _label(table, column))
        warnings.append(frame.filter(hit).select(*_provenance(table, result), shown.alias("field"),
                                                 *_masked_query(shown)))
    if not warnings:
        return frame, none
    return frame, pl.concat(warnings, how="vertical").cast(QUERY_SCHEMA)


def _screen_dates(table: str, frame: pl.DataFrame, screen: Screen, names: dict, result):
    """A date of a patient's row equal to that patient's birth date (a cell typed in the wrong
    column) is emptied, with a warning naming the column: the date itself is the identifier."""
    from clms_etl.validate import _shown_field

    none = pl.DataFrame(schema=QUERY_SCHEMA)
    dated = [c for c, t in frame.schema.items() if t == pl.Date and c not in KEPT]
    if screen.births.is_empty() or frame.is_empty() or "patient_id" not in frame.columns or not dated:
        return frame, none
    warnings = []
    if screen.birth_of_each:  # each row's birth date looked up once, compared with every date column
        birth = frame.select("patient_id").join(screen.births, on="patient_id", how="left", maintain_order="left")
        hits = frame.select((pl.col(c) == birth.get_column("day")).fill_null(False) for c in dated)
    for column in dated:
        hit = hits.get_column(column) if screen.birth_of_each else frame.select("patient_id", column).join(
            screen.births.with_columns(_birth=pl.lit(True)), left_on=["patient_id", column],
            right_on=["patient_id", "day"], how="left", maintain_order="left",
        ).get_column("_birth").fill_null(False)
        if not hit.any():
            continue
        shown = _shown_field(names.get(column), _label(table, column))
        warnings.append(frame.filter(hit).select(*_provenance(table, result), shown.alias("field"),
                                                 *_masked_query(shown)))
        precision = f"{column}_precision"
        frame = frame.with_columns(
            pl.when(~hit).then(pl.col(c)).alias(c) for c in (column, precision) if c in frame.columns
        )
    if not warnings:
        return frame, none
    return frame, pl.concat(warnings, how="vertical").cast(QUERY_SCHEMA)
