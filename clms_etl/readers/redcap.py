"""REDCap exports (raw records CSV + data dictionary) on the reading engine: what is REDCap's.

A centre's own facts (file names, fields -> canonical fields, which form fills which table, label
-> canonical value) are its format file (``data/formats/lyon.toml``). REDCap's: the first column
is the record id; base rows leave ``redcap_repeat_instrument`` empty, repeat rows belong to their
record's base row wherever it is; codes are decoded through the dictionary's labels, never by
number (an unknown label stops the import); ``yesno``/``truefalse`` are 1/0, ``<form>_complete``
2 when complete; a checkbox is one column per choice (``<field>___<code>``), each ticked box one
row. Each form is a sheet of the engine: the first its record sheet, a repeating form a sheet of
rows (numbered per patient and checked as in every centre); the record id ties them (checked here).
"""

from __future__ import annotations

import csv
import io
import re
import tomllib
from dataclasses import replace
from pathlib import Path

import polars as pl

from clms_etl import model
from clms_etl.data_queries import IDENTIFIER_MASK
from clms_etl.keys import pseudonym_column
from clms_etl import formats as decl
from clms_etl.readers import engine
from clms_etl.readers.base import (READERS, ColumnSpec, ImportFailure, ReadContext, ReadResult, find_delivery_file,
                                   match_columns, normalise_name, read_guarded, repeated_rows, say)
from clms_etl.readers.cells import fold

INSTRUMENT, INSTANCE = "redcap_repeat_instrument", "redcap_repeat_instance"
OPTIONAL = ("redcap_event_name", "redcap_data_access_group", "redcap_survey_identifier")
YES_NO = {"1": True, "0": False}  # REDCap's fixed yesno / truefalse coding; a ticked box too
COMPLETE = {"0": False, "1": False, "2": True}  # <form>_complete: 2 = Complete
DICTIONARY, STRUCTURE = READERS["redcap_dictionary"], READERS["redcap_structure"]  # rule -> message


def label_key(text: str) -> str:
    """How labels are compared: no case, accents, spaces or hyphens; ≥/≤ spelt out."""
    return re.sub(r"[\s\-_.'’]+", "", fold(text).replace("≥", ">=").replace("≤", "<="))


class Reader:
    """The reader of a REDCap format (what :attr:`clms_etl.centres.Centre.reader` gives)."""

    def __init__(self, path: Path):
        data = tomllib.loads(Path(path).read_text("utf-8"))
        self.file, self.forms, self.boxes = data["file"], data["forms"], data.get("checkboxes", {})
        # a label list's key is the canonical value: true/false, a whole number, else the text
        self.labels = {name: {label_key(lbl): {"true": True, "false": False}.get(k, int(k) if k.isdigit() else k)
                              for k, lbls in groups.items() for lbl in lbls} for name, groups in data["labels"].items()}
        form_of = {table: form for form, tables in self.forms.items() for table in tables}
        self.columns = [dict(c, form=c.get("form") or form_of[c["field"].split(".")[0]]) for c in data["columns"]]
        named = [decl.Column(c["name"], field=c.get("field")) for c in self.columns]
        named += [decl.Column(name, field=box["field"]) for name, box in self.boxes.items()]
        # queries of validation name the centre's own fields
        self.SOURCE_COLUMNS = decl.Declaration(self.file["name"], None, tuple(named)).source_columns

    def read(self, ctx: ReadContext) -> ReadResult:
        dictionary, data = self._files(ctx)
        fields = _dictionary(ctx, dictionary, self.file.get("encoding", "utf-8"))
        return read_guarded(ctx, data.name, lambda c, path: _Read(self, c, path, dictionary.name, fields).run())

    def _files(self, ctx: ReadContext) -> tuple[Path, Path]:
        """The dictionary and the records file: the one whose ``{date}`` is empty or the delivery's."""
        folder, day = Path(ctx.delivery_dir), ctx.delivery_date.isoformat()
        files = sorted(p for p in folder.iterdir() if p.is_file()) if folder.is_dir() else []
        out = []
        for key, what in (("dictionary", "dictionnaire de données REDCap"), ("name", "export des données REDCap")):
            head, _, tail = self.file[key].partition("{date}")
            hits = {p: m.group(1) for p in files
                    if (m := re.fullmatch(rf"{re.escape(head)}(.*){re.escape(tail)}", p.name, re.I))}
            wanted = self.file[key].format(date=day if key == "name" else "")
            if len(hits) > 1:
                hits = {p: d for p, d in hits.items() if d in ("", day)} or hits
            if len(hits) != 1:
                listed = f"plusieurs fichiers livrés ({', '.join(sorted(p.name for p in hits))})" if hits else "absent"
                raise ImportFailure(say("redcap_file", file=wanted, what=what, listed=listed), wanted)
            (path, stamp), = hits.items()
            find_delivery_file(folder, path.name)  # (a link to a file outside the delivery: refused)
            if key == "name" and stamp != day:
                ctx.query(file=path.name, rule="file_date_mismatch", message=say("file_date_mismatch", file=path.name, day=day))
            out.append(path)
        return out[0], out[1]


