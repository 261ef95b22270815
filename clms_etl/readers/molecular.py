"""The laboratory (``centre_exports.md``, "Molecular results — one laboratory"): a batch adapter.

``manifest.csv`` (one row per profiled case; ``patient_id`` is the pseudonym of the manifest's
centre and local id, the local id never stored) and one file per sample and assay:
``chas/<sample_id>.segments.txt`` (ChAS segments), ``ngs/<sample_id>.vcf`` (Torrent Variant
Caller / Ion Reporter VCF; one row per ALT allele), ``fusions/<sample_id>.fusions.tsv`` (Archer;
a header without rows is "tested, no fusion"). The facts (columns, codes, assays, thresholds,
messages) are ``data/formats/molecular.toml``. Each file is decoded on its own (encodings and
broken files are per file), then all the lines of a kind are one polars frame and every check
is a column expression over it, or a parse of each distinct cell value (``_parsed``).
The choices the contract leaves open are in ``docs/molecular.md``.
"""

from __future__ import annotations

import ast
import re
import string
import tomllib
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from pathlib import Path

import polars as pl

from clms_etl.centres import load_registry
from clms_etl.identifiers import HOSPITAL_NUMBER
from clms_etl.keys import pseudonym
from clms_etl import formats as decl
from clms_etl.readers import engine
from clms_etl.readers.base import (ColumnSpec, ImportFailure, ReadContext, ReadResult, leaves_folder, read_guarded,
                                   match_columns, repeated_rows)
from clms_etl.readers.cells import Cells, is_missing
from clms_etl import model

DECLARED = tomllib.loads(resources.files("clms_etl").joinpath("data/formats/molecular.toml").read_text("utf-8"))
MANIFEST, MSG, ASSAYS = DECLARED["manifest"], DECLARED["messages"], DECLARED["assays"]
STATUS, SEGMENT_TYPES, STRONG_EVIDENCE = (DECLARED["codes"][k] for k in ("status", "segment_type", "strong_evidence"))
MAX_ALLELE_BP, CELLS = DECLARED["variants"]["max_allele_bp"], DECLARED["cells"]
TESTED, NOT_DONE, FAILED = "tested", "not_done", "failed"
INT32_MAX, POSITION_MAX = 2**31 - 1, 10**10  # a position larger than any chromosome; keeps Int64 safe
MAX_NAME, MAX_TEXT = 200, 1000  # a header name cut before matching (a 50 MB "header"); text kept of a broken record
FIELD = "\x1f"  # stands for the column's name in a message written once per distinct value

HG19, BUILD, ISCN_BUILD, CHROMOSOME, LOCATION, BREAKPOINT = (
    re.compile(DECLARED["patterns"][k], re.IGNORECASE)
    for k in ("hg19", "build", "iscn_build", "chromosome", "location", "breakpoint"))
PLAIN_NUMBER, PLAIN_INT = r"^[0-9]{1,15}(?:\.[0-9]{1,15})?$", r"^[0-9]{1,9}$"  # read by polars, all digits kept
VCF_COLUMNS, VCF_FIELDS = (DECLARED["variants"][k] for k in ("header", "fields"))


def _sql(text: str | None, dtype=None) -> pl.Expr:
    """A check's condition or query column: polars SQL, ``$name`` a value of ``[variants]``; none: null."""
    if text is None:
        return pl.lit(None, dtype)
    return pl.sql_expr(string.Template(text).safe_substitute(DECLARED["variants"]))


# stage -> its checks (data/formats/molecular.toml [checks]): rule, when, field, value, message
CHECKS = {stage: [dict(c, when=_sql(c["when"]), field=_sql(c.get("field"), pl.String), value=_sql(c.get("value")),
                       message=c.get("message", c["rule"])) for c in checks]
          for stage, checks in DECLARED["checks"].items()}
# why an allele is not reportable: the first reason that applies
EXCLUSION = pl.coalesce(pl.when(_sql(e["when"])).then(pl.lit(e["reason"])) for e in DECLARED["variants"]["exclusions"])


def _specs(kind: str) -> list[ColumnSpec]:
    """The declared columns of one kind of file; a ChAS export's decoration is known, not used."""
    optional = DECLARED["optional"][kind]
    return [*(ColumnSpec(key, tuple(names), key not in optional) for key, names in DECLARED["columns"][kind].items()),
            *(ColumnSpec(f"{kind}_{i}", (name,), required=False)
              for i, name in enumerate(DECLARED["decoration"].get(kind, [])))]


def read(ctx: ReadContext) -> ReadResult:
    """The delivery, its manifest found as a centre's file is (a link out of the folder refused), any
    unexpected error (a native panic included) an :class:`ImportFailure`: never a raw traceback."""
    return read_guarded(ctx, MANIFEST, _read)


@dataclass(frozen=True)
class Reader:
    """The adapter as the registry calls it (``adapter = "molecular"`` in ``data/formats/molecular.toml``)."""

    declaration: Path
    read = staticmethod(read)


