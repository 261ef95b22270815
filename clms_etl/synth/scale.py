"""Scale cohorts for benchmarks: many centres reusing the four formats, streamed to disk.

Patients are bootstrapped from the twin patients *of the same format* (so every chart stays
coherent and expressible in its format), each moved in time by its own shift and given a
new identity. Chunks of :data:`CHUNK` patients are rendered and appended one after the other,
so memory stays bounded whatever the size; centres are spread over worker processes.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl

from clms_etl.synth.generate import SynthResult, centre_rng, write_centre, write_manifest, write_molecular
from clms_etl.synth.identities import IdentityFactory
from clms_etl.synth.truth import Truth
from clms_etl.synth.twin import build_twin
from clms_etl.centres import centre_formats

CHUNK = 20_000
MAX_SHIFT_DAYS = 1500
_ID_SCHEME = {"nice": ("", 10_000_000), "montpellier": ("34", 10_000_000), "lyon": ("69", 1_000_000), "nimes": ("D", 10_000)}


def scale_centres(n: int) -> list[tuple[str, str]]:
    """(centre, format): the four real centres first, then ``centre05-nice``, ``centre06-montpellier``…"""
    formats = centre_formats()  # the packaged centres, each named after its format
    out = [(c, c) for c in formats[: min(n, len(formats))]]
    for i in range(len(formats), n):
        fmt = formats[i % len(formats)]
        out.append((f"centre{i + 1:02d}-{fmt}", fmt))
    return out


def scale_local_id(fmt: str, j: int) -> str:
    prefix, base = _ID_SCHEME[fmt]
    return f"{prefix}{base + j}"


def centres_toml(centres: list[tuple[str, str]]) -> str:
    lines = ["# Centres of this drop folder and the format each delivers in.", ""]
    for centre, fmt in centres:
        lines += [f'[centres."{centre}"]', f'format = "{fmt}"', ""]
    return "\n".join(lines)


def generate_scale(out_dir: Path, seed: int, patients: int, n_centres: int, defect_rate: float,
                   delivery_date: dt.date, progress, workers: int, chunk_size: int = CHUNK) -> SynthResult:
    centres = scale_centres(n_centres)
    sizes = [patients // n_centres + (1 if i < patients % n_centres else 0) for i in range(n_centres)]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "centres.toml").write_text(centres_toml(centres), encoding="utf-8")
    result = SynthResult(out_dir, delivery_date)
    manifest = []
    jobs = [(out_dir, c, f, n, seed, defect_rate, delivery_date, chunk_size) for (c, f), n in zip(centres, sizes)]
    # spawn, not fork: forking a process whose polars thread pool holds a lock deadlocks the child
    with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=multiprocessing.get_context("spawn")) as pool:
        for (centre, _), (files, planted, n) in zip(centres, pool.map(_write_scale_centre, jobs)):
            result.files += files
            manifest += planted
            result.patients[centre] = n
            if progress:
                progress(centre, n)
    result.files += _write_scale_molecular(out_dir, seed, delivery_date, centres, sizes, patients)
    if defect_rate > 0:
        result.defects = write_manifest(out_dir, manifest)
    return result


def _write_scale_centre(job):
    out_dir, centre, fmt, n, seed, defect_rate, delivery_date, chunk_size = job
    twin = build_twin(seed).for_centre(fmt)
    rng = centre_rng(seed, centre, "bootstrap")
    identities = IdentityFactory(rng, pool_size=400)

    def chunks():
        for start in range(0, n, chunk_size):
            yield bootstrap_chunk(twin, centre, fmt, start, min(chunk_size, n - start), rng, identities)

    files, planted = write_centre(out_dir, centre, fmt, None, seed, defect_rate, delivery_date, chunks=chunks())
    return files, planted, n


def bootstrap_chunk(twin: Truth, centre: str, fmt: str, start: int, size: int,
                    rng: np.random.Generator, identities: IdentityFactory) -> Truth:
    src = twin.patient
    pick = rng.integers(0, src.height, size)
    shift = rng.integers(-MAX_SHIFT_DAYS, MAX_SHIFT_DAYS + 1, size)
    sexes = src["sex"].to_numpy()[pick]
    names = [identities.name(s) for s in sexes]
    local_ids = [scale_local_id(fmt, start + j) for j in range(size)]
    mapping = pl.DataFrame(
        {
            "_i": np.arange(size),
            "src_key": src["patient_key"].to_numpy()[pick],
            "patient_key": [f"{centre}:{x}" for x in local_ids],
            "local_id": local_ids,
            "first_name": [f for f, _ in names],
            "last_name": [l for _, l in names],
            "_shift": shift,
        }
    ).with_columns(pl.duration(days=pl.col("_shift")).alias("_shift"))

    def moved(frame: pl.DataFrame, date_cols: list[str], order: list[str]) -> pl.DataFrame:
        joined = mapping.select("_i", "src_key", "patient_key", "_shift").join(
            frame.rename({"patient_key": "src_key"}), on="src_key", how="inner"
        )
        return (
            joined.with_columns([(pl.col(c) + pl.col("_shift")).alias(c) for c in date_cols])
            .sort(["_i", *order])
            .select(frame.columns)
        )

    patient = _patients(mapping, src, centre)
    return Truth(
        patient,
        moved(twin.tumour, [], []),
        moved(twin.surgery, ["surgery_date"], ["surgery_no"]),
        moved(twin.event, ["event_date"], ["event_no"]),
    )


def _patients(mapping: pl.DataFrame, src: pl.DataFrame, centre: str) -> pl.DataFrame:
    base = src.rename({"patient_key": "src_key"}).drop("local_id", "first_name", "last_name", "centre")
    return (
        mapping.join(base, on="src_key", how="left")
        .sort("_i")
        .with_columns(
            pl.lit(centre).alias("centre"),
            (pl.col("birth_date") + pl.col("_shift")).alias("birth_date"),
            (pl.col("diagnosis_date") + pl.col("_shift")).alias("diagnosis_date"),
        )
        .select(src.columns)
    )


def _write_scale_molecular(out_dir, seed, delivery_date, centres, sizes, patients) -> list[Path]:
    from clms_etl.synth import molecular

    rng = centre_rng(seed, "molecular-scale")
    n_cases = max(1, min(2000, patients // 500))
    cases = molecular.random_cases(n_cases, rng)
    links = {}
    for case in cases:
        c = int(rng.integers(len(centres)))
        links[case.case_no] = (centres[c][0], scale_local_id(centres[c][1], int(rng.integers(sizes[c]))))
    return write_molecular(out_dir, seed, delivery_date, links, cases=cases)
