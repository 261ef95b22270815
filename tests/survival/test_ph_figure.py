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


def test_a_registry_sized_cloud_is_drawn_as_its_density():
    """A million residuals as markers hid each other (and took seconds to draw): past RASTER_POINTS the
    panel shows one image, darker where more residuals lie."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from clms_etl.survival.figures import draw_cloud

    rng = np.random.default_rng(3)
    n = 50 * RASTER_POINTS
    # nine residuals in ten on the left half of the time scale, one in ten on the right
    x = np.concatenate([rng.uniform(0, 0.5, n - n // 10), rng.uniform(0.5, 1, n // 10), [np.nan]])
    y = np.concatenate([rng.uniform(-1, 1, n), [0.0]])
    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    draw_cloud(ax, x, y, "#1f4e79")
    assert [line.get_xdata().size for line in ax.lines] == []  # no marker per point
    [image] = ax.get_images()
    shade = image.get_array()
    left, right = shade[:, : shade.shape[1] // 2], shade[:, shade.shape[1] // 2:]
    assert left.mean() > right.mean() * 1.5 and right.min() > 0