@dataclass
class _Kind:
    """The files of one assay in a delivery, read together."""

    ctx: ReadContext
    files: dict[str, tuple[str, str | None]]  # label -> (sample id, patient)
    failed: dict[str, tuple[str, str | None, str]] = field(default_factory=dict)  # label -> rule, column, message
    rows: dict[str, int] = field(default_factory=dict)  # label -> source rows

    def fail(self, label: str, reason: str, rule: str, column: str | None = None) -> None:
        """File ``label`` cannot be read at all: ``rule`` is the data query it becomes."""
        self.failed.setdefault(label, (rule, column, f"{label}: {reason}"))

    def lines(self, paths: dict[str, Path]) -> pl.DataFrame:
        """Every physical line of every readable file: file, line, text, complete (ends with a line
        break), sample_id, patient_id."""
        rows: dict[str, list] = {"file": [], "text": [], "complete": [], "sample_id": [], "patient_id": []}
        for label, path in paths.items():
            try:
                text = engine.decode(self.ctx, decl.FileLayout(label), path.read_bytes(), stop="")
            except ImportFailure as failure:
                self.failed.setdefault(label, (failure.rule, None, str(failure)))
                continue
            except OSError as exc:  # a file the system will not read (rights, a device...): only that one is lost
                self.fail(label, MSG["unreadable"].format(error=type(exc).__name__), rule="unreadable_file")
                continue
            lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
            complete = lines[-1] == ""
            lines = lines[:-1] if complete else lines
            for key, value in zip(rows, (label, None, complete, *self.files[label])):
                rows[key] += lines if key == "text" else [value] * len(lines)
        return pl.DataFrame(rows, schema={**dict.fromkeys(rows, pl.String), "complete": pl.Boolean}).with_columns(
            line=pl.int_range(1, pl.len() + 1).over("file"))


def _read(ctx: ReadContext, manifest: Path) -> ReadResult:
    samples = _read_manifest(ctx, manifest)
    found = _index_files(ctx, Path(ctx.delivery_dir), manifest)
    owner = dict(samples.drop_nulls("sample_id").unique("sample_id", keep="first")  # its first row owns a sample
                 .select("sample_id", "patient_id").iter_rows())
    frames, states, source_rows, files = {}, {}, {MANIFEST: samples.height}, [manifest]
    for assay, a in ASSAYS.items():
        paths = {f"{a['folder']}/{p.name}": p for p in found[assay].values()}
        kind = _Kind(ctx, {label: (sample_id, owner.get(sample_id)) for label, sample_id in zip(paths, found[assay])})
        for label, sample_id in zip(paths, found[assay]):
            if sample_id not in owner:
                ctx.query(file=label, rule="orphan_file", value=sample_id,
                          message=MSG["orphan_file"].format(file=label, sample_id=sample_id))
        files += paths.values()
        frames[a["table"]] = READERS[a["table"]](kind, kind.lines(paths)).filter(
            ~pl.col("source_file").is_in(list(kind.failed)))
        states[assay] = {sample_id: FAILED if label in kind.failed else TESTED
                         for label, (sample_id, _) in kind.files.items()}
        for label, (sample_id, patient_id) in kind.files.items():
            source_rows[label] = 0 if label in kind.failed else kind.rows.get(label, 0)
            if label in kind.failed:
                rule, column, reason = kind.failed[label]
                ctx.query(file=label, patient_id=patient_id, field=column, rule=rule, message=MSG["file_failed"]
                          .format(reason=reason, what=a["label"], sample_id=sample_id))
    frames["molecular_sample"] = _samples(ctx, samples, states)
    return ReadResult(centre=ctx.centre, delivery_date=ctx.delivery_date, frames=frames, queries=ctx.queries,
                      files=files, source_rows=source_rows)


def _samples(ctx: ReadContext, samples: pl.DataFrame, states: dict[str, dict[str, str]]) -> pl.DataFrame:
    """molecular_sample: each assay tested / failed / not done, from the manifest's status and the files
    (no usable accession: nothing says which files are the case's, so no state)."""
    sample, status, state = pl.col("sample_id"), pl.col("status"), pl.col("state")
    for assay, a in ASSAYS.items():
        samples = samples.with_columns(state=sample.replace_strict(states[assay], default=None, return_dtype=pl.String),
                                       label=pl.format(f"{a['folder']}/{{}}{a['suffix']}", sample),
                                       what=pl.lit(a["label"]))
        given, unused = sample.is_not_null(), status == "not_contributory"
        _flag(ctx, samples, "molecular_sample", CHECKS["sample"])
        samples = samples.with_columns(pl.when(given).then(pl.coalesce(state, pl.when(unused).then(pl.lit(FAILED))
                                                                        .otherwise(pl.lit(NOT_DONE)))).alias(assay))
    return _canonical("molecular_sample", samples)


def _canonical(table: str, df: pl.DataFrame) -> pl.DataFrame:
    return model.conform(table, df.with_columns(source_file="file", source_row="line"))


# --- files -----------------------------------------------------------------------------------

def _index_files(ctx: ReadContext, folder: Path, manifest: Path) -> dict[str, dict[str, Path]]:
    """The sample files of each assay, by accession; anything else -> ``unknown_file``."""
    found: dict[str, dict[str, Path]] = {assay: {} for assay in ASSAYS}
    by_folder = {a["folder"]: (assay, a["suffix"]) for assay, a in ASSAYS.items()}

    def refuse(label: str, rule: str) -> None:
        ctx.query(file=label, rule=rule, message=MSG[rule].format(file=label))

    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.name == manifest.name:
            continue  # hidden files (.DS_Store...) are the workstation's, not the export's
        if leaves_folder(folder, entry):
            refuse(entry.name, rule="file_outside_delivery")
        elif entry.is_dir() and entry.name in by_folder:
            assay, suffix = by_folder[entry.name]
            for path in sorted(entry.iterdir()):
                label = f"{entry.name}/{path.name}"
                # inside a folder already checked, only a link can lead out (resolving all costs seconds)
                if path.name.startswith("."):
                    continue
                if path.is_symlink() and leaves_folder(folder, path):
                    refuse(label, rule="file_outside_delivery")
                elif path.is_file() and path.name.endswith(suffix) and len(path.name) > len(suffix):
                    found[assay][path.name[: -len(suffix)]] = path
                else:
                    refuse(label, rule="unknown_file")
        else:
            refuse(entry.name, rule="unknown_file")
    return found


