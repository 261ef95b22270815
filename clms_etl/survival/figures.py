"""Figure 2 of the study: four Kaplan-Meier panels (OS, PFS, DSS, RFS) with CI bands and numbers at risk.

Drawn on a bare matplotlib ``Figure`` with the Agg canvas (no pyplot state, no display); the
output is deterministic: no date in the SVG metadata and a fixed SVG hash salt, so the same
data give the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clms_etl.survival.km import KaplanMeier

PANELS = (("A", "OS"), ("B", "PFS"), ("C", "DSS"), ("D", "RFS"))
PANEL_TITLES = {"OS": "Overall survival", "PFS": "Progression-free survival", "DSS": "Disease-specific survival",
                "RFS": "Relapse-free survival (metastasis)"}
TICK_MONTHS = 24


def _at_risk_ticks(max_time: float) -> list[float]:
    return [float(t) for t in np.arange(0, max_time + 1e-9, TICK_MONTHS)]


def draw_panel(ax, km: KaplanMeier, title: str, colour: str = "#1f4e79") -> None:
    """One Kaplan-Meier panel: step curve, CI band, censoring marks, numbers at risk under the axis."""
    ax.step(km.time, km.survival, where="post", color=colour, linewidth=1.6)
    lower = np.where(np.isnan(km.ci_lower), km.survival, km.ci_lower)
    upper = np.where(np.isnan(km.ci_upper), km.survival, km.ci_upper)
    ax.fill_between(km.time, lower, upper, step="post", color=colour, alpha=0.18, linewidth=0)
    censored = km.censored > 0
    ax.plot(km.time[censored], km.survival[censored], linestyle="none", marker="|", markersize=7, color=colour)
    max_time = float(km.durations.max()) if km.n else 1.0
    ticks = _at_risk_ticks(max_time)
    ax.set_xlim(0, max(ticks[-1], max_time) * 1.02)
    ax.set_ylim(0, 1.03)
    ax.set_xticks(ticks)
    ax.set_xlabel("Months since diagnosis", fontsize=9)
    ax.set_ylabel("Survival probability", fontsize=9)
    ax.set_title(title, fontsize=10, loc="left")
    ax.grid(alpha=0.25, linewidth=0.5)
    ax.tick_params(labelsize=8)
    # Numbers at risk drawn here rather than with lifelines' add_at_risk_counts, so that they are
    # the same counts as in survival_estimate (time >= t) and need no pyplot.
    transform = ax.get_xaxis_transform()
    ax.text(-0.06, -0.27, "At risk", transform=ax.transAxes, ha="right", va="center", fontsize=8)
    for t in ticks:
        ax.text(t, -0.27, str(int((km.durations >= t).sum())), transform=transform, ha="center", va="center",
                fontsize=8)


def save_deterministic(fig, png: Path, svg: Path | None, salt: str) -> tuple[Path, Path | None]:
    """Write ``fig`` as PNG (and SVG) with no date or software stamp: the same data, the same bytes."""
    import matplotlib

    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, format="png", metadata={"Software": None})
    if svg is not None:
        with matplotlib.rc_context({"svg.hashsalt": salt}):
            fig.savefig(svg, format="svg", metadata={"Date": None, "Creator": None})
    return png, svg


def figure2(curves: dict[str, KaplanMeier], png: Path, svg: Path | None = None, ci_transform: str = "log") -> tuple[Path, Path | None]:
    """Write Figure 2 (PNG, and SVG if asked) from the fitted curves of OS, PFS, DSS and RFS."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 8.6), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2)
    for ax, (letter, endpoint) in zip(axes.flat, PANELS, strict=True):
        km = curves[endpoint]
        draw_panel(ax, km, f"{letter}. {PANEL_TITLES[endpoint]} (n = {km.n}, {km.n_events} events)")
    fig.suptitle(f"Kaplan-Meier estimates with 95 % confidence bands ({ci_transform} transform)", fontsize=11)
    fig.subplots_adjust(left=0.09, right=0.98, top=0.92, bottom=0.12, hspace=0.55, wspace=0.25)
    return save_deterministic(fig, png, svg, "clms-figure2")


def _steps(curve, grid: np.ndarray) -> np.ndarray:
    """A stored step curve (time_months, incidence) evaluated on ``grid`` (right-continuous)."""
    time = curve["time_months"].to_numpy()
    value = curve["incidence"].to_numpy()
    i = np.searchsorted(time, grid, side="right") - 1
    return np.where(i >= 0, value[np.maximum(i, 0)], 0.0)


