"""The laboratory: ``molecular/<date>/`` (``centre_exports.md``, "Molecular results — one laboratory").

Files (``formats_and_rules.md`` §2 ChAS/OncoScan, §3 TVC VCF / Ion Reporter, §4 Archer, §8):

* ``manifest.csv`` (``case_no, centre, local_id, sample_id, status``): one row per profiled case;
  ``patient_id`` is the pseudonym of the *manifest's* centre and local id (the patient's own
  centre, the one the clinical readers pseudonymise with). The local id is never stored or shown.
* ``chas/<sample_id>.segments.txt``: ChAS segments, tab-separated, UTF-8 with or without BOM,
  ``#`` lines skipped anywhere, columns by normalised name (``CN State``, ``Type``,
  ``Full Location`` required; ``Microarray Nomenclature`` with or without ``(ISCN 2016)``).
* ``ngs/<sample_id>.vcf``: Torrent Variant Caller / Ion Reporter VCF, parsed with vcfpy
  against the file's own ``##INFO/##FORMAT/##FILTER`` definitions. Every record is kept; a
  multi-allelic record gives one row per ALT with the matching Number=A values.
* ``fusions/<sample_id>.fusions.tsv``: Archer fusion calls; a header without rows is "tested,
  no fusion".

Output: ``molecular_sample`` (one row per manifest row), ``cn_segment``, ``variant``,
``fusion``, each with its provenance (``source_row`` = physical line in the file, header = 1
when there is no ``#`` preamble).

Choices the contract leaves open:

* The manifest is the delivery: missing, empty, binary, header-only, cut mid-record, a missing
  or duplicated required column -> :class:`ImportFailure` (a full dump without cases would empty
  the laboratory's data in the warehouse). ``status`` is required: without it a
  not-contributory case cannot be told from lost files.
* One sample file that cannot be read at all (empty, binary, no header, a missing or duplicated
  required column, a broken VCF header) does not stop the delivery: that assay is ``failed``
  and an error query names the file and the column. Everything else is read.
* Assay state per sample: ``tested`` when its file was read (an empty table included), ``failed``
  when the file was unreadable, ``not_done`` when there is no file. A case with status ``ok``
  but a missing file gets an error query ``missing_file`` (the contract gives each profiled
  case its three files; nothing in the manifest says an assay was skipped). A
  ``not_contributory`` case has no file: its three assays are ``failed`` (the contract:
  "a case whose assay failed"); a file for such a case is read anyway, with an error query
  ``file_for_not_contributory_case``. An unusable sample id leaves the assay states null.
* A file for no manifest case is read (its rows keep their ``sample_id``, nothing is dropped)
  and gets an error query ``orphan_file``. Any other file -> warning ``unknown_file``.
* Genome build: hg19 by contract. A ChAS row whose ``arr[...]`` (or, failing that, the file's
  ``#`` preamble) names another build, or a VCF whose ``##reference`` is not hg19/GRCh37,
  keeps its rows, each with an error query ``genome_build`` (coordinates are not lifted over,
  so those rows must not reach analyses). A VCF without ``##reference`` -> warning.
* ChAS consistency (``formats_and_rules.md`` §2, oncoscanR's CN categories): a Gain needs
  CN > 2 (> 1 on X/Y, one copy in men), a Loss CN < 2, an LOH no CN (or 2); otherwise
  ``cn_type_mismatch``. Values are kept as written; the query sends the row to quarantine.
* ``File``/``#CHROM`` sample names that differ from the file's accession -> warning
  ``sample_name_mismatch`` (lab software may name samples its own way).
* Variants: ``reportable`` is True for a PASS record, a called genotype that carries this
  allele, AF >= :data:`VAF_FLOOR`, GMAF < 0.01 (or none). Otherwise ``exclusion_reason`` is the
  first that applies of ``filtered`` (FILTER not PASS; the ``FR`` reason is kept in ``filter``,
  e.g. ``NOCALL (FR=QualityScore<12)``, the model having no column for it), ``no_call``
  (``./.``, no genotype), ``reference_call`` (``0/0`` or AF = 0), ``polymorphism``,
  ``low_vaf``, ``no_call`` (the genotype does not carry this allele). ``reportable`` is null when
  the VAF could not be read (an error query says why). A REF or ALT longer than
  :data:`MAX_ALLELE_BP` is an error ``allele_too_long`` (kept cut, quarantined); a POS below 1
  an error ``number_out_of_range`` on ``POS``.
* A file or folder whose real path leaves the delivery folder (a symbolic link out of it) is
  never read: the manifest -> :class:`ImportFailure`, a sample file -> error ``file_outside_delivery``.
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import io
import math
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import vcfpy

from clms_etl.centres import load_registry
from clms_etl.identifiers import HOSPITAL_NUMBER
from clms_etl.readers.base import (
    IDENTIFIER_MASK,
    PROCESS_SIGNALS,
    WARNING,
    ColumnSpec,
    ImportFailure,
    ReadContext,
    leaves_folder,
    ReadResult,
    frame,
    match_columns,
    pseudonym,
)
from clms_etl.readers.cells import Cells, is_missing

MANIFEST = "manifest.csv"
# assay column of molecular_sample -> (folder, file-name suffix, what the data manager calls it)
ASSAYS = {
    "cn_assay": ("chas", ".segments.txt", "segments ChAS"),
    "ngs_assay": ("ngs", ".vcf", "variants NGS"),
    "fusion_assay": ("fusions", ".fusions.tsv", "fusions Archer"),
}
TESTED, NOT_DONE, FAILED = "tested", "not_done", "failed"

# The study's lowest reported VAF is 0.06 (case 9, TP53 c.722C>T) and TVC's low-stringency
# noise sits below 1 % (the artefactual second alleles are <= 0.4 %): 2 % separates the two with
# room on both sides. A lab-validated limit of detection, when known, should replace it.
VAF_FLOOR = 0.02
POLYMORPHISM_GMAF = 0.01  # dbSNP's usual "common variant" threshold
INT32_MAX = 2**31 - 1
POSITION_MAX = 10**10  # larger than any chromosome; also keeps Int64 safe
MAX_NAME = 200  # header names longer than this are cut before matching (a 50 MB "header")
MAX_TEXT = 1000  # text kept from a record vcfpy could not parse
# Longest REF/ALT kept. The lab's NGS is an amplicon panel read by the Torrent Variant Caller: an
# allele cannot be longer than its amplicon (under 400 bp even in long designs), and larger events
# are the copy-number array's and Archer's to report. 1,000 bp leaves room for any real indel; a
# longer allele is a broken export (a megabyte "allele" would be stored, reportable, in the warehouse).
MAX_ALLELE_BP = 1000

HG19 = re.compile(r"hg19|grch37|hs37|\bb37\b|g1k_v37|human_g1k", re.IGNORECASE)
BUILD = re.compile(r"\b(hg\d{2}|grch\d{2}|ncbi\d{2}|t2t[-\w]*|chm13)\b", re.IGNORECASE)
ISCN_BUILD = re.compile(r"arr\s*\[([^\]]*)\]", re.IGNORECASE)
CHROMOSOME = re.compile(r"^\s*(?:chr)?\s*([0-9]{1,2}|[XY])\s*$", re.IGNORECASE)
# chrN:start-end, thousands separators (",", ".", "'", spaces) tolerated inside the numbers
LOCATION = re.compile(
    r"^\s*(?:chr)?([0-9]{1,2}|[XY])\s*:\s*([0-9][0-9,.'\s\u00a0\u202f]*?)\s*-\s*([0-9][0-9,.'\s\u00a0\u202f]*?)\s*$",
    re.IGNORECASE,
)
BREAKPOINT = re.compile(r"^\s*(?:chr)?([0-9]{1,2}|[XYM]|MT)\s*:\s*([0-9][0-9,]*)\s*$", re.IGNORECASE)

STATUS = {"ok": "ok", "not_contributory": "not_contributory"}
SEGMENT_TYPES = {"Gain": "Gain", "Loss": "Loss", "LOH": "LOH"}
STRONG_EVIDENCE = {"True": True, "False": False, "Yes": True, "No": False, "1": True, "0": False,
                   "Oui": True, "Non": False}  # fmt: skip

MANIFEST_SPECS = [
    ColumnSpec("case_no", ("case_no", "case", "case number")),
    ColumnSpec("centre", ("centre", "center")),
    ColumnSpec("local_id", ("local_id",), identifier=True),
    ColumnSpec("sample_id", ("sample_id", "sample")),
    ColumnSpec("status", ("status",)),
]
# ChAS columns the reader does not use but a standard export carries: no "unknown column".
CHAS_DECORATION = (
    "Cytoband Start", "Cytoband End", "Size (kbp)", "Marker Count", "Gene Count", "Genes",
    "OMIM \u00ae Genes Count", "OMIM \u00ae Genes", "CytoRegions", "Call", "Segment Interpretation",
    "Curation By", "Materially Modified Segment",
)  # fmt: skip
CHAS_SPECS = [
    ColumnSpec("cn_state", ("CN State",)),
    ColumnSpec("type", ("Type",)),
    ColumnSpec("full_location", ("Full Location",)),
    ColumnSpec("chromosome", ("Chromosome",), required=False),
    ColumnSpec("nomenclature", ("Microarray Nomenclature", "Microarray Nomenclature (ISCN 2016)",
                                "Microarray Nomenclature (ISCN 2013)"), required=False),
    ColumnSpec("file", ("File",), required=False),
    *(ColumnSpec(f"chas_{i}", (name,), required=False) for i, name in enumerate(CHAS_DECORATION)),
]
ARCHER_SPECS = [
    ColumnSpec("genes", ("Genes", "Genes (5'-3')")),
    ColumnSpec("breakpoints", ("Breakpoints", "Breakpoint")),
    ColumnSpec("reads", ("Reads",)),
    ColumnSpec("unique_start_sites", ("Unique Start Sites",)),
    ColumnSpec("percent_gsp2_reads", ("Percent of GSP2 reads", "% of GSP2 reads"), required=False),
    ColumnSpec("strong_evidence", ("Strong Evidence",), required=False),
]
USED_INFO = frozenset({"AF", "FAO", "FDP", "DP", "GMAF", "FR", "FUNC"})  # what _record_rows reads of INFO
VCF_COLUMNS = ["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO"]


class _FileFailure(ImportFailure):
    """One file cannot be read at all; ``rule`` names the data query it becomes."""

    def __init__(self, message: str, file: str, rule: str, column: str | None = None):
        super().__init__(message, file, column)
        self.rule = rule


@dataclass
class _Sample:
    """One manifest row, parsed."""

    row: int
    row_id: str
    case_no: int | None
    patient_id: str | None
    sample_id: str | None  # None when blank or unusable as a file name
    status: str | None


@dataclass
class _Table:
    header: list[str]
    cols: dict[str, int]
    rows: list[tuple[int, list[str]]]  # (physical line, fields)
    comments: list[str]
    complete: bool  # the file ends with a line break


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def read(ctx: ReadContext) -> ReadResult:
    try:
        return _read(ctx)
    except ImportFailure:
        raise
    except BaseException as exc:  # never a raw traceback for a delivery (a native panic included)
        if isinstance(exc, PROCESS_SIGNALS):
            raise
        raise ImportFailure(
            f"Livraison du laboratoire illisible ({type(exc).__name__}); import du laboratoire arrêté.",
            str(ctx.delivery_dir),
        ) from exc


def _read(ctx: ReadContext) -> ReadResult:
    folder = Path(ctx.delivery_dir)
    if not folder.is_dir():
        raise ImportFailure(f"{folder}: dossier de livraison absent; import du laboratoire arrêté.", str(folder))
    samples, manifest_rows = _read_manifest(ctx, folder / MANIFEST)
    found = _index_files(ctx, folder)

    owner: dict[str, str | None] = {}  # sample_id -> patient of its first manifest row
    for s in samples:
        if s.sample_id is not None:
            owner.setdefault(s.sample_id, s.patient_id)

    rows: dict[str, list[dict]] = {"cn_segment": [], "variant": [], "fusion": []}
    source_rows = {MANIFEST: manifest_rows}
    files = [folder / MANIFEST]
    states: dict[tuple[str, str], str] = {}
    cache: dict = {}  # headers, VCF definitions and annotations repeat file after file
    for assay, by_sample in found.items():
        reader, table = READERS[assay]
        for sample_id, path in by_sample.items():
            label = f"{ASSAYS[assay][0]}/{path.name}"
            patient_id = owner.get(sample_id)
            if sample_id not in owner:
                ctx.query(file=label, rule="orphan_file", value=sample_id,
                          message=f"Fichier {label} sans cas correspondant dans {MANIFEST} "
                                  f"(échantillon « {sample_id} »): lu, mais rattaché à aucun patient.")
            files.append(path)
            states[(assay, sample_id)] = _read_file(ctx, reader, path, label, sample_id, patient_id, cache,
                                                    rows[table], source_rows)

    sample_rows = [_sample_row(ctx, s, states) for s in samples]
    frames = {
        "molecular_sample": frame("molecular_sample", sample_rows),
        "cn_segment": frame("cn_segment", rows["cn_segment"]),
        "variant": frame("variant", rows["variant"]),
        "fusion": frame("fusion", rows["fusion"]),
    }
    return ReadResult(centre=ctx.centre, delivery_date=ctx.delivery_date, frames=frames,
                      queries=ctx.queries, files=files, source_rows=source_rows)


def _read_file(ctx, reader, path: Path, label: str, sample_id: str, patient_id, cache: dict, out: list[dict],
               source_rows: dict[str, int]) -> str:
    """Read one sample file; a file that cannot be read at all -> ``failed`` + an error query.

    Its rows join ``out`` only once the whole file was read, so a failed file leaves no half.
    """
    mine: list[dict] = []
    try:
        source_rows[label] = reader(ctx, path, label, sample_id, patient_id, mine, cache)
        out.extend(mine)
        return TESTED
    except _FileFailure as failure:
        rule, column, message = failure.rule, failure.column, str(failure)
    except BaseException as exc:  # a hostile file (even one a native library panics on) must not stop the others
        if isinstance(exc, PROCESS_SIGNALS):
            raise
        rule, column, message = "unreadable_file", None, f"{label}: lecture impossible ({type(exc).__name__})"
    source_rows[label] = 0
    what = next(w for folder, _, w in ASSAYS.values() if label.startswith(folder + "/"))
    ctx.query(file=label, patient_id=patient_id, field=column, rule=rule,
              message=f"{message}; {what} de l'échantillon « {sample_id} » non importé(e)s (analyse « échec »).")
    return FAILED


def _sample_row(ctx: ReadContext, s: _Sample, states: dict) -> dict:
    row = {"patient_id": s.patient_id, "case_no": s.case_no, "sample_id": s.sample_id, "status": s.status,
           "row_id": s.row_id, "source_file": MANIFEST, "source_sheet": None, "source_row": s.row}
    for assay, (folder, suffix, what) in ASSAYS.items():
        if s.sample_id is None:
            row[assay] = None  # no usable accession: nothing says which files are this case's
            continue
        state = states.get((assay, s.sample_id))
        label = f"{folder}/{s.sample_id}{suffix}"
        if s.status == "not_contributory":
            row[assay] = FAILED if state is None else state
            if state is not None:
                ctx.query(file=MANIFEST, row=s.row, table="molecular_sample", row_id=s.row_id,
                          patient_id=s.patient_id, field="status", value=s.status,
                          rule="file_for_not_contributory_case",
                          message=f"Cas déclaré non contributif mais le fichier {label} est livré: "
                                  f"statut ou fichier à corriger.")
        elif state is None:
            row[assay] = NOT_DONE
            if s.status == "ok":
                ctx.query(file=MANIFEST, row=s.row, table="molecular_sample", row_id=s.row_id,
                          patient_id=s.patient_id, field="sample_id", value=s.sample_id, rule="missing_file",
                          message=f"Cas au statut « ok » mais fichier {label} absent de la livraison "
                                  f"({what}): fichier à livrer, ou analyse non faite à confirmer.")
        else:
            row[assay] = state
    return row


# --------------------------------------------------------------------------------------------
# Text files
# --------------------------------------------------------------------------------------------

_BINARY_MAGIC = (b"PK\x03\x04", b"%PDF", b"\xd0\xcf\x11\xe0", b"\x1f\x8b", b"BZh")
_CONTROL_BYTES = bytes(range(9)) + bytes(range(14, 32))  # C0 controls but tab and line ends


def _decode(ctx: ReadContext, data: bytes, label: str) -> str:
    """Bytes -> text: UTF-8 (BOM or not) by contract; cp1252 or UTF-16 read with a warning."""
    if not data.strip():
        raise _FileFailure(f"{label}: fichier vide", label, "empty_file")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # Excel's "Unicode text"
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise _FileFailure(f"{label}: fichier UTF-16 illisible", label, "binary_file") from exc
        _wrong_encoding(ctx, label, "UTF-16")
        return text
    head = data[:65536]
    if (b"\x00" in head or head.startswith(_BINARY_MAGIC)
            or len(head) - len(head.translate(None, _CONTROL_BYTES)) > len(head) // 100):
        raise _FileFailure(f"{label}: fichier binaire, pas un texte", label, "binary_file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    text = data.decode("cp1252", errors="replace")
    _wrong_encoding(ctx, label, "cp1252")
    if "\ufffd" in text:
        ctx.query(file=label, rule="encoding_error",
                  message=f"{label}: {text.count(chr(0xFFFD))} octet(s) illisibles remplacés par « \ufffd ».")
    return text


def _wrong_encoding(ctx: ReadContext, label: str, found: str) -> None:
    ctx.query(file=label, rule="wrong_encoding", value=found,
              message=f"{label}: fichier en {found} au lieu d'UTF-8 (contrat): lu en {found}, "
                      f"à corriger dans l'export.")


def _lines(text: str) -> tuple[list[str], bool]:
    """Physical lines (any line end) and whether the text ended with a line break."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    complete = lines[-1] == ""
    if complete:
        lines.pop()
    return lines, complete