# --- manifest --------------------------------------------------------------------------------

MANIFEST_COLUMNS = tuple(DECLARED["columns"]["manifest"])
MANIFEST_FORMAT = decl.Declaration("manifest", decl.FileLayout.of(DECLARED["manifest_file"], name=MANIFEST), tuple(
    decl.Column(key, tuple(names), identifier=HOSPITAL_NUMBER if key in DECLARED["identifiers"]["manifest"] else None)
    for key, names in DECLARED["columns"]["manifest"].items()))


def _read_manifest(ctx: ReadContext, path: Path) -> pl.DataFrame:
    # the engine's CSV path: encoding, header, columns, quoting, field counts, a cut last line
    df, header, cols, fields = engine.read_text(ctx, path, MANIFEST_FORMAT)
    cells = {k: pl.Series(k, [None if is_missing(v) else v.strip() for v in df.to_series(cols[k])], pl.String)
             for k in MANIFEST_COLUMNS}  # stripped; blank or a missing-value token -> None
    raw = pl.DataFrame({"source_row": pl.int_range(2, df.height + 2, eager=True), "_fields": fields, **cells})
    blank = df.select(pl.all_horizontal(pl.all().str.strip_chars().fill_null("") == "")).to_series()
    for i in raw["source_row"].filter(blank).to_list():  # row i as a spreadsheet shows it
        ctx.query(file=MANIFEST, row=i, rule="empty_row", message=MSG["empty_row"].format(file=MANIFEST, line=i))
    if (raw := raw.filter(~blank)).is_empty():
        raise ImportFailure(MSG["no_case"].format(file=MANIFEST), MANIFEST)
    ctx.identifiers.add(HOSPITAL_NUMBER, raw["local_id"], header[cols["local_id"]])
    # A centre the registry does not know cannot be the patient's: its pseudonym would link the
    # case to nobody, so the case is kept unlinked and the laboratory is asked to correct it.
    known = {name for name, c in load_registry(Path(ctx.delivery_dir).parent.parent).items() if not c.laboratory}
    unknown = raw["centre"].str.strip_chars().str.to_lowercase().is_in(list(known)).not_() & raw["centre"].is_not_null()
    raw = raw.with_columns(row_id=pl.format("molecular_sample:{}:{}", pl.lit(MANIFEST), "source_row"),
                           patient_id=pl.Series([None if u or not (c and l) else pseudonym(ctx.pseudonym_key, c, l)
                                                 for u, c, l in zip(unknown, raw["centre"], raw["local_id"])],
                                                dtype=pl.String))
    name = {k: header[cols[k]] for k in MANIFEST_COLUMNS}
    beyond = pl.col("_fields").replace_strict(dict(enumerate(header)), default=f"colonne {len(header) + 1}",
                                              return_dtype=pl.String)  # the first column missing, or beyond the header
    # a duplicated case or sample as repeated_rows says (one patient on two rows is two samples; "007" is case 7)
    case, sample = pl.col("case_no").str.replace(r"^0+(\d)", "$1"), pl.col("sample_id")
    repeated = {f"repeated_{k}": repeated_rows(raw.select(MANIFEST_COLUMNS), raw.select(key).to_series())
                for k, key in (("case", case), ("sample", sample))}
    raw = raw.with_columns(file=pl.lit(MANIFEST), line="source_row", known=pl.lit(", ".join(sorted(known))),
                           width=len(header), unknown=unknown, beyond=beyond, **repeated,
                           **{f"name_{k}": pl.lit(v) for k, v in name.items()})
    _flag(ctx, raw, "molecular_sample", CHECKS["manifest"])
    invalid = next(c["when"] for c in CHECKS["manifest"] if c["rule"] == "invalid_sample_id")
    raw = raw.with_columns(sample_id=pl.when(~invalid).then("sample_id"))
    return raw.with_columns(
        case_no=_numbers(ctx, raw, "case_no", pl.lit(name["case_no"]), table="molecular_sample", integer=True),
        status=_parsed(ctx, raw, "status", pl.lit(name["status"]), pl.String, _code(STATUS), "molecular_sample"))


# --- checks over a whole kind of file ----------------------------------------------------------


def _parsed(ctx: ReadContext, rows: pl.DataFrame, raw: str, field: pl.Expr | None, dtype, parse, table: str = ""):
    """``parse(Cells, cell)`` once per distinct value of ``rows[raw]``; the queries it raises are
    repeated on every row holding that value (``field``: the column as the row's file names it)."""
    probe = ReadContext(ctx.centre, ctx.delivery_dir, ctx.delivery_date, ctx.pseudonym_key)
    keys, values, notes = rows[raw].unique(maintain_order=True).to_list(), [], []
    for key in keys:
        before = len(probe.queries)
        values.append(parse(Cells(probe, "", None, 0, table, ""), key))
        notes += [(key, q.value, q.rule, q.message) for q in probe.queries[before:]]
    lookup = pl.DataFrame({raw: keys, "_v": values}, schema={raw: rows.schema[raw], "_v": dtype}, strict=False)
    if notes:
        found = pl.DataFrame(notes, orient="row", schema={raw: rows.schema[raw],
                                                          **dict.fromkeys(("value", "rule", "message"), pl.String)})
        hits = rows.with_columns(field=field).join(found, on=raw, nulls_equal=True, maintain_order="left")
        _emit(ctx, hits, table, pl.col("message").str.replace_all(FIELD, pl.col("field").fill_null(""), literal=True))
    return rows.select(raw).join(lookup, on=raw, how="left", nulls_equal=True, maintain_order="left")["_v"]


