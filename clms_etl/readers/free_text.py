"""The free-text column kinds of hand-typed charts (``site``, ``measure``, ``margins``, a
``hand_typed`` file's dates and codes: :func:`decode`, once per distinct value; ``notes``: event
rows, :func:`events`), with the declaration's words (written folded): only the grammar is here, no
library reads French chart shorthand. A bare number where units are declared is ``missing_unit``
(mm and cm both occur) except 0; an undated note keeps its event; a note of death makes the
patient dead (the last news is the death), else the last news alive."""

from __future__ import annotations

import re
from typing import NamedTuple

import polars as pl

from clms_etl import model, rules
from clms_etl.dates import FRENCH_MONTHS, ParsedDate
from clms_etl.readers.base import number_within, say
from clms_etl.readers.cells import Issue, _issue, fold, is_missing, parse_date
from clms_etl.readers.event_columns import EVENT_RANK

MAX_NUMBER = 1e9  # hundreds of digits: a typing accident, not a measure


def decode(c, text: str | None) -> tuple[tuple, list[Issue]]:
    """((value, second output or bound), issues) of one cell of column ``c``; missing: (None, None)."""
    if text is None or (not text.strip() if c.kind == "date" else is_missing(text)):  # "?" is no date
        return (None, None), []
    if c.kind == "date":
        parsed, issues = parse_date(text, c.name, identifier=c.identifier is not None)
        value = (None, None) if parsed is None else (parsed.value, parsed.precision)
    else:
        value, issues = {"code": code, "site": site, "measure": measure, "margins": margins}[c.kind](c, text)
    issues = [*issues, _issue("value_normalised", f"« {text} »: espaces en trop à retirer.")] if text != text.strip() else issues
    return value if isinstance(value, tuple) else (value, None), issues


def _squeezed(c, text: str) -> str:  # folded, without the characters of the column's ``squeeze``
    return fold(text).translate({ord(ch): None for ch in c.options.get("squeeze", "")})


def code(c, text: str):
    """A code typed by hand: compared folded (``squeeze``: without those characters)."""
    if (key := _squeezed(c, text)) in c.codes:  # (the declaration writes them folded)
        return c.codes[key], []
    allowed = c.options.get("expected", ", ".join(c.codes))
    return None, [_issue("unknown_code", f"Valeur « {text} » inconnue pour « {c.name} » (attendu: {allowed}).")]


def measure(c, text: str, pattern: str | None = None):
    """A number by ``pattern`` (groups ``value``, ``unit``, ``bound``: ``< 5``), times its ``units`` factor."""
    o, label = c.options, c.name
    m = re.fullmatch(pattern or o["pattern"], _squeezed(c, text))
    if not m:
        return None, [_issue("unparseable_number", f"« {text} » illisible ({label}; attendu: {o.get('expected')}).")]
    value = float(m["value"].replace(",", "."))
    if value > o.get("maximum", MAX_NUMBER):
        return None, [_issue("number_out_of_range", f"« {text} »: nombre hors limites ({label}).")]
    if "units" in o:
        unit = m.groupdict().get("unit")
        if unit is None and value != 0:
            return None, [_issue("missing_unit", f"« {text} »: unité absente, {' ou '.join(o['units'])} ? ({label}).")]
        value = round(value * o["units"].get(unit, 1.0), 6)
    value, bound = int(value) if c.integer else value, bool(m.groupdict().get("bound"))
    if not c.upper_bound:
        return value, []
    issues = [_issue("mitoses_upper_bound", say("typed_bound", column=label, raw=text, n=value))] if bound else []
    return (value, bound), issues