def _match(ctx: ReadContext, header: list[str], specs: list[ColumnSpec], label: str, cache: dict) -> dict[str, int]:
    """match_columns, once per distinct header: thousands of files share a few headers."""
    key = (id(specs), tuple(header))
    if key in cache:
        cols, notes = cache[key]
        ctx.queries.extend(dataclasses.replace(q, file=label) for q in notes)  # unknown columns
        return cols
    before = len(ctx.queries)
    try:
        cols = match_columns(ctx, [h[:MAX_NAME] for h in header], specs, label)
    except ImportFailure as failure:  # re-worded: only this file is lost, not the delivery
        column = failure.column
        if column in header:
            raise _FileFailure(f"{label}: colonne « {column} » en double", label, "duplicate_column",
                               column) from None
        raise _FileFailure(f"{label}: colonne obligatoire « {column} » absente", label, "missing_column",
                           column) from None
    cache[key] = (cols, ctx.queries[before:])
    return cols


def _table(ctx: ReadContext, path: Path, label: str, specs: list[ColumnSpec], cache: dict) -> _Table:
    """A tab-separated export: ``#`` lines skipped, first other line = header, no quoting."""
    lines, complete = _lines(_decode(ctx, path.read_bytes(), label))
    start = next((i for i, line in enumerate(lines) if line.strip() and not line.startswith("#")), None)
    if start is None:
        raise _FileFailure(f"{label}: aucune ligne d'en-tête", label, "missing_header")
    header = lines[start].split("\t")
    cols = _match(ctx, header, specs, label, cache)
    comments = [line for line in lines[:start] if line.startswith("#")]
    rows = []
    for i in range(start + 1, len(lines)):
        line = lines[i]
        if line.startswith("#"):
            comments.append(line)
        elif not line.strip():
            ctx.query(file=label, row=i + 1, rule="empty_row",
                      message=f"{label}: ligne {i + 1} vide ignorée.")
        else:
            rows.append((i + 1, line.split("\t")))
    return _Table(header, cols, rows, comments, complete)