def _numbers(ctx: ReadContext, rows: pl.DataFrame, raw: str, field: pl.Expr, *, table: str, integer: bool = False,
             decimal_comma: bool = True) -> pl.Series:
    """Plain numbers read by polars (every digit kept); any other spelling by Cells, with its queries.
    An integer must fit its column (non-negative Int32)."""
    text, dtype = rows[raw], pl.Int64 if integer else pl.Float64
    fast = text.str.contains(PLAIN_INT if integer else PLAIN_NUMBER).fill_null(False)
    if integer:
        fast &= (text.cast(pl.Int64, strict=False) <= INT32_MAX).fill_null(False)
    out = pl.select(pl.when(fast).then(text.cast(dtype, strict=False))).to_series()

    def parse(c: Cells, value):
        number = c.number(FIELD, value, integer=integer, decimal_comma=decimal_comma)
        if integer and number is not None and not 0 <= number <= INT32_MAX:
            c.error(FIELD, value, "number_out_of_range", MSG["number_out_of_range"].format(value=value, field=FIELD))
            return None
        return number

    slow = ~fast & text.is_not_null()
    if slow.any():
        out = out.scatter(slow.arg_true(), _parsed(ctx, rows.filter(slow), raw, field, dtype, parse, table))
    return out


def _emit(ctx: ReadContext, hits: pl.DataFrame, table: str, message: pl.Expr) -> None:
    ctx.extend_queries(hits.select("file", "field", "value", "rule", "patient_id", row="line", table_name=pl.lit(table),
                                   row_id="row_id" if "row_id" in hits.columns else pl.lit(None, pl.String),
                                   message=message))


def _message(template: str) -> pl.Expr:
    """A message of MSG with its {names} taken from the row (a cell cut to 200 characters)."""
    parts = re.split(r"\{(\w+)\}", template)
    return pl.concat_str([pl.lit(p) if i % 2 == 0 else pl.col(p).cast(pl.String).str.slice(0, 200).fill_null("")
                          for i, p in enumerate(parts)])


def _flag(ctx: ReadContext, rows: pl.DataFrame, table: str | None, checks: list[dict]) -> None:
    """Checks of :data:`CHECKS` over every row of a kind: one query per row where ``when`` holds."""
    for c in checks:
        hits, rule = rows.filter(c["when"].fill_null(False)), c["rule"]
        if hits.height:
            hits = hits.with_columns(field=c["field"], value=c["value"].cast(pl.String), rule=pl.lit(rule))
            _emit(ctx, hits, table, _message(MSG[c["message"]]))


def _tabular(kind: _Kind, lines: pl.DataFrame, specs: str, table: str) -> pl.DataFrame:
    """A tab-separated export per file: ``#`` lines skipped, first other line = header (columns by
    name), no quoting. Returns the rows under the headers with each declared cell (``key``) and the
    name the file gives its column (``name_key``)."""
    ctx, keys = kind.ctx, list(DECLARED["columns"][specs])
    text = pl.col("text")
    lines = lines.with_columns(comment=text.str.starts_with("#"), blank=text.str.strip_chars() == "")
    lines = lines.with_columns(head=pl.col("line").filter(~pl.col("comment") & ~pl.col("blank")).min().over("file"))
    for label in set(kind.files) - set(kind.failed) - set(lines.filter(pl.col("head").is_not_null())["file"]):
        kind.fail(label, MSG["no_header"], rule="missing_header")
    layout, cache = [], {}
    for label, text in lines.filter(pl.col("line") == pl.col("head")).select("file", "text").iter_rows():
        header = text.split("\t")
        if text not in cache:  # thousands of files share a few headers
            probe = ReadContext(ctx.centre, ctx.delivery_dir, ctx.delivery_date, ctx.pseudonym_key)
            try:
                cache[text] = match_columns(probe, [h[:MAX_NAME] for h in header], _specs(specs), FIELD), probe.queries
            except ImportFailure as failure:
                cache[text] = failure.column, None
        cols, notes = cache[text]
        if notes is None:
            rule = "duplicate_column" if cols in header else "missing_column"
            kind.fail(label, MSG[rule].format(column=cols), rule=rule, column=cols)
            continue
        for q in notes:  # unknown columns
            ctx.query(file=label, field=q.field, value=q.value, rule=q.rule, message=q.message.replace(FIELD, label))
        layout.append({"file": label, "width": len(header), **{f"i_{k}": cols.get(k) for k in keys},
                       **{f"name_{k}": header[cols[k]] if k in cols else None for k in keys}})
    body = lines.filter((pl.col("line") > pl.col("head")) & ~pl.col("comment")
                        & ~pl.col("file").is_in(list(kind.failed)))
    _flag(ctx, body.with_columns(row_id=pl.lit(None, pl.String), patient_id=pl.lit(None, pl.String)), None,
          CHECKS["tabular_lines"])
    body = body.filter(~pl.col("blank"))
    schema = {"file": pl.String, "width": pl.Int64, **{f"i_{k}": pl.Int64 for k in keys},
              **{f"name_{k}": pl.String for k in keys}}
    body = body.join(pl.DataFrame(layout, schema=schema), on="file", maintain_order="left").with_columns(
        fields=pl.col("text").str.split("\t"), last=pl.col("line") == pl.col("line").max().over("file"),
        row_id=pl.format("{}:{}:{}", pl.lit(table), "file", "line"))
    fields = pl.col("fields")
    body = body.with_columns(n=fields.list.len(),
                             **{f"raw_{k}": fields.list.get(pl.col(f"i_{k}"), null_on_oob=True) for k in keys})
    kind.rows.update(body.group_by("file").len().iter_rows())
    cut = pl.col("last") & ~pl.col("complete") & (pl.col("n") < pl.col("width"))  # a last line without its end
    _flag(ctx, body.with_columns(cut=cut), table, CHECKS["tabular_rows"])
    return body, lines.filter(pl.col("comment"))