def margins(c, text: str):
    """Two labelled measures in one cell (``clinique 2 cm / histo 0,8 cm``): (first, second)."""
    o = c.options
    parts = [p.strip() for p in re.split(o["split"], fold(text)) if p.strip()]
    if not parts or len(parts) > 2:
        return (None, None), [_issue("unparseable_margins", f"Marges « {text} » illisibles (attendu: {o['expected']}).")]
    slots, issues, unlabelled = {}, [], 0
    for part in parts:
        m = re.fullmatch(o["pattern"], part)
        if not m:
            issues.append(_issue("unparseable_margins", f"Marges « {text} »: « {part} » illisible (attendu: {o['expected']})."))
            continue
        if m["label"] is None:
            unlabelled += 1
            slot = 0 if 0 not in slots else 1
        else:
            slot = 0 if m["label"].startswith(o["first"]) else 1
        if slot in slots:
            issues.append(_issue("ambiguous_margins", f"Marges « {text} »: deux marges {o['labels'][slot]}."))
            slots[slot] = None
            continue
        slots[slot], problems = measure(c, m["value"], o["value_pattern"])
        issues += problems
    if unlabelled and len(parts) == 2 and not any(i.severity == rules.ERROR for i in issues):
        issues.append(_issue("margins_unlabelled", f"Marges « {text} » sans libellé: lues {' puis '.join(o['labels'])}."))
    return (slots.get(0), slots.get(1)), issues


def site(c, text: str):
    """Anatomical free text -> (site, the text as typed); laterality and other words ignored."""
    detail = text.strip()
    words = re.findall(r"[a-z]+", fold(text).replace("œ", "oe"))
    longest = max(len(t.split()) for t in c.codes)
    hits: list[tuple[int, int, str]] = []  # (first word, end word, site)
    i = 0
    while i < len(words):
        for n in range(min(longest, len(words) - i), 0, -1):
            phrase = " ".join(words[i:i + n])
            found = c.codes.get(phrase) or (c.codes.get(phrase[:-1]) if phrase[-1] in "sx" else None)  # plurals
            if found:
                hits.append((i, i + n, found))
                i += n
                break
        else:
            i += 1
    if not hits:
        return (None, detail), [_issue("unknown_code", f"Siège « {text} » non reconnu (région anatomique).")]
    found = hits[0][2]
    for (_, end, previous), (start, _, current) in zip(hits, hits[1:]):
        if current != previous and not set(c.options["links"]) & set(words[end:start]):
            return (None, detail), [_issue("ambiguous_site", f"Siège « {text} »: plusieurs régions anatomiques, laquelle ?")]
        found = current  # "dos de la main": the region after "de" holds the tumour
    return (found, detail), []


# --- event notes ----------------------------------------------------------------------------------

_PAREN = re.compile(r"^(.*?)\s*\(([^()]*)\)\s*$", re.S)
_TRAILING_DATE = re.compile(r"([0-9?][0-9?/.\-]*)\s*$")
_TRAILING_MONTH = re.compile(r"([a-z]+)\.?\s*$")
_DATE_LEAD = re.compile(r"(?:\s*(?:\b(?:en|le|au|a|depuis)\b|[:,\-]))+\s*$")


NoteEvent = NamedTuple("NoteEvent", [("kind", str), ("date", ParsedDate | None), ("metastasis_site", str | None),
                                     ("death_cause", str | None), ("treatment", str | None)])


def _sites(c, text: str, note: str) -> tuple[list[str | None], list[Issue]]:
    sites, issues = [], []
    for part in re.split(c.options["site_split"], text):
        known, unknown = [], []
        for w in re.findall(r"[a-z]+", part):
            found = c.codes.get(w) or (c.codes.get(w[:-1]) if w.endswith(("s", "x")) else None)
            if found:
                known.append(found)
            elif w not in c.options["filler"]:
                unknown.append(w)
        known = known or ([c.other] if unknown else [])
        if unknown:
            issues.append(_issue("metastasis_site_other", say("note_site_other" if known == [c.other] else
                                                              "note_site_words_ignored", words=" ".join(unknown), note=note)))
        sites += [s for s in dict.fromkeys(known) if s not in sites]
    return sites or [None], issues