def _check_width(c: Cells, table: _Table, fields: list[str], last: bool) -> None:
    width = len(table.header)
    if len(fields) == width:
        return
    if last and not table.complete and len(fields) < width:
        c.error(None, None, "truncated_file",
                f"Dernière ligne incomplète ({len(fields)} champs sur {width}) et pas de fin de ligne: "
                f"fichier coupé pendant le transfert ?")
    else:
        c.error(None, None, "wrong_field_count", f"{len(fields)} champs au lieu de {width} (en-tête).")


def _cell(table: _Table, fields: list[str], key: str) -> str | None:
    i = table.cols.get(key)
    return fields[i] if i is not None and i < len(fields) else None


def _name(table: _Table, key: str) -> str:
    return table.header[table.cols[key]]


_PLAIN_NUMBER = re.compile(r"[0-9]{1,15}(?:\.[0-9]{1,15})?")


def _number(c: Cells, column: str, raw, *, decimal_comma: bool = True) -> float | None:
    """Cells.number, with a fast path for the plain values clean files are made of.

    The fast path keeps every digit written (Cells rounds to 6 decimals, which would blur a
    0.00186916 noise allele); only odd spellings (decimal comma, spaces) go through Cells.
    """
    if type(raw) is float and math.isfinite(raw):
        return raw
    if type(raw) is str and _PLAIN_NUMBER.fullmatch(raw):
        return float(raw)
    return c.number(column, raw, decimal_comma=decimal_comma)