def _chromosome(text: str | None) -> str | None:
    """``7``, ``chr7``, ``07``, ``chrx`` -> ``7`` / ``X``; None when not a human chromosome."""
    m = CHROMOSOME.match(text) if text is not None else None
    return m[1].lstrip("0").upper() if m else None


def _cell(read, rule: str, message: str | None = None, blank: dict | None = None):
    """A parse of a cell by ``read`` (its value; None: unread), its queries declared (``[cells]``)."""
    def parse(c: Cells, raw):
        value = read(raw)
        broken = (blank or {}).get("rule") if is_missing(raw) else rule  # (a blank cell: its own rule, or none)
        if value is None and broken:
            c.error(FIELD, raw, broken, MSG[message or rule].format(value=raw))
        return value
    return parse


def _build_problem(c: Cells, text: str | None) -> str | None:
    """The build a text names when it is not hg19/GRCh37 (None: hg19 or no build named)."""
    m = BUILD.search(text) if text and not HG19.search(text) else None
    return m.group(1) if m else None


def _code(mapping: dict, rule: str | None = None, **options):
    """A parse of a coded cell (written as the mapping spells it: no Cells); ``rule``: its query when blank."""
    def parse(c: Cells, raw):
        if rule and is_missing(raw):
            c.error(FIELD, raw, rule, MSG[rule])
        return c.code(FIELD, raw, mapping, **options)
    return parse


# --- ChAS segments and Archer fusions ---------------------------------------------------------


def _location(raw: str | None) -> dict | None:
    """``chrN:start-end`` (1-based, start <= end) -> chromosome, start, end."""
    m = LOCATION.match(raw) if raw is not None else None
    chrom = _chromosome(m.group(1)) if m else None
    start, end = (int(d) if d and len(d) <= 11 else 0 for d in (re.sub(r"\D", "", g) for g in m.group(2, 3))) \
        if m else (0, 0)
    if chrom is None or not 1 <= start <= end <= POSITION_MAX:
        return None
    return {"loc_chrom": chrom, "start_bp": start, "end_bp": end}


def _iscn_build(c: Cells, raw) -> dict | None:
    iscn = ISCN_BUILD.search(raw) if raw else None
    return {"build": None if HG19.search(iscn.group(1)) else iscn.group(1).strip() or "?"} if iscn else None


def _read_chas(kind: _Kind, lines: pl.DataFrame) -> pl.DataFrame:
    ctx, table = kind.ctx, "cn_segment"
    rows, comments = _tabular(kind, lines, "chas", table)
    builds = comments.with_columns(build=_parsed(ctx, comments, "text", None, pl.String, _build_problem))
    file_build = builds.group_by("file").agg(file_build=pl.col("build").drop_nulls().first())
    name = {k: pl.col(f"name_{k}") for k in DECLARED["columns"]["chas"]}
    parsed, number = partial(_parsed, ctx, rows, table=table), partial(_numbers, ctx, rows, table=table)
    rows = rows.join(file_build, on="file", how="left", maintain_order="left").with_columns(
        segment_type=parsed("raw_type", name["type"], pl.String, _code(SEGMENT_TYPES, rule="missing_segment_type")),
        at=parsed("raw_full_location", name["full_location"], pl.Struct(
            {"loc_chrom": pl.String, "start_bp": pl.Int64, "end_bp": pl.Int64}), _cell(_location, **CELLS["location"])),
        stated=parsed("raw_chromosome", name["chromosome"], pl.String, _cell(_chromosome, **CELLS["chromosome"])),
        cn_state=number("raw_cn_state", name["cn_state"]),
        cn_missing=_parsed(ctx, rows, "raw_cn_state", None, pl.Boolean, lambda c, v: is_missing(v)),
        iscn=_parsed(ctx, rows, "raw_nomenclature", None, pl.Struct({"build": pl.String}), _iscn_build),
        named=pl.col("raw_file").str.strip_chars().fill_null(""),
    ).unnest("at")
    cn, kind, iscn = pl.col("cn_state"), pl.col("segment_type"), pl.col("iscn").is_not_null()
    _flag(ctx, rows, table, CHECKS["chas_cn"])
    rows = rows.with_columns(chrom=pl.coalesce("loc_chrom", "stated"), cn_state=pl.when(cn >= 0).then(cn),
                             build=pl.when(iscn).then(pl.col("iscn").struct.field("build")).otherwise("file_build"))
    # CN state against Type (oncoscanR's categories; X/Y carry one copy in men)
    rows = rows.with_columns(floor=pl.when(pl.col("chrom").is_in(["X", "Y"])).then(1).otherwise(2))
    named = pl.col("named")
    mismatch = (named != "") & (named.str.replace(r"(?i)\.(os|cy)?chp$", "") != pl.col("sample_id"))
    rows = rows.with_columns(
        fits=pl.when(kind == "Gain").then(cn > pl.col("floor")).when(kind == "Loss").then(cn < 2).otherwise(cn == 2),
        expected=pl.when(kind == "Gain").then(pl.format("> {}", "floor")).when(kind == "Loss").then(pl.lit("< 2"))
        .otherwise(pl.lit("vide (LOH neutre en copies)")),
        first_mismatch=mismatch & (mismatch.cum_sum().over("file") == 1))  # once per file
    _flag(ctx, rows, table, CHECKS["chas"])
    return _canonical(table, rows)