# The usual "<words> <date> [(<text>)]": its words read once per (words, date shape, parenthesis)
_USUAL = re.compile(r"([A-Za-zÀ-ÖØ-öø-ÿŒœ .:,'\-]*?)([0-9]{1,2}/[0-9]{1,2}/[0-9]{4}|[0-9]{1,2}/[0-9]{4}|[0-9]{4})( *\([^()]*\))?")
_SHAPES, _USUAL_READ = ("2000", "6/2000", "15/06/2000"), {}
_USUAL_WHOLE = f"^(?:{_USUAL.pattern})$"  # (polars' regex: the same pattern, its preferences alike)
_PY_SPACE = "".join(ch for ch in map(chr, range(0x110000)) if ch.isspace())  # what str.strip strips


def parse_note(c, note: str) -> tuple[list[NoteEvent], list[Issue]]:
    """:func:`read_note`, its words read once for all notes alike (the same result, tests prove it);
    a note not usual (:data:`_USUAL`) is read alone."""
    m = _USUAL.fullmatch(note.strip())
    events, month = _usual_words(c, m.group(1), m.group(2).count("/"), m.group(3)) if m else (None, "")
    if events is None:
        return read_note(c, note)
    date, problems = parse_date(f"{month}{m.group(2)}", c.name)
    return [e._replace(date=date) for e in events], [
        i._replace(message=f"{i.message[:-1]}: « {note.strip()} ».") for i in problems]


def _usual_words(c, words: str, slashes: int, paren: str | None) -> tuple[list[NoteEvent] | None, str]:
    """(the events of a usual note's words — None: read such a note alone —, the month its date
    text begins with), read once per (words, date shape, parenthesis)."""
    key = (id(c), words, (sample := _SHAPES[slashes]), paren)
    if key not in _USUAL_READ:  # (the column kept with its result: an id is not reused while it lives)
        events, issues = read_note(c, f"{words}{sample}{paren or ''}")
        # "RL mars 2007": the date read_note reads is the month's ("mars 2007"), not the year's
        month = (mm := _TRAILING_MONTH.search(fold(words))) and sample == "2000" and mm.group(1) in FRENCH_MONTHS \
            and f"{mm.group(1)} "
        same = all(i.rule == "partial_date_imputed" for i in issues) and events and {e.date for e in events} == {
            parse_date(f"{month or ''}{sample}", c.name)[0]}
        _USUAL_READ[key] = (c, events if same else None, month or "")
    return _USUAL_READ[key][1], _USUAL_READ[key][2]


def read_note(c, note: str) -> tuple[list[NoteEvent], list[Issue]]:
    """One note -> its events (a metastasis in two organs: two events), by the column's words:
    ``local_recurrence``, ``recurrence`` (read as local, with a warning), ``metastasis`` (its
    sites follow), ``death`` (its cause in parenthesis, ``death_causes``); a parenthesis after a
    relapse is its treatment. A note not understood: no event and an error quoting it."""
    o, original, paren = c.options, note.strip(), None
    body = original
    if m := _PAREN.match(original):
        body, paren = m.group(1), m.group(2).strip() or None
    body = fold(body)
    not_understood = [_issue("unparsed_evolution_note", f"Note d'évolution non comprise: « {original} ».")]
    if not body:
        return [], [] if paren is None else not_understood
    date_text, head = None, body
    if m := _TRAILING_DATE.search(body):
        date_text, head = m.group(1), body[:m.start()]
        if re.fullmatch(r"[0-9]{4}", date_text) and (mm := _TRAILING_MONTH.search(head)) and mm.group(1) in FRENCH_MONTHS:
            date_text, head = f"{mm.group(1)} {date_text}", head[:mm.start()]
    head = _DATE_LEAD.sub("", head).strip()
    issues: list[Issue] = []
    if re.fullmatch(o["local_recurrence"], head) or head == o["recurrence"]:
        kinds = [("local_recurrence", None)]
        if head == o["recurrence"]:
            issues.append(_issue("ambiguous_note", f"« {original} »: récidive lue comme récidive locale."))
    elif m := re.fullmatch(o["metastasis"], head):
        sites, problems = _sites(c, m.group(1) or "", original)
        kinds = [("metastasis", s) for s in sites]
        issues += problems
    elif re.fullmatch(o["death"], head):
        kinds = [("death", None)]
    else:
        return [], not_understood
    date, problems = parse_date(date_text, c.name)
    issues += [i._replace(message=f"{i.message[:-1]}: « {original} ».") for i in problems]
    cause = treatment = None
    if kinds[0][0] == "death":
        if paren is not None:
            cause = o["death_causes"].get(fold(paren))
            if cause is None:
                issues.append(_issue("unknown_code", say("note_death_cause", cause=paren, causes=", ".join(o["death_causes"]))))
    else:
        treatment = paren
    return [NoteEvent(kind, date, s, cause, treatment) for kind, s in kinds], issues