def _code(c: Cells, column: str, raw, mapping: dict, **options):
    """Cells.code, with a fast path for a value written exactly as the mapping spells it."""
    if raw in mapping:
        return mapping[raw]
    return c.code(column, raw, mapping, **options)


def _int(c: Cells, column: str, raw, *, upper: int = INT32_MAX, decimal_comma: bool = True) -> int | None:
    """A non-negative integer that fits its column (Int32 by default)."""
    if type(raw) is int and 0 <= raw <= upper:
        return raw
    if type(raw) is str and raw.isascii() and raw.isdigit() and len(raw) <= 9 and int(raw) <= upper:
        return int(raw)
    value = c.number(column, raw, integer=True, decimal_comma=decimal_comma)
    if value is not None and not 0 <= value <= upper:
        c.error(column, raw, "number_out_of_range", f"« {raw} » hors des bornes possibles ({column}).")
        return None
    return value


def _chromosome(text: str | None) -> str | None:
    """``7``, ``chr7``, ``07``, ``chrx`` -> ``7`` / ``X``; None when not a human chromosome."""
    if text is None:
        return None
    m = CHROMOSOME.match(text)
    if not m:
        return None
    name = m.group(1).upper()
    if name.isdigit():
        return str(int(name)) if 1 <= int(name) <= 22 else None
    return name


def _build_problem(text: str | None) -> str | None:
    """The build a text names when it is not hg19/GRCh37 (None: hg19 or no build named)."""
    if not text or HG19.search(text):
        return None
    m = BUILD.search(text)
    return m.group(1) if m else None


# --------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------

# manifest check -> the column it concerns
_STRUCTURAL_FIELD = {
    "wrong_field_count": None, "missing_case_no": "case_no", "missing_centre": "centre",
    "missing_patient_id": "local_id", "missing_sample_id": "sample_id", "missing_status": "status",
    "invalid_sample_id": "sample_id", "duplicate_case": "case_no", "duplicate_sample": "sample_id",
}  # fmt: skip
MANIFEST_COLUMNS = ("case_no", "centre", "local_id", "sample_id", "status")
# the accession names the files (chas/<sample_id>.segments.txt): a plain file-name stem
SAMPLE_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


def _structural_problems(raw: pl.DataFrame, width: int) -> list[tuple[int, str]]:
    """(record index, rule) of what makes a manifest row impossible to attach to a patient or to
    its files, check by check. A duplicated case or sample: every occurrence after the first, and
    the first too when the rows differ; the same patient on two rows is two samples, legitimate."""
    content = pl.struct([pl.col(c) for c in MANIFEST_COLUMNS]).hash()

    def unique(key: pl.Expr) -> pl.Expr:
        return ~(key.is_not_null() & key.is_duplicated()
                 & (~key.is_first_distinct() | (content.n_unique().over(key) > 1)))

    sample = pl.col("sample_id")
    ok = raw.select(
        _check("wrong_field_count", pl.col("_fields") == width),
        _check("missing_case_no", pl.col("case_no").is_not_null()),
        _check("missing_centre", pl.col("centre").is_not_null()),
        _check("missing_patient_id", pl.col("local_id").is_not_null()),
        _check("missing_sample_id", sample.is_not_null()),
        _check("missing_status", pl.col("status").is_not_null()),
        _check("invalid_sample_id", sample.is_null() | (sample.str.contains(SAMPLE_ID)
                                                        & ~sample.str.contains("..", literal=True))),
        _check("duplicate_case", unique(pl.col("case_no").str.replace(r"^0+(\d)", "$1"))),  # "007" is case 7
        _check("duplicate_sample", unique(sample)),
    )
    return [(i, rule) for rule in ok.columns for i in ok[rule].not_().arg_true().to_list()]


def _check(rule: str, ok: pl.Expr) -> pl.Expr:
    """A manifest check: True where the record passes, named after the rule of its query."""
    return ok.alias(rule)


_STRUCTURAL_MESSAGE = {
    "wrong_field_count": "nombre de champs différent de l'en-tête",
    "missing_case_no": "numéro de cas absent",
    "missing_centre": "centre absent: patient impossible à identifier",
    "missing_patient_id": "identifiant local absent: patient impossible à identifier",
    "missing_sample_id": "numéro d'échantillon absent: fichiers impossibles à rattacher",
    "invalid_sample_id": "numéro d'échantillon inutilisable comme nom de fichier (lettres, chiffres, ._- seulement)",
    "duplicate_case": "numéro de cas en double dans le manifeste",
    "duplicate_sample": "numéro d'échantillon en double dans le manifeste",
    "missing_status": "statut absent (ok ou not_contributory): état des analyses indéterminable",
}