def figure_competing(curves, outcomes: dict[str, str], png: Path, svg: Path | None = None) -> tuple[Path, Path | None]:
    """Stacked cumulative incidence per outcome (``cumulative_incidence_curve`` rows of the whole
    population): the outcome at the bottom, the competing death stacked on it, event-free alive above."""
    import polars as pl
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 8.6), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 2)
    for ax, (letter, (outcome, title)) in zip(axes.flat, zip("ABCD", outcomes.items()), strict=False):
        c = curves.filter(pl.col("outcome") == outcome).sort("time_months")
        event, competing = (c.filter(pl.col("cause") == cause) for cause in ("event", "competing"))
        end = float(c["end_months"].max()) if c.height else 1.0
        grid = np.unique(np.concatenate([[0.0, end], c["time_months"].to_numpy()]))
        f1, f2 = _steps(event, grid), _steps(competing, grid)
        ax.fill_between(grid, 0, f1, step="post", color="#b2182b", alpha=0.75, linewidth=0, label=title)
        ax.fill_between(grid, f1, f1 + f2, step="post", color="#7f7f7f", alpha=0.6, linewidth=0,
                        label="competing death")
        ax.set_xlim(0, end * 1.02)
        ax.set_ylim(0, 1)
        ax.set_xticks(_at_risk_ticks(end))
        ax.set_xlabel("Months since diagnosis", fontsize=9)
        ax.set_ylabel("Cumulative incidence", fontsize=9)
        ax.set_title(f"{letter}. {title}", fontsize=10, loc="left")
        ax.legend(loc="upper left", fontsize=8, frameon=False)
        ax.grid(alpha=0.25, linewidth=0.5)
        ax.tick_params(labelsize=8)
    fig.suptitle("Cumulative incidence with death as a competing event (Aalen-Johansen, stacked)", fontsize=11)
    fig.subplots_adjust(left=0.09, right=0.98, top=0.92, bottom=0.08, hspace=0.35, wspace=0.25)
    return save_deterministic(fig, png, svg, "clms-competing")


PH_COLUMNS = 4
RASTER_POINTS = 2_000  # points of one panel drawn as markers; beyond, their density as one image
DENSITY_BINS = (160, 100)  # the density image's cells across (time scale) and up (residual)


def draw_cloud(ax, x: np.ndarray, y: np.ndarray, colour: str) -> None:
    """The points ``(x, y)`` on ``ax``: one marker each up to :data:`RASTER_POINTS`, beyond that their
    density, one image whose cells (:data:`DENSITY_BINS`) are the darker the more points they hold (log
    scale, empty cells transparent). A registry's cloud is millions of residuals: markers hid each other,
    one vector marker per point made a 33 MB SVG at 100,000 patients, and drawing 4 million markers took
    three seconds per figure and format at 1,000,000. Points that are not finite are not drawn."""
    from matplotlib.colors import LinearSegmentedColormap

    if x.size <= RASTER_POINTS:
        ax.plot(x, y, linestyle="none", marker="o", markersize=3, color=colour, alpha=0.7)
        return
    finite = np.isfinite(x) & np.isfinite(y)
    counts, x_edges, y_edges = np.histogram2d(x[finite], y[finite], bins=DENSITY_BINS)
    shade = np.log1p(counts.T) / max(np.log1p(counts.max()), 1e-12)
    ax.imshow(np.ma.masked_equal(shade, 0), origin="lower", aspect="auto", interpolation="nearest",
              extent=(x_edges[0], x_edges[-1], y_edges[0], y_edges[-1]), vmin=0, vmax=1,
              cmap=LinearSegmentedColormap.from_list("cloud", ["#ffffff", colour]))


def ph_figure(residuals, tests, title: str, png: Path, svg: Path | None = None) -> tuple[Path, Path | None]:
    """Proportional-hazards diagnostics: one panel per term, the scaled Schoenfeld residuals against the
    Kaplan-Meier time scale of the test (R ``plot(cox.zph(fit))``), with a least-squares line (the
    test's alternative: a coefficient linear in g(t)) and their mean (about the model's coefficient) dashed.

    ``residuals``: rows of ``ph_residual`` for one endpoint and model; ``tests``: rows of ``ph_test``
    for them, by term: {"term": (label, p, violated)}.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    terms = list(tests)
    rows = max(1, -(-len(terms) // PH_COLUMNS))
    fig = Figure(figsize=(3.2 * PH_COLUMNS, 2.7 * rows), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, PH_COLUMNS, squeeze=False)
    for ax in axes.flat[len(terms):]:
        ax.set_visible(False)
    for ax, term in zip(axes.flat, terms, strict=False):
        label, p, violated = tests[term]
        points = residuals.filter(residuals["term"] == term)
        x, y = points["transformed_time"].to_numpy(), points["scaled_residual"].to_numpy()
        colour = "#b03a2e" if violated else "#1f4e79"
        draw_cloud(ax, x, y, colour)
        if x.size >= 2 and np.ptp(x) > 0:
            slope, intercept = np.polyfit(x, y, 1)
            ax.plot([x.min(), x.max()], [intercept + slope * x.min(), intercept + slope * x.max()], color=colour)
        ax.axhline(float(np.mean(y)) if y.size else 0.0, color="grey", linestyle="--", linewidth=0.8)
        ax.set_title(f"{label}\ncox.zph p = {p:.3f}{' (violated)' if violated else ''}", fontsize=8, loc="left")
        ax.set_xlabel("1 - KM(t-)", fontsize=7)
        ax.set_ylabel("Scaled Schoenfeld residual", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.25, linewidth=0.5)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return save_deterministic(fig, png, svg, "clms-ph")