def events(cols, v: dict, ids: pl.DataFrame, notes) -> tuple[pl.DataFrame, pl.Series]:
    """(event rows, vital status per record) from the notes column and the last news column."""
    news_col = cols.declaration.column("event.last_news.date")
    frame = ids.with_columns(_text=cols.raw[notes.key].str.split(";"), _news_date=v[news_col.key].values,
                             _news_precision=v[news_col.key].precision,
                             _news_raw=cols.raw[news_col.key].str.strip_chars().fill_null(""))
    # each note's place in its cell exploded beside it (a window over every record's notes: 9x the cost)
    split = (frame.select("i", "_text", _note=pl.int_ranges(0, pl.col("_text").list.len())).explode("_text", "_note")
             .with_columns(pl.col("_text").str.strip_chars()).filter(pl.col("_text").is_not_null() & (pl.col("_text") != "")))
    mapping, issues = _notes(notes, split["_text"].unique(maintain_order=True).to_list())
    noted = split.join(mapping, on="_text", how="inner")
    deaths = noted.filter(pl.col("event_kind") == "death").group_by("i").agg(
        pl.len().alias("_deaths"), pl.col("event_date").sort_by("_note").first().alias("_death_date"))
    status = frame.join(deaths, on="i", how="left", maintain_order="left").with_columns(
        pl.when(pl.col("_deaths").is_not_null()).then(pl.lit("dead"))
        .when(pl.col("_news_raw") != "").then(pl.lit("alive")).alias("vital_status"))
    last = status.filter(pl.col("vital_status") == "alive").select(
        "i", pl.lit(1 << 30).alias("_note"), pl.lit(0, dtype=pl.Int32).alias("_k"), pl.lit("last_news").alias("event_kind"),
        pl.col("_news_date").alias("event_date"), pl.col("_news_precision").alias("event_date_precision"))
    out = (pl.concat([noted.drop("_text"), last], how="diagonal_relaxed")
           .with_columns(pl.col("event_kind").replace_strict(EVENT_RANK, return_dtype=pl.Int8).alias("_order"))
           .sort(["i", pl.col("event_date").is_null(), "event_date", "_order", "_note", "_k"])
           .with_columns(number_within("i").alias("event_no"))
           .join(ids, on="i", how="left")
           .with_columns(pl.concat_str(cols.row_id_expr("event"), pl.lit(":"), pl.when(pl.col("event_kind") == "last_news")
                                       .then(pl.lit("last_news")).otherwise(pl.col("event_no").cast(pl.String))).alias("row_id"),
                         pl.lit(cols.layout.name).alias("source_file")))
    # a note's issues point at its first event row, or at the patient row when it gave none
    first = out.filter(pl.col("_k") == 0).select("i", "_note", "row_id")
    hits = split.join(issues, on="_text", maintain_order="left_right").join(first, on=["i", "_note"], how="left",
                                                                             maintain_order="left")
    cols.queries(hits.select("i", pl.col("_text").alias("value"), "rule", "message", "row_id",
                             table_name=pl.lit("event")), "patient", cols.header[notes.key])
    odd = status.select((pl.col("_deaths") == 1) & (pl.col("_news_date") != pl.col("_death_date"))).to_series()
    cols.flag(odd, "patient", cols.header[news_col.key], cols.raw[news_col.key], "last_news_of_dead_patient",
              "Patient décédé: les dernières nouvelles devraient être la date du décès.")
    return model.conform("event", out), status["vital_status"]