def _genes(raw: str | None) -> dict | None:
    genes = [g.strip() for g in re.split(r"::|:", raw or "")]
    if len(genes) != 2 or not all(genes):
        return None
    return {"gene_5p": genes[0], "gene_3p": genes[1]}


def _breakpoints(raw: str | None) -> dict | None:
    parts = [BREAKPOINT.match(p) for p in (raw or "").split(";")]
    if len(parts) != 2 or not all(parts):
        return None
    return dict(zip(("breakpoint_5p", "breakpoint_3p"),
                    (f"chr{m.group(1).upper()}:{int(m.group(2).replace(',', ''))}" for m in parts)))


def _read_archer(kind: _Kind, lines: pl.DataFrame) -> pl.DataFrame:
    ctx, table = kind.ctx, "fusion"
    rows, _ = _tabular(kind, lines, "archer", table)
    name = {k: pl.col(f"name_{k}") for k in DECLARED["columns"]["archer"]}
    rows = rows.with_columns(percent=pl.col("raw_percent_gsp2_reads").str.strip_chars().str.strip_suffix("%"))
    parsed, number = partial(_parsed, ctx, rows, table=table), partial(_numbers, ctx, rows, table=table)
    rows = rows.with_columns(
        genes=parsed("raw_genes", name["genes"], pl.Struct({"gene_5p": pl.String, "gene_3p": pl.String}),
                     _cell(_genes, **CELLS["fusion_genes"])),
        breakpoints=parsed("raw_breakpoints", name["breakpoints"], pl.Struct(
            {"breakpoint_5p": pl.String, "breakpoint_3p": pl.String}), _cell(_breakpoints, **CELLS["breakpoints"])),
        percent_gsp2_reads=number("percent", name["percent_gsp2_reads"]),
        strong_evidence=parsed("raw_strong_evidence", name["strong_evidence"], pl.Boolean,
                               _code(STRONG_EVIDENCE, strict_case=False)),
        **{k: number(f"raw_{k}", name[k], integer=True, decimal_comma=False) for k in ("reads", "unique_start_sites")},
    ).unnest("genes", "breakpoints")
    _flag(ctx, rows, table, CHECKS["archer"])
    return _canonical(table, rows.with_columns(
        percent_gsp2_reads=pl.when(pl.col("percent_gsp2_reads").is_between(0, 100)).then("percent_gsp2_reads")))


# --- TVC / Ion Reporter VCF: the body is tab-separated text -------------------------------------------


def _annotations(text: str | None, alt: str | None, i: int, n: int, cache: dict) -> tuple:
    """Ion Reporter's FUNC (a Python literal, parsed once per distinct text, never evaluated) ->
    (unreadable, no entry for this allele, gene, transcript, coding, protein, function)."""
    if text is None:
        return (False, False) + (None,) * 5
    if text not in cache:
        try:  # (longer than 100,000 characters: unreadable, never parsed)
            parsed = ast.literal_eval(text) if len(text) <= 100_000 else None
            parsed = [parsed] if isinstance(parsed, dict) else parsed
            cache[text] = [e for e in parsed if isinstance(e, dict)] if isinstance(parsed, (list, tuple)) else None
        except Exception:  # SyntaxError, ValueError, MemoryError, RecursionError...
            cache[text] = None
    entries = cache[text]
    if entries is None:
        return (True, False) + (None,) * 5
    hits = [e for e in entries if str(e.get("origAlt", "")) == alt]
    found = (hits[0] if hits else entries[i] if not any("origAlt" in e for e in entries) and len(entries) == n
             else entries[0] if n == 1 and len(entries) == 1 else None)  # by allele key, by order, a normalised indel
    texts = [",".join(map(str, v)) if isinstance(v, (list, tuple)) else v for v in
             ((found or {}).get(k) for k in ("gene", "transcript", "coding", "protein", "function"))]
    return (False, bool(entries) and found is None,
            *(t if t and t != "." else None for t in (None if v is None else str(v).strip() for v in texts)))