def _dictionary(ctx: ReadContext, path: Path, encoding: str) -> dict[str, dict]:
    """normalised field name -> {name, type, choices (code -> label), identifier, row}."""
    name = path.name
    try:
        text = engine.decode(ctx, decl.FileLayout(name, encoding=encoding), path.read_bytes())
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise ImportFailure(f"{name}: dictionnaire illisible ({exc}).", name) from None
    if not rows or len(rows[0]) > 1000:
        raise ImportFailure(f"{name}: en-tête du dictionnaire illisible.", name)
    specs = [ColumnSpec(k, tuple(names), k in ("field", "type", "choices")) for k, names in DICTIONARY.items()]
    # (REDCap's other columns - form, labels, validation, branching... - are no reader's business)
    cols = match_columns(ctx, rows[0], specs + [ColumnSpec(f"_{j}", (h,), False) for j, h in enumerate(rows[0])], name)
    fields: dict[str, dict] = {}
    for i, row in enumerate(rows[1:], start=2):
        cell = {k: row[j].strip() if j < len(row) else "" for k, j in cols.items()}
        field, key = cell["field"], normalise_name(cell["field"])
        if not any(v.strip() for v in row):
            continue
        if not field or key in fields:
            raise ImportFailure(f"{name}: ligne {i}: variable « {field} » " + (
                f"définie deux fois (lignes {fields[key]['row']} et {i})." if field else "sans nom."), name, field)
        parts = [p.partition(",") for p in re.split(r"\s*\|\s*|\n", cell["choices"]) if p.strip()]
        choices = {} if not all(sep and code.strip() for code, sep, _ in parts) else {  # (else a formula)
            code.strip(): label.strip() for code, _, label in parts}
        if len(choices) < len(parts) and choices:
            raise ImportFailure(f"{name}: champ « {field} », un code défini deux fois.", name, field)
        fields[key] = dict(name=field, type=cell["type"].lower(), row=i, choices=choices,
                           identifier=cell.get("identifier", "").lower() in ("y", "yes", "1"))
    if not fields:
        raise ImportFailure(f"{name}: dictionnaire sans aucune variable.", name)
    return fields


class _Form(engine.Columns):
    """The rows of one form as a sheet of the engine; queries on the row of the column's table.
    Parsed as the engine parses, labels typed for codes read first, dates not in ISO form reported."""

    def __init__(self, dictionary: dict, *args):
        super().__init__(*args)
        self.dictionary = dictionary

    def parse(self, columns: list[decl.Column]) -> dict[str, engine.Parsed]:
        for c in _holding_no_code(self.raw, [c for c in columns if c.kind == "code" and c.codes is not COMPLETE]):
            choices = self.dictionary.get(c.key, {}).get("choices", {})
            by_label = {label_key(label): code for code, label in choices.items()}
            folded, column, fixes = {fold(code) for code in c.codes}, self.raw[c.key], {}
            for i in (column.is_not_null() & ~column.is_in(list(c.codes))).arg_true().to_list():
                if fold(column[i]) not in folded and (code := by_label.get(label_key(column[i]))):
                    fixes[i] = code
                    self.cells(i, c.table).error(self.header[c.key], column[i], "label_instead_of_code", say(
                        "label_instead_of_code", value=column[i], column=self.header[c.key], code=c.codes[code]))
            if fixes:
                self.raw = self.raw.with_columns(column.scatter(list(fixes), list(fixes.values())))
        v = super().parse(columns)
        for c in (c for c in columns if c.kind == "date"):  # a full date read, but not as the contract writes it
            odd = (v[c.key].values.is_not_null() & (v[c.key].precision == "day")
                   & ~self.raw[c.key].str.contains(r"^\d{4}-\d{2}-\d{2}$"))
            for i in odd.fill_null(False).arg_true().to_list():
                shown = IDENTIFIER_MASK if c.identifier else f"« {self.raw[c.key][i]} » lue comme {v[c.key].values[i]}"
                self.cells(i, c.table).error(self.header[c.key], self.raw[c.key][i], "date_not_iso", say(
                    "date_not_iso", shown=shown, column=self.header[c.key]), identifier=c.identifier is not None)
        return v


