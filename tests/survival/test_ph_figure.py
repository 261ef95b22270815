"""The proportional-hazards figure at a registry's scale: a readable SVG, the same bytes each night."""

from __future__ import annotations

import numpy as np
import polars as pl

from clms_etl.survival.figures import RASTER_POINTS, ph_figure


def _residuals(n: int) -> pl.DataFrame:
    rng = np.random.default_rng(7)
    return pl.DataFrame({"term": ["age"] * n, "transformed_time": np.sort(rng.uniform(0, 1, n)),
                         "scaled_residual": rng.normal(0.3, 1.0, n)})


def test_a_cloud_of_many_events_is_one_image_in_the_svg_and_the_same_bytes_twice(tmp_path):
    n = 20 * RASTER_POINTS
    tests = {"age": ("Age at diagnosis", 0.42, False)}
    _, svg = ph_figure(_residuals(n), tests, "OS", tmp_path / "a.png", tmp_path / "a.svg")
    text = svg.read_text()
    assert text.count("<image") == 1, "the points were written one by one"
    assert svg.stat().st_size < 1_000_000, f"{svg.stat().st_size} bytes for {n} points"
    assert "Age at diagnosis" in text  # the text stays text
    _, again = ph_figure(_residuals(n), tests, "OS", tmp_path / "b.png", tmp_path / "b.svg")
    assert again.read_bytes() == svg.read_bytes()


def test_a_study_sized_cloud_stays_vector_markers(tmp_path):
    _, svg = ph_figure(_residuals(40), {"age": ("Age at diagnosis", 0.42, False)}, "OS", tmp_path / "a.png",
                       tmp_path / "a.svg")
    text = svg.read_text()
    assert "<image" not in text
    assert text.count("<use ") >= 40
