"""``clms-etl synth``: write the deliveries of every centre and of the laboratory.

Layout (``centre_exports.md``)::

    DIR/<centre>/<YYYY-MM-DD>/...      one folder per centre and delivery
    DIR/molecular/<YYYY-MM-DD>/...     the laboratory
    DIR/centres.toml                   only for scale runs: the extra centres and their formats
    DIR/_truth/defects.csv             only with --defects: the truth manifest

Seeds: every centre draws from its own generator derived from (seed, centre), so the same
seed gives byte-identical files whatever the order or the number of processes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from clms_etl.centres import centre_formats
from clms_etl.synth import defects as defects_mod
from clms_etl.synth.truth import Truth
from clms_etl.synth.twin import CENTRE_SIZES as TWIN_CENTRES
from clms_etl.synth.twin import build_twin
from clms_etl.vocabulary import LABORATORY

FORMATS = centre_formats()  # the packaged centres' formats; a scale centre reuses one of them


def format_module(fmt: str, drop_folder: Path | None = None):
    """The writer of ``fmt``: its module ``clms_etl.synth.formats.<fmt>``, else the one derived
    from its declaration (``<drop_folder>/formats/<fmt>.toml`` or the packaged one)."""
    try:
        return importlib.import_module(f"clms_etl.synth.formats.{fmt}")
    except ModuleNotFoundError as missing:
        if missing.name != f"clms_etl.synth.formats.{fmt}":
            raise
    from clms_etl.synth.formats.declared import declared_format

    declared = declared_format(fmt, drop_folder)
    if declared is None:
        raise ValueError(f"format {fmt!r}: no declaration formats/{fmt}.toml and no writer module")
    return declared


def centre_rng(seed: int, *names: str) -> np.random.Generator:
    digest = hashlib.sha256(":".join([str(seed), *names]).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


@dataclass
class SynthResult:
    out_dir: Path
    delivery_date: dt.date
    files: list[Path] = field(default_factory=list)
    patients: dict[str, int] = field(default_factory=dict)
    defects: pl.DataFrame | None = None
    truth: Truth | None = None


ProgressFn = Callable[[str, int], None]


def generate(
    out_dir: Path,
    seed: int = 0,
    defect_rate: float = 0.0,
    patients: int | None = None,
    centres: int | None = None,
    delivery_date: dt.date | None = None,
    progress: ProgressFn | None = None,
    workers: int = 2,
    chunk_size: int | None = None,
) -> SynthResult:
    """Write the twin (default) or a scale cohort of ``patients`` over ``centres`` centres."""
    delivery_date = delivery_date or dt.date.today()
    out_dir = Path(out_dir)
    if patients is None:
        return _generate_twin(out_dir, seed, defect_rate, delivery_date, progress)
    from clms_etl.synth.scale import generate_scale

    from clms_etl.synth.scale import CHUNK

    return generate_scale(out_dir, seed, patients, centres or 4, defect_rate, delivery_date, progress, workers,
                          chunk_size or CHUNK)


def _generate_twin(out_dir, seed, defect_rate, delivery_date, progress) -> SynthResult:
    truth = build_twin(seed)
    result = SynthResult(out_dir, delivery_date, truth=truth)
    manifest: list[defects_mod.Defect] = []
    for centre in TWIN_CENTRES:
        part = truth.for_centre(centre)
        files, planted = write_centre(out_dir, centre, centre, part, seed, defect_rate, delivery_date)
        result.files += files
        manifest += planted
        result.patients[centre] = part.patient.height
        if progress:
            progress(centre, part.patient.height)
    result.files += write_molecular(out_dir, seed, delivery_date, truth.extras["molecular_links"])
    if progress:
        progress(LABORATORY, len(truth.extras["molecular_links"]))
    if defect_rate > 0:
        result.defects = write_manifest(out_dir, manifest)
    return result


def write_centre(out_dir: Path, centre: str, fmt_name: str, truth: Truth, seed: int, defect_rate: float,
                 delivery_date: dt.date, chunks: list[Truth] | None = None) -> tuple[list[Path], list]:
    """Render one centre (optionally streamed chunk by chunk) and plant its defects."""
    fmt = format_module(fmt_name, out_dir)
    rng = centre_rng(seed, centre)
    defect_rng = centre_rng(seed, centre, "defects")
    writer = fmt.writer(out_dir / centre / delivery_date.isoformat(), delivery_date)
    manifest: list[defects_mod.Defect] = []
    offsets: dict[tuple, int] = {}
    first_row = 0
    for chunk in chunks or [truth]:
        tables, planted = _render_with_defects(centre, fmt, chunk, rng, defect_rng, defect_rate, first_row)
        for d in planted:
            d.row += offsets.get((d.file, d.sheet), 0)
            # formats that name a file by its delivery date render a placeholder
            d.file = d.file.replace("<date>", delivery_date.isoformat())
        manifest += planted
        for t in tables:
            offsets[(t.file, t.sheet)] = offsets.get((t.file, t.sheet), 0) + len(t.rows)
        writer.append(tables)
        first_row += chunk.patient.height
    return writer.close(), manifest


def _render_with_defects(centre, fmt, truth, rng, defect_rng, rate, first_row):
    if rate <= 0:
        return fmt.render(truth, rng, first_row), []
    n = max(1, round(rate * truth.patient.height))
    kinds = defects_mod.kinds_for(n, defect_rng)
    clinical = [k for k in kinds if k in defects_mod.CLINICAL_KINDS]
    damaged, planned = defects_mod.plan_clinical(truth, fmt, clinical, defect_rng)
    state = rng.bit_generator.state
    clean = fmt.render(truth, rng, first_row)
    rng.bit_generator.state = state  # same draws, so the two renders differ only by the defects
    tables = fmt.render(damaged, rng, first_row)
    planted = defects_mod.locate_planned(centre, fmt, tables, planned, clean)
    taken = {p.patient_key for p in planned}
    formats = [k for k in kinds if k in defects_mod.FORMAT_KINDS]
    planted += defects_mod.plant_format_defects(centre, fmt, tables, formats, defect_rng, taken)
    return tables, planted


def write_molecular(out_dir: Path, seed: int, delivery_date: dt.date, links: dict[int, tuple[str, str]],
                    cases=None) -> list[Path]:
    from clms_etl.synth import molecular

    rng = centre_rng(seed, LABORATORY)
    cases = cases if cases is not None else molecular.twin_cases(rng)
    return molecular.write_lab_delivery(out_dir / LABORATORY / delivery_date.isoformat(), cases, links, rng)


def write_manifest(out_dir: Path, manifest: list) -> pl.DataFrame:
    frame = defects_mod.manifest_frame(manifest)
    path = out_dir / "_truth" / "defects.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_csv(path)
    return frame