def _holding_no_code(raw: pl.DataFrame, coded: list[decl.Column]) -> list[decl.Column]:
    """The ``coded`` columns holding a cell that is no code: one select for all, not a query each."""
    found = raw.select((pl.col(c.key).is_not_null() & ~pl.col(c.key).is_in(list(c.codes))).any() for c in coded)
    return [c for c, odd in zip(coded, found.row(0) if coded else ()) if odd]


class _Read:
    """One delivery: the declaration of its columns, the row checks, each form parsed, the tables."""

    def __init__(self, fmt: Reader, ctx: ReadContext, path: Path, dict_name: str, dictionary: dict):
        self.fmt, self.ctx, self.path, self.dict_name, self.dictionary = fmt, ctx, path, dict_name, dictionary
        self.name, self.forms = path.name, list(fmt.forms)

    def _codes(self, field: str, labels: str, required: bool, checkbox: bool = False) -> dict | None:
        """code -> canonical value of one coded field, through the dictionary's labels."""
        entry, where = self.dictionary.get(normalise_name(field)), self.dict_name
        if entry is None and required:
            raise ImportFailure(say("code_field_not_in_dictionary", where=where, field=field), where, field)
        if entry is None:
            return self.ctx.query(file=self.name, row=1, field=field, value=field, rule="field_not_in_dictionary",
                                  message=say("field_not_in_dictionary", field=field, where=where))
        if labels == "yes_no" and entry["type"] in ("yesno", "truefalse"):
            return YES_NO
        if entry["type"] not in (("checkbox",) if checkbox else ("dropdown", "radio", "yesno", "truefalse")) \
                or not entry["choices"]:
            raise ImportFailure(say("no_choices", where=where, field=entry["name"], type=entry["type"]), where, entry["name"])
        known = self.fmt.labels[labels]
        for code, label in entry["choices"].items():
            if label_key(label) not in known:
                raise ImportFailure(say("unknown_label", where=where, field=entry["name"], label=label, code=code), where,
                                    entry["name"])
        return {code: known[label_key(label)] for code, label in entry["choices"].items()}

    def _declaration(self, header: list[str]) -> decl.Declaration:
        """This delivery's columns: the format's, their codes from the dictionary, the boxes present."""
        present = {normalise_name(h) for h in header}
        columns = [decl.Column(header[0] if header else "record_id"), decl.Column(INSTRUMENT), decl.Column(INSTANCE),
                   *(decl.Column(n, required=False) for n in OPTIONAL)]
        self.owner = {c.key: None for c in columns}  # column -> the form whose rows it belongs to
        for form in self.forms[1:]:
            columns.append(decl.Column(f"{form}_complete", required=False))
            self.owner[columns[-1].key] = form
        for c in self.fmt.columns:
            codes = COMPLETE if c.get("kind") == "complete" else None
            if normalise_name(c["name"]) in present and "labels" in c:
                if (codes := self._codes(c["name"], c["labels"], c.get("required", True))) is None:
                    continue
            columns.append(decl.column(self.name, c | {"kind": "code" if codes else c.get("kind", "identifier")}, codes))
            self.owner[columns[-1].key] = c["form"]
        self.sites = {}  # box column -> canonical value (None: a code the dictionary does not list)
        for field, box in self.fmt.boxes.items():
            codes = self._codes(field, box["labels"], True, checkbox=True)
            by_suffix = {re.sub(r"[^a-z0-9_]", "_", code.lower()): code for code in codes}
            found = {h: by_suffix.get(h.split("___", 1)[1].lower()) for h in header if h.lower().startswith(f"{field}___")}
            for h, code in found.items():
                columns.append(decl.Column(h, field=box["field"], kind="code", codes=YES_NO, required=False))
                self.owner[columns[-1].key] = next(f for f, t in self.fmt.forms.items() if box["field"].split(".")[0] in t)
                self.sites[columns[-1].key] = codes.get(code)
                if code is None:
                    self.ctx.query(file=self.name, row=1, field=h, value=h, rule="checkbox_code_not_in_dictionary",
                                   message=say("checkbox_code_not_in_dictionary", column=h))
            if not set(found.values()) - {None}:
                first = f"{field}___{next(iter(by_suffix))}"
                raise ImportFailure(say("missing_checkboxes", file=self.name, column=first, field=field), self.name, first)
            for code in (c for c in codes if c not in found.values()):
                self.ctx.query(file=self.name, row=1, field=f"{field}___{code}", rule="missing_checkbox_column",
                               message=say("missing_checkbox_column", column=f"{field}___{code}"))
        layout = decl.FileLayout.of(self.fmt.file | {"name": self.name, "separator": ",", "decimal": "."})
        return decl.Declaration(self.fmt.file["name"], layout, tuple(columns))

    def run(self) -> ReadResult:
        with open(self.path, "rb") as handle:
            first = handle.readline(1 << 20)
        if len(first) >= 1 << 20 and not first.endswith(b"\n"):  # ~10,000 fields: no project
            raise ImportFailure(say("header_too_long", file=self.name), self.name)
        if not first.strip():
            raise ImportFailure(f"{self.name}: fichier vide; import de ce centre arrêté.", self.name)
        line = first.decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n")
        d = self.declaration = self._declaration([h.strip() for h in next(csv.reader([line]), [])])
        df, names, found, fields = engine.read_text(self.ctx, self.path, d)
        self.header = {k: names[i].strip().lstrip("\ufeff") for k, i in found.items()}
        self.rid = rid = d.columns[0].key
        ipp_key = d.column("patient.local_id").key
        raw = pl.DataFrame({k: df.to_series(i) for k, i in found.items()}).with_columns(
            pl.when(pl.col(k).str.strip_chars() != "").then(pl.col(k).str.strip_chars()) for k in (rid, INSTRUMENT, INSTANCE))
        self.raw = raw = raw.with_columns(pl.col(INSTRUMENT).str.to_lowercase())
        for c in (c for c in d.columns if c.identifier and c.key in raw.columns):
            self.ctx.identifiers.add(c.identifier, raw[c.key], self.header[c.key])
        self.rows = pl.int_range(2, raw.height + 2, eager=True).cast(pl.Int64)
        is_base = raw[INSTRUMENT].is_null()
        ipp = raw.select(pl.when(is_base & (pl.col(ipp_key).str.strip_chars() != ""))
                         .then(pl.col(ipp_key).str.strip_chars().str.to_uppercase())).to_series()
        own = pseudonym_column(self.ctx.pseudonym_key, self.ctx.centre, ipp)
        first_base = pl.DataFrame({"r": raw[rid], "p": own}).filter(is_base & raw[rid].is_not_null()).unique("r", keep="first")
        owner = raw[rid].to_frame("r").join(first_base, on="r", how="left", maintain_order="left")["p"]
        self.pids = pl.select(pl.when(is_base).then(own).otherwise(owner)).to_series().alias("patient_id")
        masked = found[rid] == found[ipp_key] or self.dictionary.get(rid, {}).get("identifier", False)
        self._structure(is_base, ipp, ipp_key, masked)
        for i in ((fields != len(names)) & fields.is_not_null()).arg_true().to_list():  # a comma outside quotes
            self._query(i, None, IDENTIFIER_MASK, rule="wrong_field_count",
                        message=say("wrong_field_count", n=fields[i], width=len(names)))
        self._misplaced()
        forms = {self.fmt.forms[f][0]: self._form(f, (raw[INSTRUMENT] == f).fill_null(False)) for f in self.forms[1:]}
        frames = {table: engine.row_frame(form, form.raw[rid]) for table, form in forms.items()}
        frames["event"], vital = self._events(forms["event"], frames["event"])
        form = self._form(self.forms[0], is_base)
        frames |= engine.record_frames(form)
        complete = d.column("patient.record_complete")
        if complete is not None and complete.key in form.raw.columns:
            undone = ~frames["patient"]["record_complete"].fill_null(True)  # (many alike queries: one frame)
            form.queries(pl.DataFrame({"i": undone.arg_true(), "value": form.raw[complete.key].filter(undone)}).with_columns(
                rule=pl.lit("record_incomplete"), message=pl.lit(say("record_incomplete"))),
                "patient", self.header[complete.key])
        record = form.raw[rid]
        frames["patient"] = frames["patient"].with_columns(
            vital_status=pl.when(record.is_in(vital["dead"].implode())).then(pl.lit("dead"))
            .when(record.is_in(vital["alive"].implode())).then(pl.lit("alive")))
        return ReadResult(centre=self.ctx.centre, delivery_date=self.ctx.delivery_date, queries=self.ctx.queries,
                          frames={t: model.conform(t, frames[t]) for t in ("patient", "tumour", "surgery", "event")},
                          files=[self.path.parent / self.dict_name, self.path],
                          source_rows={self.dict_name: len(self.dictionary), self.name: raw.height})

    def _form(self, f: str, mask: pl.Series) -> _Form:
        """The rows of form ``f`` as a sheet filling the form's table (the first form: the records),
        its columns those the form owns; its checkboxes read apart (:meth:`_events`)."""
        mine = tuple(c for c in self.declaration.columns if self.owner.get(c.key) == f and c.key not in self.sites)
        part = replace(self.declaration, columns=mine, table=None if f == self.forms[0] else self.fmt.forms[f][0])
        keys = [k for k, owner in self.owner.items() if owner == f and k in self.raw.columns]
        return _Form(self.dictionary, self.ctx, part, self.raw.select(self.rid, *keys).filter(mask), self.header,
                     self.rows.filter(mask), self.pids.filter(mask))

    def _query(self, i: int, field, value, *, rule: str, message: str) -> None:
        """A query on row ``i`` of the whole export, on the table its form fills."""
        instrument, row = self.raw[INSTRUMENT][i], self.rows[i]
        table = (self.fmt.forms.get(instrument or self.forms[0]) or [None])[0]
        self.ctx.query(file=self.name, row=row, table=table, row_id=table and f"{table}:{self.name}:{row}",
                       patient_id=self.pids[i] if instrument is None else None, field=field, value=value, rule=rule,
                       message=message)

    def _structure(self, is_base: pl.Series, ipp: pl.Series, ipp_key: str, masked: bool) -> None:
        """No record id or IPP, a repeated patient, a repeat row of an unknown instrument, without a
        base row, with a bad or repeated instance: an error on the row."""
        raw, rid = self.raw, self.rid
        rec, form, instance = pl.col(rid), pl.col(INSTRUMENT), pl.col(INSTANCE)
        base, dup_record = form.is_null(), repeated_rows(raw, pl.select(pl.when(is_base).then(raw[rid])).to_series())
        checks = raw.select(
            _check("missing_patient_id", rec.is_null() | (base & ipp.is_null())),
            _check("duplicate_patient", dup_record | repeated_rows(raw, ipp)),  # (ipp: null on repeat rows)
            _check("orphan_row", ~base & rec.is_not_null() & ~rec.is_in(rec.filter(base).implode())),
            _check("unknown_repeat_instrument", ~base & ~form.is_in(self.forms[1:])),
            _check("bad_repeat_instance", pl.when(base).then(instance.is_not_null())
                   .otherwise(~instance.str.contains(r"^0*[1-9][0-9]{0,8}$").fill_null(False))),
            _check("duplicate_repeat_instance", ~base & rec.is_not_null()
                   & ~pl.struct(rec, form, instance.str.strip_chars_start("0")).is_first_distinct()))
        for rule in checks.columns:
            for i in checks[rule].fill_null(False).arg_true().to_list():
                record = raw[rid][i]
                field, value = rid, IDENTIFIER_MASK if masked and record is not None else record
                if rule == "missing_patient_id" and record is not None or rule == "duplicate_patient" and not dup_record[i]:
                    field, value = ipp_key, None if ipp[i] is None else IDENTIFIER_MASK
                elif rule == "unknown_repeat_instrument" or rule.endswith("repeat_instance"):
                    field = INSTRUMENT if rule == "unknown_repeat_instrument" else INSTANCE
                    value = raw[field][i]
                self._query(i, self.header[field], value, rule=rule, message=STRUCTURE[rule])

    def _misplaced(self) -> None:
        """A value typed in another form's column is read by no one: a warning naming row and column."""
        identifiers = {c.key for c in self.declaration.columns if c.identifier}
        for f in self.forms:
            foreign = [k for k, o in self.owner.items() if o not in (None, f) and k in self.raw.columns]
            mine = pl.col(INSTRUMENT).is_null() if f == self.forms[0] else pl.col(INSTRUMENT) == f
            filled = {k: (pl.col(k).str.strip_chars() != "") & ~((pl.col(k) == "0") & (k in self.sites)) for k in foreign}
            somewhere = pl.any_horizontal(pl.col(k).is_not_null() for k in foreign)  # (cheap: validity only)
            hits = self.raw.with_row_index("_i").filter(self.raw.select((mine & somewhere).fill_null(False)).to_series())
            hits = hits.select("_i", *(e.fill_null(False).alias(k) for k, e in filled.items()))
            for i, *cells in hits.filter(pl.any_horizontal(pl.exclude("_i"))).iter_rows():
                for k in (k for k, cell in zip(foreign, cells) if cell):
                    self._query(i, self.header[k], IDENTIFIER_MASK if k in identifiers else self.raw[k][i],
                                rule="value_in_other_instrument", message=say(
                                    "value_in_other_instrument", column=self.header[k], form=self.owner[k], line_form=f))

    def _events(self, form: _Form, ev: pl.DataFrame) -> tuple[pl.DataFrame, dict]:
        """The engine's event rows, one per ticked box of the boxes' event kind, renumbered; a dead
        patient's last news (the engine reported it) is the death: no row; the records dead or alive."""
        (field, box), = self.fmt.boxes.items()
        target = box["field"].split(".")[1]
        ev = ev.drop(target).with_columns(_rec=form.raw[self.rid]).with_row_index("_pos")
        v = form.parse([c for c in self.declaration.columns if c.key in self.sites and c.key in form.raw.columns])
        ticked = {k: v[k].values.fill_null(False) for k in self.sites if k in v}
        for k in (k for k in ticked if self.sites[k] is None):
            form.flag(ticked[k], "event", self.header[k], form.raw[k], "unknown_code",
                      say("ticked_code_not_in_dictionary", column=self.header[k]))
        known = [k for k in ticked if self.sites[k] is not None]
        applies = (ev["event_kind"] == box["event_kind"]).fill_null(False)
        n = pl.select(pl.sum_horizontal([ticked[k] for k in known]) if known else pl.lit(0)).to_series()
        form.flag(applies & (n == 0), "event", f"{field}___*", None, "metastasis_without_site", "Aucun site coché.")
        for i in (~applies & ev["event_kind"].is_not_null() & (n > 0)).arg_true().to_list():
            form.cells(i, "event").error(f"{field}___*", ",".join(self.header[k] for k in known if ticked[k][i]),
                                         "metastasis_site_without_metastasis", say("site_on_other_event"))
        sites = [self.sites[k] for k in known]
        # the row id names the site, not the code: it survives a renumbering
        suffix = [s if sites.count(s) == 1 else f"{s}-{k.split('___', 1)[1]}" for s, k in zip(sites, known)]
        ticks = pl.concat([ev.filter(applies & ticked[k]).select(
            "_pos", pl.lit(j, pl.Int16).alias("_box"), pl.lit(sites[j]).alias(target), pl.lit(suffix[j]).alias("_suffix"))
            for j, k in enumerate(known)] + [pl.DataFrame(schema={"_pos": pl.UInt32, "_box": pl.Int16, target: pl.String,
                                                                  "_suffix": pl.String})])
        ev = pl.concat([ev.filter(~(applies & (n > 0))).with_columns(pl.lit(-1, pl.Int16).alias("_box"), pl.lit(
            None, pl.String).alias(target), pl.lit(None, pl.String).alias("_suffix")),
            ticks.join(ev, on="_pos").select(*ev.columns, "_box", target, "_suffix")])
        dead = ev.filter(pl.col("event_kind") == "death")
        ev = ev.filter(~((pl.col("event_kind") == "last_news")
                         & pl.col("patient_id").is_in(dead["patient_id"].drop_nulls().implode())).fill_null(False))
        vital = {"dead": dead["_rec"].drop_nulls(), "alive": ev.filter(pl.col("event_kind") == "last_news")["_rec"].drop_nulls()}
        ev = ev.sort(["_pos", "_box"])  # (the file's order, rows then boxes, breaks the numbering's ties)
        return ev.with_columns(row_id=pl.coalesce(pl.concat_str("row_id", pl.lit(":"), "_suffix"), "row_id"),
                               event_no=engine.numbered(ev["_rec"], ev["event_date"], ev["event_kind"])), vital


def _check(rule: str, failed: pl.Expr) -> pl.Expr:  # (a rule id as tests/test_rules.py finds it)
    return failed.alias(rule)