def _read_manifest(ctx: ReadContext, path: Path) -> tuple[list[_Sample], int]:
    stop = "import du laboratoire arrêté (les données précédentes restent en place)"
    if not path.is_file():
        raise ImportFailure(f"{MANIFEST}: fichier absent de la livraison; {stop}.", MANIFEST)
    if leaves_folder(path.parent, path):
        raise ImportFailure(f"{MANIFEST}: lien vers un fichier hors du dossier de livraison, refusé; {stop}.",
                            MANIFEST)
    try:
        text = _decode(ctx, path.read_bytes(), MANIFEST)
    except _FileFailure as failure:
        raise ImportFailure(f"{failure}; {stop}.", MANIFEST) from None
    try:
        records = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:
        raise ImportFailure(f"{MANIFEST}: CSV illisible ({exc}); {stop}.", MANIFEST) from None
    if not records or not any(h.strip() for h in records[0]):
        raise ImportFailure(f"{MANIFEST}: aucune ligne d'en-tête; {stop}.", MANIFEST)
    header = records[0]
    cols = match_columns(ctx, [h[:MAX_NAME] for h in header], MANIFEST_SPECS, MANIFEST)
    data = []
    for i, record in enumerate(records[1:], start=2):  # row i as a spreadsheet shows it
        if not any(v.strip() for v in record):
            ctx.query(file=MANIFEST, row=i, rule="empty_row",
                      message=f"{MANIFEST}: ligne {i} vide ignorée.")
            continue
        data.append((i, record))
    if not data:
        raise ImportFailure(f"{MANIFEST}: en-tête sans aucun cas; {stop}.", MANIFEST)
    if not text.endswith(("\n", "\r")) and len(data[-1][1]) < len(header):
        raise ImportFailure(f"{MANIFEST}: dernière ligne incomplète (fichier coupé pendant le transfert); "
                            f"{stop}.", MANIFEST)

    def raw(record: list[str], key: str) -> str | None:
        """The cell, stripped; blank or a missing-value token ("NA", "?"...) -> None."""
        i = cols[key]
        value = record[i].strip() if i < len(record) else None
        return None if is_missing(value) else value

    raw_df = pl.DataFrame({"_fields": [len(rec) for _, rec in data],
                           **{key: [raw(rec, key) for _, rec in data] for key in MANIFEST_COLUMNS}},
                          schema={"_fields": pl.Int64, **{k: pl.String for k in MANIFEST_COLUMNS}})
    ctx.register_identifiers(HOSPITAL_NUMBER, raw_df["local_id"], header[cols["local_id"]])
    problems = _structural_problems(raw_df, len(header))
    bad_sample = {i for i, rule in problems if rule in ("missing_sample_id", "invalid_sample_id")}

    # A centre the registry does not know cannot be the patient's: its pseudonym would link the
    # case to nobody, so the case is kept unlinked and the laboratory is asked to correct it.
    known = {name for name, c in load_registry(Path(ctx.delivery_dir).parent.parent).items() if not c.laboratory}
    pids = []
    for row, record in data:
        centre, local_id = raw(record, "centre"), raw(record, "local_id")
        if centre and centre.strip().lower() not in known:
            ctx.query(file=MANIFEST, row=row, table="molecular_sample", row_id=f"molecular_sample:{MANIFEST}:{row}",
                      field=header[cols["centre"]], value=centre, rule="unknown_centre",
                      message=f"{MANIFEST}, ligne {row}: centre « {centre} » inconnu du registre "
                              f"({', '.join(sorted(known))}): cas conservé sans lien avec un patient.")
            pids.append(None)
        else:
            pids.append(pseudonym(ctx.pseudonym_key, centre, local_id) if centre and local_id else None)
    for index, rule in problems:
        row = data[index][0]
        key = _STRUCTURAL_FIELD.get(rule)
        value = raw(data[index][1], key) if key else None
        field = header[cols[key]] if key else None
        if rule == "wrong_field_count":  # the first column missing, or the first one beyond the header
            width = len(data[index][1])
            field = header[width] if width < len(header) else f"colonne {len(header) + 1}"
        ctx.query(file=MANIFEST, row=row, table="molecular_sample", row_id=f"molecular_sample:{MANIFEST}:{row}",
                  patient_id=pids[index], field=field,
                  value=IDENTIFIER_MASK if key == "local_id" and value is not None else value, rule=rule,
                  message=f"{MANIFEST}, ligne {row}: {_STRUCTURAL_MESSAGE[rule]}.")
    samples = []
    for index, (row, record) in enumerate(data):
        row_id = f"molecular_sample:{MANIFEST}:{row}"
        c = Cells(ctx, MANIFEST, None, row, "molecular_sample", row_id, pids[index])
        sample_id = raw(record, "sample_id")
        samples.append(_Sample(
            row=row, row_id=row_id,
            case_no=_int(c, header[cols["case_no"]], raw(record, "case_no")),
            patient_id=pids[index],
            sample_id=None if index in bad_sample else sample_id,
            status=_code(c, header[cols["status"]], raw(record, "status"), STATUS),
        ))
    return samples, len(data)


def _index_files(ctx: ReadContext, folder: Path) -> dict[str, dict[str, Path]]:
    """The sample files of each assay, by accession; anything else -> ``unknown_file``."""
    found: dict[str, dict[str, Path]] = {assay: {} for assay in ASSAYS}
    by_folder = {sub: (assay, suffix) for assay, (sub, suffix, _) in ASSAYS.items()}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.name == MANIFEST:
            continue  # hidden files (.DS_Store...) are the workstation's, not the export's
        if leaves_folder(folder, entry):
            _outside_file(ctx, entry.name)
            continue
        if entry.is_dir() and entry.name in by_folder:
            assay, suffix = by_folder[entry.name]
            for path in sorted(entry.iterdir()):
                stem = path.name[: -len(suffix)] if path.name.endswith(suffix) else ""
                if path.name.startswith("."):
                    continue
                # inside a folder already checked, only a link can lead out (resolving all costs seconds)
                if path.is_symlink() and leaves_folder(folder, path):
                    _outside_file(ctx, f"{entry.name}/{path.name}")
                    continue
                if path.is_file() and stem:
                    found[assay][stem] = path
                    continue
                _unknown_file(ctx, f"{entry.name}/{path.name}")
        else:
            _unknown_file(ctx, entry.name)
    return found


def _outside_file(ctx: ReadContext, label: str) -> None:
    ctx.query(file=label, rule="file_outside_delivery",
              message=f"{label}: lien symbolique vers un emplacement hors du dossier de livraison: fichier "
                      f"refusé, non lu (livrer le fichier lui-même).")


def _unknown_file(ctx: ReadContext, label: str) -> None:
    ctx.query(file=label, rule="unknown_file",
              message=f"{label}: fichier inattendu dans la livraison du laboratoire, ignoré.")


# --------------------------------------------------------------------------------------------
# ChAS segments
# --------------------------------------------------------------------------------------------