def _vcf_header(kind: _Kind, lines: pl.DataFrame) -> pl.DataFrame:
    """Per file: ``##fileformat``, the ``#CHROM`` line, the sample's name and the genome build."""
    ctx, out, text, line, head = kind.ctx, [], pl.col("text"), pl.col("line"), pl.col("top")
    heads = lines.with_columns(top=line.filter(~text.str.starts_with("##")).min().over("file")).group_by(
        "file", maintain_order=True).agg(
        first=text.first(), top=head.first(), columns=text.filter(line == head).first(),
        reference=text.filter(text.str.starts_with("##reference=") & (line < head.fill_null(1 << 60))).first(),
        patient_id=pl.col("patient_id").first(), sample_id=pl.col("sample_id").first())
    for label, first, top, columns, reference, patient_id, sample_id in heads.iter_rows():
        columns = columns.split("\t") if columns is not None else []
        if not first.startswith("##fileformat=VCF"):
            kind.fail(label, MSG["not_a_vcf"], rule="invalid_vcf")
        elif columns[:8] != VCF_COLUMNS or len(columns) == 9 or (len(columns) > 9 and columns[8] != "FORMAT"):
            kind.fail(label, MSG["bad_chrom_line"], rule="invalid_vcf", column="#CHROM")
        else:
            if len(columns) > 9 and columns[9].strip() != sample_id:
                ctx.query(file=label, row=top, patient_id=patient_id, field="#CHROM", value=columns[9],
                          rule="sample_name_mismatch", message=MSG["vcf_sample_name"].format(value=columns[9],
                                                                                            sample_id=sample_id))
            if reference is None:
                ctx.query(file=label, patient_id=patient_id, field="##reference", rule="missing_reference",
                          message=MSG["missing_reference"].format(file=label))
            build = reference.split("=", 1)[1] if reference and not HG19.search(reference.split("=", 1)[1]) else None
            out.append((label, top, len(columns), build))
    return pl.DataFrame(out, schema={"file": pl.String, "top": pl.Int64, "width": pl.Int64, "build": pl.String},
                        orient="row")


def _read_vcf(kind: _Kind, lines: pl.DataFrame) -> pl.DataFrame:
    ctx, table = kind.ctx, "variant"
    heads = _vcf_header(kind, lines)
    body = lines.join(heads, on="file", maintain_order="left").filter(pl.col("line") > pl.col("top")).with_columns(
        last=pl.col("line") == pl.col("line").max().over("file"), row_id=pl.lit(None, pl.String))
    blank, hashed = pl.col("text").str.strip_chars() == "", pl.col("text").str.starts_with("#")
    _flag(ctx, body.with_columns(patient_id=pl.lit(None, pl.String), blank=blank, hashed=hashed), None,
          CHECKS["vcf_lines"])
    body = body.filter(~blank & ~hashed)
    counts = dict(body.group_by("file").len().iter_rows())
    kind.rows.update({label: counts.get(label, 0) for label in heads["file"]})
    for label in heads.filter(~pl.col("file").is_in(list(counts)))["file"]:
        ctx.query(file=label, patient_id=kind.files[label][1], rule="no_variant_records",
                  message=MSG["no_variant_records"].format(file=label))
    f = pl.col("fields")
    body = body.with_columns(fields=pl.col("text").str.split("\t")).with_columns(
        n=f.list.len(), **{name: f.list.get(i, null_on_oob=True) for i, name in enumerate(VCF_FIELDS)})
    broken = ((pl.col("n") != pl.col("width")) | ~pl.col("pos_raw").str.contains(r"^\s*[+-]?[0-9]+\s*$")
              | ((pl.col("qual") != ".") & pl.col("qual").str.strip_chars().cast(pl.Float64, strict=False).is_null()))
    body = body.with_columns(broken=broken.fill_null(True), cut=pl.col("last") & ~pl.col("complete"))
    bad = body.filter("broken").with_columns(row_id=pl.format("variant:{}:{}:1", "file", "line"), value=pl.col("text"))
    _flag(ctx, bad, table, CHECKS["vcf_broken"])
    text = {k: pl.when(~pl.col(k).is_in(["", "."])).then(pl.col(k).str.slice(0, MAX_TEXT))
            for k in ("chrom_raw", "ref", "alt_text", "filter_raw")}
    bad = bad.with_columns(chrom=text["chrom_raw"].str.replace(r"^(?i)chr", ""), ref=text["ref"], alt=text["alt_text"],
                           filter=text["filter_raw"], pos=pl.when(pl.col("pos_raw").str.contains(r"^[0-9]{1,11}$"))
                           .then(pl.col("pos_raw").cast(pl.Int64, strict=False)))
    return pl.concat([_canonical(table, bad), _records(kind, body.filter(~pl.col("broken")))])