def _notes(c, unique: list[str]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(event rows, issues) of each distinct note, as :func:`parse_note` reads it, built by joins:
    a usual note's events are its words' (read once) with its date's (parsed once per date)."""
    # parse_note's match of _USUAL for every note at once (the same pattern, anchored; str.strip's characters)
    texts = pl.DataFrame({"_text": unique}, schema={"_text": pl.String}).with_columns(
        _note=pl.col("_text").str.strip_chars(_PY_SPACE))
    matched = texts.with_columns(pl.col("_note").str.extract_groups(_USUAL_WHOLE).struct.rename_fields(
        ["_g1", "_g2", "_g3"]).alias("_m")).unnest("_m").filter(pl.col("_g2").is_not_null()).with_columns(
        _slashes=pl.col("_g2").str.count_matches("/", literal=True))
    shapes = matched.select("_g1", "_slashes", "_g3").unique(maintain_order=True)
    read = [_usual_words(c, g1, n, g3) for g1, n, g3 in shapes.iter_rows()]
    words = {id(events): events for events, _ in read if events is not None}  # (the events of one words' reading)
    shapes = shapes.with_columns(_w=pl.Series([id(e) if e is not None else None for e, _ in read], dtype=pl.Int64),
                                 _month=pl.Series([m for _, m in read], dtype=pl.String))
    notes = matched.join(shapes, on=["_g1", "_slashes", "_g3"], how="left", nulls_equal=True,
                         maintain_order="left").filter(pl.col("_w").is_not_null()).select(
        "_text", "_note", "_w", _d=pl.concat_str("_month", "_g2"))
    usual = set(notes["_text"].to_list())
    alone = [(t, read_note(c, t)) for t in unique if t not in usual]
    dates = {d: parse_date(d, c.name) for d in notes["_d"].unique().to_list()}
    schema = {"_text": pl.String, "_k": pl.Int32, "event_kind": pl.String, "event_date": pl.Date, "event_date_precision":
              pl.String, "metastasis_site": pl.String, "death_cause": pl.String, "treatment": pl.String}
    usual_events = pl.DataFrame([(w, k, e.kind, e.metastasis_site, e.death_cause, e.treatment)
                                 for w, evs in words.items() for k, e in enumerate(evs)],
                                schema={"_w": pl.Int64, **{k: schema[k] for k in ("_k", "event_kind", "metastasis_site",
                                                                                  "death_cause", "treatment")}}, orient="row")
    usual_dates = pl.DataFrame([(d, p and p.value, p and p.precision) for d, (p, _) in dates.items()],
                               schema={"_d": pl.String, "event_date": pl.Date, "event_date_precision": pl.String}, orient="row")
    mapping = pl.concat([
        notes.join(usual_events, on="_w").join(usual_dates, on="_d", how="left").select(list(schema)),
        pl.DataFrame([(t, k, e.kind, e.date and e.date.value, e.date and e.date.precision, e.metastasis_site,
                       e.death_cause, e.treatment) for t, (evs, _) in alone for k, e in enumerate(evs)],
                     schema=schema, orient="row")])
    issue = {"_text": pl.String, "rule": pl.String, "message": pl.String}
    date_issues = pl.DataFrame([(d, i.rule, i.message) for d, (_, found) in dates.items() for i in found],
                               schema={"_d": pl.String, "rule": pl.String, "message": pl.String}, orient="row")
    issues = pl.concat([  # (a date's issue quotes the note: as parse_note words it)
        notes.join(date_issues, on="_d", maintain_order="left_right").select(
            "_text", "rule", pl.concat_str(pl.col("message").str.head(-1), pl.lit(": « "), "_note", pl.lit(" »."))),
        pl.DataFrame([(t, i.rule, i.message) for t, (_, found) in alone for i in found], schema=issue, orient="row")])
    return mapping, issues