def _read_chas(ctx, path: Path, label: str, sample_id: str, patient_id, out: list[dict], cache: dict) -> int:
    table = _table(ctx, path, label, CHAS_SPECS, cache)
    file_build = next((b for b in map(_build_problem, table.comments) if b), None)
    cn_col, type_col, loc_col = _name(table, "cn_state"), _name(table, "type"), _name(table, "full_location")
    named = False
    for n, (line, fields) in enumerate(table.rows):
        row_id = f"cn_segment:{label}:{line}"
        c = Cells(ctx, label, None, line, "cn_segment", row_id, patient_id)
        _check_width(c, table, fields, n == len(table.rows) - 1)

        raw_type = _cell(table, fields, "type")
        kind = _code(c, type_col, raw_type, SEGMENT_TYPES)
        if is_missing(raw_type):
            c.error(type_col, raw_type, "missing_segment_type", "Type de segment absent (Gain, Loss ou LOH).")

        raw_location = _cell(table, fields, "full_location")
        chrom = start = end = None
        m = LOCATION.match(raw_location) if raw_location is not None else None
        if m:
            chrom = _chromosome(m.group(1))
            start, end = (int(d) if d and len(d) <= 11 else None
                          for d in (re.sub(r"\D", "", g) for g in m.group(2, 3)))
        if chrom is None or start is None or end is None or not 1 <= start <= end <= POSITION_MAX:  # 1-based
            chrom = start = end = None
            rule = "missing_location" if is_missing(raw_location) else "invalid_location"
            c.error(loc_col, raw_location, rule,
                    f"Localisation « {raw_location} » illisible (attendu chrN:début-fin, début ≤ fin).")

        if "chromosome" in table.cols:
            raw_chrom = _cell(table, fields, "chromosome")
            stated = _chromosome(raw_chrom)
            if stated is None and not is_missing(raw_chrom):
                c.error(_name(table, "chromosome"), raw_chrom, "invalid_chromosome",
                        f"Chromosome « {raw_chrom} » inconnu.")
            elif stated is not None and chrom is not None and stated != chrom:
                c.error(_name(table, "chromosome"), raw_chrom, "chromosome_mismatch",
                        f"Chromosome « {raw_chrom} » différent de la localisation « {raw_location} ».")
            elif chrom is None:
                chrom = stated  # the location was unreadable; the chromosome column still says where

        raw_cn = _cell(table, fields, "cn_state")
        cn = _number(c, cn_col, raw_cn)
        if cn is not None and cn < 0:
            c.error(cn_col, raw_cn, "cn_out_of_range", f"État de copie négatif « {raw_cn} ».")
            cn = None
        _check_cn(c, kind, cn, raw_cn, chrom, cn_col)

        raw_nomenclature = _cell(table, fields, "nomenclature")
        iscn = ISCN_BUILD.search(raw_nomenclature) if raw_nomenclature else None
        build = (None if HG19.search(iscn.group(1)) else iscn.group(1).strip() or "?") if iscn else file_build
        if build is not None:
            where = _name(table, "nomenclature") if iscn else "#"
            c.error(where, raw_nomenclature if iscn else build, "genome_build",
                    f"Segment décrit en {build}, pas en hg19 (contrat): coordonnées non comparables.")

        if not named and "file" in table.cols:
            raw_file = (_cell(table, fields, "file") or "").strip()
            stem = re.sub(r"\.(os|cy)?chp$", "", raw_file, flags=re.IGNORECASE)
            if raw_file and stem != sample_id:
                named = True  # once per file: the whole file is concerned
                c.error(_name(table, "file"), raw_file, "sample_name_mismatch",
                        message=f"Colonne File « {raw_file} » ≠ échantillon « {sample_id} » du nom de fichier: "
                                f"vérifier que le fichier est le bon.")

        out.append({"sample_id": sample_id, "chrom": chrom, "start_bp": start, "end_bp": end, "cn_state": cn,
                    "segment_type": kind, "row_id": row_id, "source_file": label, "source_sheet": None,
                    "source_row": line})
    return len(table.rows)


def _check_cn(c: Cells, kind: str | None, cn: float | None, raw_cn, chrom: str | None, column: str) -> None:
    """CN state against Type (oncoscanR's categories; X/Y carry one copy in men)."""
    if kind in ("Gain", "Loss") and is_missing(raw_cn):
        c.error(column, raw_cn, "missing_cn_state", f"État de copie absent pour un segment {kind}.")
        return
    if kind is None or cn is None:
        return
    gain_floor = 1.0 if chrom in ("X", "Y") else 2.0
    ok = {"Gain": cn > gain_floor, "Loss": cn < 2.0, "LOH": cn == 2.0}[kind]
    if not ok:
        expected = {"Gain": f"> {gain_floor:g}", "Loss": "< 2", "LOH": "vide (LOH neutre en copies)"}[kind]
        c.error(column, raw_cn, "cn_type_mismatch",
                f"État de copie {raw_cn} incohérent avec le type {kind} (attendu {expected}).")


# --------------------------------------------------------------------------------------------
# Archer fusions
# --------------------------------------------------------------------------------------------


def _read_archer(ctx, path: Path, label: str, sample_id: str, patient_id, out: list[dict], cache: dict) -> int:
    table = _table(ctx, path, label, ARCHER_SPECS, cache)
    for n, (line, fields) in enumerate(table.rows):
        row_id = f"fusion:{label}:{line}"
        c = Cells(ctx, label, None, line, "fusion", row_id, patient_id)
        _check_width(c, table, fields, n == len(table.rows) - 1)

        raw_genes = _cell(table, fields, "genes")
        genes = [g.strip() for g in re.split(r"::|:", raw_genes or "")]
        if len(genes) != 2 or not all(genes):
            rule = "missing_fusion_genes" if is_missing(raw_genes) else "invalid_fusion_genes"
            c.error(_name(table, "genes"), raw_genes, rule, f"Gènes « {raw_genes} » illisibles (attendu 5':3').")
            genes = [None, None]

        raw_bp = _cell(table, fields, "breakpoints")
        breakpoints: list[str | None] = [None, None]
        if not is_missing(raw_bp):
            parts = [BREAKPOINT.match(p) for p in raw_bp.split(";")]
            if len(parts) == 2 and all(parts):
                breakpoints = [f"chr{m.group(1).upper()}:{int(m.group(2).replace(',', ''))}" for m in parts]
            else:
                c.error(_name(table, "breakpoints"), raw_bp, "invalid_breakpoint",
                        f"Points de cassure « {raw_bp} » illisibles (attendu chrN:pos;chrN:pos).")

        percent = None
        if "percent_gsp2_reads" in table.cols:
            column, raw_pct = _name(table, "percent_gsp2_reads"), _cell(table, fields, "percent_gsp2_reads")
            percent = _number(c, column, raw_pct.strip().removesuffix("%") if raw_pct else raw_pct)
            if percent is not None and not 0 <= percent <= 100:
                c.error(column, raw_pct, "number_out_of_range", f"Pourcentage « {raw_pct} » hors de 0-100.")
                percent = None
        strong = None
        if "strong_evidence" in table.cols:
            strong = _code(c, _name(table, "strong_evidence"), _cell(table, fields, "strong_evidence"),
                            STRONG_EVIDENCE, strict_case=False)

        out.append({
            "sample_id": sample_id, "gene_5p": genes[0], "gene_3p": genes[1],
            "breakpoint_5p": breakpoints[0], "breakpoint_3p": breakpoints[1],
            "reads": _int(c, _name(table, "reads"), _cell(table, fields, "reads"), decimal_comma=False),
            "unique_start_sites": _int(c, _name(table, "unique_start_sites"),
                                       _cell(table, fields, "unique_start_sites"), decimal_comma=False),
            "percent_gsp2_reads": percent, "strong_evidence": strong,
            "row_id": row_id, "source_file": label, "source_sheet": None, "source_row": line,
        })  # fmt: skip
    return len(table.rows)


# --------------------------------------------------------------------------------------------
# TVC / Ion Reporter VCF
# --------------------------------------------------------------------------------------------

_MISMATCH = object()  # a Number=A value whose length is not the number of ALT alleles