def _records(kind: _Kind, rows: pl.DataFrame) -> pl.DataFrame:
    """One canonical row per ALT allele of each record."""
    ctx, table, lit = kind.ctx, "variant", pl.lit
    used = DECLARED["variants"]["info_used"]
    keys = pl.col("format").str.split(":")
    rows = rows.with_columns(
        **{f"info_{k}": pl.col("info").str.extract(rf"(?:^|;){k}=([^;]*)") for k in used},
        **{f"has_{k}": pl.col("info").str.contains(rf"(?:^|;){k}(?:=|;|$)") for k in used},
        **{f"call_{k}": pl.when(keys.list.contains(k)).then(pl.col("call").str.split(":").list.get(
            keys.list.eval(pl.element() == k).list.arg_max(), null_on_oob=True))
           for k in ("GT", "AF", "FAO", "FDP", "DP")},
        **{f"calls_{k}": keys.list.contains(k).fill_null(False) for k in ("AF", "FAO")},
        n_alt=pl.when(pl.col("alt_text") == ".").then(0).otherwise(pl.col("alt_text").str.split(",").list.len()))
    rows = rows.with_columns(i=pl.int_ranges(pl.max_horizontal("n_alt", 1))).explode("i").with_columns(
        alt=pl.when(pl.col("n_alt") > 0).then(pl.col("alt_text").str.split(",").list.get("i", null_on_oob=True)),
        row_id=pl.format("variant:{}:{}:{}", "file", "line", pl.col("i") + 1),
        gt=pl.col("call_GT").str.strip_chars().replace({"": None, ".": None}),
        **{f"text_{k}": pl.when(f"has_{k}").then(f"info_{k}").otherwise(f"call_{k}") for k in ("AF", "FAO", "FDP")},
        fallback=~pl.col("has_AF") & ~pl.col("calls_AF"))

    count = pl.max_horizontal("n_alt", 1)  # values a Number=A field holds (checks: GREATEST(n_alt, 1))

    def allele(column: str) -> pl.Expr:  # the i-th of a Number=A value; "." is no value
        parts = pl.col(column).str.split(",")
        return pl.when(parts.list.len() == count).then(parts.list.get("i", null_on_oob=True)).replace(".", None)

    # flow-evaluator depth first (the AF denominator), raw read depth when it is absent
    depth = [(k, pl.col(f"{s}_{k}").replace(".", None)) for k in ("FDP", "DP") for s in ("info", "call")]
    _flag(ctx, rows.with_columns(n=pl.col("n_alt")), table, CHECKS["vcf_allele_counts"])
    rows = rows.with_columns(af=allele("text_AF"), gmaf_text=allele("info_GMAF"),
                             fao=pl.when("fallback").then(allele("text_FAO")),
                             fdp=pl.when("fallback").then(pl.col("text_FDP").str.split(",").list.first()
                                                          .replace(".", None)),
                             depth_key=pl.coalesce(pl.when(c.is_not_null()).then(lit(k)) for k, c in depth),
                             depth_text=pl.coalesce(c for _, c in depth))
    number = partial(_numbers, ctx, rows, table=table, decimal_comma=False)
    rows = rows.with_columns(
        vaf=number("af", lit("AF")), gmaf=number("gmaf_text", lit("GMAF")),
        depth=number("depth_text", pl.col("depth_key"), integer=True),
        chrom=_parsed(ctx, rows, "chrom_raw", lit("#CHROM"), pl.String,  # (a variant nowhere in the genome is no variant)
                      _cell(_chromosome, **CELLS["vcf_chromosome"]), table),
        computed=(number("fao", lit("FAO")) / number("fdp", lit("FDP")).replace(0, None)).round(6))
    rows = rows.with_columns(vaf=pl.coalesce("vaf", pl.when("fallback").then("computed")),
                             pos=pl.col("pos_raw").str.strip_chars().cast(pl.Int64, strict=False))
    pos_ok = pl.col("pos").is_between(1, POSITION_MAX)
    vaf_ok, gmaf_ok = pl.col("vaf").is_between(0, 1), pl.col("gmaf").is_between(0, 1)
    _flag(ctx, rows.with_columns(length=pl.col("ref").str.len_chars(), pos_ok=pos_ok), table, CHECKS["vcf_values"])
    _flag(ctx, rows.with_columns(length=pl.col("alt").str.len_chars()), table, CHECKS["vcf_alt"])
    cache: dict = {}
    combos = rows.select("info_FUNC", "alt", "i", "n_alt").unique()
    annotated = pl.DataFrame([(*k, *_annotations(k[0], k[1], k[2], k[3], cache)) for k in combos.iter_rows()],
                             schema={**combos.schema, "unreadable": pl.Boolean, "unmatched": pl.Boolean,
                                     **{k: pl.String for k in ("gene", "transcript", "hgvs_c", "hgvs_p", "function")}},
                             orient="row")
    rows = rows.join(annotated, on=combos.columns, how="left", nulls_equal=True, maintain_order="left")
    _flag(ctx, rows, table, CHECKS["vcf_annotation"])
    rows = rows.with_columns(vaf=pl.when(vaf_ok).then("vaf"), gmaf=pl.when(gmaf_ok).then("gmaf"),
                             carries=pl.col("gt").str.replace_all("|", "/", literal=True).str.split("/").list.eval(
                                 pl.element().cast(pl.Int64, strict=False)).list.contains(pl.col("i") + 1))
    reasons = pl.col("info_FR").str.split(",").list.eval(pl.element().filter(~pl.element().is_in([".", ""])))
    reasons = reasons.list.join(",")
    text = pl.when(pl.col("filter_raw") != ".").then("filter_raw")
    cut = {k: pl.when(pl.col(k).str.len_chars() > MAX_ALLELE_BP).then(pl.col(k).str.slice(0, MAX_ALLELE_BP) + "…")
           .otherwise(k) for k in ("ref", "alt")}
    return _canonical(table, rows.with_columns(
        reason=EXCLUSION, pos=pl.when(pos_ok).then("pos"), **cut,
        genotype="gt", filter=pl.when((pl.col("filter_raw") != "PASS") & (reasons.fill_null("") != ""))
        .then(pl.format("{} (FR={})", text, reasons)).otherwise(text)).with_columns(
        reportable=pl.when(~pl.col("reason").eq_missing("unknown")).then(pl.col("reason").is_null()),
        exclusion_reason=pl.when(~pl.col("reason").eq_missing("unknown")).then("reason")))


READERS = {"cn_segment": _read_chas, "variant": _read_vcf, "fusion": _read_archer}