def _vcf_parser(lines: list[str], samples: int, cache: dict, label: str):
    """vcfpy's record parser for these ``##INFO/##FORMAT/##FILTER`` definitions.

    Building a vcfpy header costs ~3 ms (its mapping parser reads every definition character by
    character) against ~1 ms for a panel's records; the lab's files share their definitions, so
    the parser is built once per distinct set. Other meta lines (dates, contigs, sample names)
    do not change how a record parses; the reader checks the ones it needs itself.
    """
    definitions = tuple(line for line in lines if line.startswith(("##fileformat", "##INFO", "##FORMAT", "##FILTER")))
    key = (definitions, samples)
    if key not in cache:
        columns = VCF_COLUMNS + (["FORMAT"] + [f"SAMPLE{i}" for i in range(samples)] if samples else [])
        head = "\n".join([*definitions, "\t".join(columns)]) + "\n"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                parser = vcfpy.Reader.from_stream(io.StringIO(head)).parser
        except Exception as exc:
            raise _FileFailure(f"{label}: en-tête VCF illisible ({type(exc).__name__})", label,
                               "invalid_vcf_header") from exc
        # Ion Reporter writes some forty INFO fields a record and vcfpy converts every one (most
        # of the read's time); only the fields the reader uses are handed to it.
        records = parser._record_parser  # vcfpy pinned in constraints.txt
        parse_info = records._parse_info
        records._parse_info = lambda text, alts: parse_info(
            ";".join(e for e in text.split(";") if e.partition("=")[0] in USED_INFO) or ".", alts)
        cache[key] = parser
    return cache[key]


def _read_vcf(ctx, path: Path, label: str, sample_id: str, patient_id, out: list[dict], cache: dict) -> int:
    lines, complete = _lines(_decode(ctx, path.read_bytes(), label))
    if not lines[0].startswith("##fileformat=VCF"):
        raise _FileFailure(f"{label}: pas un VCF (première ligne ##fileformat=VCF… absente)", label, "invalid_vcf")
    top = next((i for i, line in enumerate(lines) if not line.startswith("##")), len(lines))
    columns = lines[top].split("\t") if top < len(lines) else []
    if (columns[:8] != VCF_COLUMNS or len(columns) == 9 or (len(columns) > 9 and columns[8] != "FORMAT")):
        raise _FileFailure(f"{label}: ligne #CHROM absente ou mal formée", label, "invalid_vcf", "#CHROM")
    meta = lines[:top]
    parser = _vcf_parser(meta, len(columns) - 9 if len(columns) > 9 else 0, cache, label)

    if len(columns) > 9 and columns[9].strip() != sample_id:
        ctx.query(file=label, row=top + 1, patient_id=patient_id, field="#CHROM", value=columns[9],
                  rule="sample_name_mismatch",
                  message=f"Échantillon « {columns[9]} » dans le VCF ≠ « {sample_id} » du nom de fichier: "
                          f"vérifier que le fichier est le bon.")
    reference = next((line.split("=", 1)[1] for line in meta if line.startswith("##reference=")), None)
    build = None
    if reference is None:
        ctx.query(file=label, patient_id=patient_id, field="##reference", rule="missing_reference",
                  message=f"{label}: pas de ligne ##reference: génome hg19 (contrat) non vérifiable.")
    elif not HG19.search(reference):
        build = reference

    records = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # vcfpy warns on undeclared fields; the values still parse
        body = [(i + 1, line) for i, line in enumerate(lines) if i > top]
        for n, (line_no, line) in enumerate(body):
            if not line.strip():
                ctx.query(file=label, row=line_no, rule="empty_row",
                          message=f"{label}: ligne {line_no} vide ignorée.")
                continue
            if line.startswith("#"):
                ctx.query(file=label, row=line_no, rule="misplaced_header_line", value=line,
                          message=f"{label}: ligne d'en-tête {line_no} après #CHROM, ignorée.")
                continue
            records += 1
            last = n == len(body) - 1 and not complete
            try:
                record = parser.parse_line(line)
            except Exception as exc:
                _broken_record(ctx, label, sample_id, patient_id, line_no, line, exc, last, out)
                continue
            _record_rows(ctx, label, sample_id, patient_id, line_no, record, build, out, cache)
    if not records:
        ctx.query(file=label, patient_id=patient_id, rule="no_variant_records",
                  message=f"{label}: aucun enregistrement; un VCF de panel hotspot en contient toujours "
                          f"(appels de référence): export incomplet ?")
    return records


def _broken_record(ctx, label, sample_id, patient_id, line_no, line, exc, last, out) -> None:
    """A record vcfpy cannot parse: kept as a row of what can be read, with an error query."""
    fields = line.split("\t")
    row_id = f"variant:{label}:{line_no}:1"

    def field(i: int) -> str | None:
        return fields[i][:MAX_TEXT] if i < len(fields) and fields[i] not in ("", ".") else None

    pos = field(1)
    c = Cells(ctx, label, None, line_no, "variant", row_id, patient_id)
    rule = "truncated_file" if last else "unparseable_record"
    c.error(None, line, rule, f"Enregistrement VCF illisible ({type(exc).__name__}: {str(exc)[:120]})"
            + (" — dernière ligne sans fin de ligne: fichier coupé ?" if last else "") + ".")
    out.append({"sample_id": sample_id, "chrom": _vcf_chrom(field(0)),
                "pos": int(pos) if pos and pos.isdigit() and len(pos) <= 11 else None,
                "ref": field(3), "alt": field(4), "filter": field(6), "reportable": None,
                "row_id": row_id, "source_file": label, "source_sheet": None, "source_row": line_no})


def _vcf_chrom(text: str | None) -> str | None:
    return text[3:] if text and text[:3].lower() == "chr" else text


def _scalar(value):
    return value[0] if isinstance(value, list) and value else (None if isinstance(value, list) else value)


def _per_allele(value, i: int, n: int):
    """The ``i``-th of a Number=A value (vcfpy gives a list; an undeclared field a string)."""
    if value is None:
        return None
    if isinstance(value, str) and "," in value:
        value = value.split(",")
    if not isinstance(value, list):
        value = [value]
    if len(value) != max(n, 1):
        return _MISMATCH
    return value[i]


def _annotation_entries(value, cache: dict) -> list[dict] | None:
    """Ion Reporter's FUNC, a Python literal that vcfpy split on its commas (Number=.).

    Parsed once per distinct text (a panel's hotspots come back in every file); the entries
    are only read, never changed, so sharing them is safe.
    """
    if value is None:
        return None
    text = ",".join("." if v is None else str(v) for v in value) if isinstance(value, list) else str(value)
    key = ("FUNC", text)
    if key not in cache:
        if len(text) > 100_000:
            raise ValueError("annotation trop longue")
        parsed = ast.literal_eval(text)  # literals only: never evaluates code
        parsed = [parsed] if isinstance(parsed, dict) else parsed
        if not isinstance(parsed, (list, tuple)):
            raise ValueError("pas une liste")
        cache[key] = [e for e in parsed if isinstance(e, dict)]
    return cache[key]


def _annotation(entries: list[dict], alt: str | None, i: int, n: int) -> dict | None:
    hits = [e for e in entries if str(e.get("origAlt", "")) == alt]
    if hits:
        return hits[0]
    if not any("origAlt" in e for e in entries) and len(entries) == n:
        return entries[i]  # no allele key: one entry per ALT, in order
    if n == 1 and len(entries) == 1:
        return entries[0]  # a normalised indel whose origAlt differs from ALT
    return None


def _text(value) -> str | None:
    if isinstance(value, (list, tuple)):
        value = ",".join(str(v) for v in value)
    if value is None:
        return None
    text = str(value).strip()
    return text if text and text != "." else None


def _genotype(value) -> tuple[str | None, set[int] | None]:
    """GT text and the alleles it calls (None: no call)."""
    gt = _text(value)
    if gt is None:
        return None, None
    alleles = re.split(r"[/|]", gt)
    if any(not a.isdigit() for a in alleles):
        return gt, None  # "./." or a half call
    return gt, {int(a) for a in alleles}


def _record_rows(ctx, label, sample_id, patient_id, line_no, record, build, out, cache: dict) -> None:
    """One canonical row per ALT allele of a parsed record."""
    info = record.INFO
    call = getattr(record.calls[0], "data", {}) if record.calls else {}
    gt, called = _genotype(call.get("GT"))
    alts = [getattr(a, "value", None) or str(a) for a in record.ALT]
    n = len(alts)
    filters = list(record.FILTER or [])
    filter_text = ";".join(filters) or None
    reasons = [str(v) for v in (info.get("FR") if isinstance(info.get("FR"), list) else [info.get("FR")])
               if v not in (None, ".", "")]
    if filter_text and filters != ["PASS"] and reasons:
        filter_text = f"{filter_text} (FR={','.join(reasons)})"

    rows = []
    for i, alt in enumerate(alts or [None]):
        row_id = f"variant:{label}:{line_no}:{i + 1}"
        c = Cells(ctx, label, None, line_no, "variant", row_id, patient_id)

        def allele(key: str, source=info, c=c, i=i):
            value = _per_allele(source.get(key), i, n)
            if value is _MISMATCH:
                c.error(key, source.get(key), "allele_count_mismatch",
                        f"{key}: nombre de valeurs différent du nombre d'allèles ALT ({n}).")
                return None
            return value

        vaf = _number(c, "AF", allele("AF") if "AF" in info else allele("AF", call), decimal_comma=False)
        if vaf is None and "AF" not in info and "AF" not in call:
            fao = _number(c, "FAO", allele("FAO") if "FAO" in info else allele("FAO", call), decimal_comma=False)
            fdp = _number(c, "FDP", _scalar(info.get("FDP", call.get("FDP"))), decimal_comma=False)
            vaf = round(fao / fdp, 6) if fao is not None and fdp else None
        if vaf is not None and not 0 <= vaf <= 1:
            c.error("AF", vaf, "vaf_out_of_range", f"Fréquence allélique {vaf} hors de 0-1 (AF est une fraction).")
            vaf = None
        gmaf = _number(c, "GMAF", allele("GMAF"), decimal_comma=False)
        if gmaf is not None and not 0 <= gmaf <= 1:
            c.error("GMAF", gmaf, "number_out_of_range", f"GMAF {gmaf} hors de 0-1.")
            gmaf = None
        # Flow-evaluator depth first (the AF denominator), raw read depth when it is absent.
        depth_key, raw_depth = next(((k, v) for k, src in (("FDP", info), ("FDP", call), ("DP", info), ("DP", call))
                                     if (v := _scalar(src.get(k))) is not None), (None, None))
        depth = None if depth_key is None else _int(c, depth_key, raw_depth, decimal_comma=False)

        if build is not None:
            c.error("##reference", build, "genome_build",
                    f"VCF aligné sur « {build} », pas sur hg19 (contrat): coordonnées non comparables.")
        pos = record.POS if 1 <= record.POS <= POSITION_MAX else None  # VCF positions are 1-based
        if pos is None:
            c.error("POS", record.POS, "number_out_of_range",
                    f"Position {record.POS} impossible (une position VCF commence à 1).")
        chrom = _chromosome(record.CHROM)  # a variant nowhere in the genome is no variant
        if chrom is None:
            c.error("#CHROM", record.CHROM, "missing_location" if is_missing(record.CHROM) else "invalid_location",
                    f"Chromosome « {record.CHROM or ''} » illisible (attendu chr1-chr22, chrX, chrY).")

        if filters != ["PASS"]:
            reason = "filtered"
        elif called is None:
            reason = "no_call"
        elif called <= {0} or alt is None or vaf == 0:
            reason = "reference_call"
        elif gmaf is not None and gmaf >= POLYMORPHISM_GMAF:
            reason = "polymorphism"
        elif vaf is None:
            reason = "unknown"
        elif vaf < VAF_FLOOR:
            reason = "low_vaf"
        elif i + 1 not in called:
            reason = "no_call"
        else:
            reason = None
        ref = record.REF
        for name, allele_text in (("REF", ref), ("ALT", alt)):
            if allele_text is not None and len(allele_text) > MAX_ALLELE_BP:
                c.error(name, allele_text, "allele_too_long",
                        f"Allèle {name} de {len(allele_text)} bases : plus long que tout amplicon du panel "
                        f"(maximum {MAX_ALLELE_BP} bases) ; export VCF à vérifier.")
        if ref is not None and len(ref) > MAX_ALLELE_BP:
            ref = ref[:MAX_ALLELE_BP] + "…"
        if alt is not None and len(alt) > MAX_ALLELE_BP:
            alt = alt[:MAX_ALLELE_BP] + "…"
        rows.append((c, {
            "sample_id": sample_id, "chrom": chrom, "pos": pos, "ref": ref, "alt": alt,
            "vaf": vaf, "depth": depth, "gmaf": gmaf, "filter": filter_text, "genotype": gt,
            "reportable": None if reason == "unknown" else reason is None,
            "exclusion_reason": None if reason == "unknown" else reason,
            "row_id": row_id, "source_file": label, "source_sheet": None, "source_row": line_no,
        }))  # fmt: skip

    try:
        entries = _annotation_entries(info.get("FUNC"), cache)
    except Exception as exc:  # SyntaxError, ValueError, MemoryError, RecursionError...
        rows[0][0].error("FUNC", _text(info.get("FUNC")), "unparseable_annotation",
                         f"Annotation FUNC illisible ({type(exc).__name__}): gène et HGVS absents.")
        entries = None
    for i, (c, row) in enumerate(rows):
        annotation = _annotation(entries, row["alt"], i, n) if entries is not None else None
        if entries and annotation is None:
            c.error("FUNC", row["alt"], "unmatched_annotation",
                    message=f"Aucune entrée FUNC pour l'allèle « {row['alt']} »: gène et HGVS absents.")
        annotation = annotation or {}
        row.update(gene=_text(annotation.get("gene")), transcript=_text(annotation.get("transcript")),
                   hgvs_c=_text(annotation.get("coding")), hgvs_p=_text(annotation.get("protein")),
                   function=_text(annotation.get("function")))
        out.append(row)


# assay -> (reader of one file, canonical table it feeds)
READERS: dict[str, tuple[Callable, str]] = {
    "cn_assay": (_read_chas, "cn_segment"),
    "ngs_assay": (_read_vcf, "variant"),
    "fusion_assay": (_read_archer, "fusion"),
}
