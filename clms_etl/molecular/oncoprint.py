"""OncoPrint-style figure: cases x genes, alteration types as colours and glyphs, annotation tracks.

Drawn with matplotlib's object API on the Agg canvas (no pyplot state, no display). Columns are
the cases of the laboratory series (contributory first, by profile class then alterations, the
not-contributory ones last, hatched); rows are the genes of the pinned table plus any mutated or
fused gene, most altered first. Above: profile class and outcome tracks (local recurrence,
metastasis, vital status). The SVG is deterministic (no date, fixed hash salt): the same data
gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from clms_etl.molecular.summary import KEY_GENES, MolecularSummary

CN_COLOURS = {
    "amplification": "#c0392b", "gain": "#f1948a", "homozygous_deletion": "#1f4e99",
    "heterozygous_deletion": "#85b4e6", "cn_loh": "#9b7fc4",
}  # fmt: skip
CN_LABELS = {
    "amplification": "Amplification (CN > 4)", "gain": "Gain", "homozygous_deletion": "Homozygous deletion",
    "heterozygous_deletion": "Heterozygous deletion", "cn_loh": "Copy-neutral LOH",
}  # fmt: skip
MUTATION_COLOUR = "#1e8449"
FUSION_COLOUR = "#7d3c98"
EMPTY_COLOUR = "#e5e5e5"
PROFILE_COLOURS = {"complex": "#4a235a", "simple": "#a569bd", "flat": "#e8daef", "not_assessed": "#ffffff",
                   "not_contributory": "#ffffff"}
YES_COLOUR, NO_COLOUR = "#303030", "#e5e5e5"
VITAL_COLOURS = {"alive": "#abebc6", "dead": "#922b21", "lost_to_follow_up": "#f9e79f"}
CASE_WIDTH_IN = 0.42  # one case's column, inches, while the plot stays under MAX_PLOT_WIDTH_IN
MAX_PLOT_WIDTH_IN = 24.0  # a registry's series (thousands of cases) is squeezed into this width
PROFILE_ORDER = {"complex": 0, "simple": 1, "flat": 2, "not_assessed": 3, "not_contributory": 4}


def _gene_order(summary: MolecularSummary) -> list[str]:
    any_alt = summary.recurrent.filter(pl.col("alteration") == "any").select("gene", "cases")
    counts = dict(any_alt.iter_rows())
    genes = sorted(counts, key=lambda g: (-counts[g], g not in KEY_GENES, g))
    return genes


def _case_order(summary: MolecularSummary, genes: list[str]) -> list[int]:
    cases = summary.cases
    altered = {(c, g) for c, g in summary.gene_status.filter(
        (pl.col("cn_event").is_not_null() & (pl.col("cn_event") != "neutral")) | pl.col("mutated").fill_null(False)
    ).select("case_no", "gene").iter_rows()}
    altered |= set(summary.mutations.select("case_no", "gene").iter_rows())

    def key(row) -> tuple:
        # memo sort: profile class, then the most altered genes first (like cBioPortal's OncoPrint)
        return (PROFILE_ORDER.get(row["profile_class"], 5),
                tuple(0 if (row["case_no"], g) in altered else 1 for g in genes), row["case_no"])

    return [r["case_no"] for r in sorted(cases.iter_rows(named=True), key=key)]


def oncoprint_figure(summary: MolecularSummary, outcome: pl.DataFrame | None = None):
    """The figure (a matplotlib ``Figure`` on an Agg canvas).

    ``outcome``: one row per case_no with ``local_recurrence``, ``metastasis``, ``vital_status``
    (e.g. :func:`clms_etl.molecular.table3.table3`); tracks are left blank without it.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch, PathPatch
    from matplotlib.path import Path as Outline

    genes = _gene_order(summary)
    order = _case_order(summary, genes)
    col = {c: i for i, c in enumerate(order)}
    row = {g: i for i, g in enumerate(genes)}
    cases = {r["case_no"]: r for r in summary.cases.iter_rows(named=True)}
    outcomes = {} if outcome is None else {r["case_no"]: r for r in outcome.iter_rows(named=True)}
    tracks = ["Profile class", "Local recurrence", "Metastasis", "Vital status"]
    n_cols, n_rows, n_tracks = len(order), len(genes), len(tracks)

    span = n_rows + n_tracks + 0.8  # y range of the axes, in cell units
    case_in = min(CASE_WIDTH_IN, MAX_PLOT_WIDTH_IN / max(n_cols, 4))
    plot_in = case_in * max(n_cols, 4)
    width = 2.2 + plot_in + 0.6
    bottom, top = 1.1, 0.75  # inches: legend below, case numbers and title above
    height = bottom + 0.3 * span + top
    fig = Figure(figsize=(width, height), dpi=150)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((2.0 / width, bottom / height, plot_in / width, 0.3 * span / height))
    w, h = 0.86, 0.8
    track_y = {t: -(i + 1.6) for i, t in enumerate(reversed(tracks))}  # tracks above the genes
    # Cells of one look are drawn as one compound path, layer by layer (background, copy number,
    # mutation strip): tens of thousands of single patches would take minutes to lay out and draw.
    layers: dict[tuple, list] = {}
    markers: dict[tuple, tuple[list, list]] = {}

    def cell(x, y, colour, hatch=None, edge="none", height=h, y_off=0.0, layer=0):
        x0, y0 = x - w / 2, y - height / 2 + y_off
        layers.setdefault((layer, colour, hatch, edge), []).append(
            ((x0, y0), (x0 + w, y0), (x0 + w, y0 + height), (x0, y0 + height)))

    def marker(x, y, style, colour, size):
        xs, ys = markers.setdefault((style, colour, size), ([], []))
        xs.append(x)
        ys.append(y)

    status = {(r["case_no"], r["gene"]): r for r in summary.gene_status.iter_rows(named=True)}
    mutated = set(summary.mutations.select("case_no", "gene").iter_rows())
    fused = set(summary.fusions.select("case_no", "gene_5p").iter_rows()) | set(
        summary.fusions.select("case_no", "gene_3p").iter_rows())
    for case_no in order:
        x = col[case_no]
        info = cases[case_no]
        contributory = info["status"] == "ok"
        for gene in genes:
            y = row[gene]
            gs = status.get((case_no, gene))
            if not contributory or gs is None:
                cell(x, y, "#ffffff", hatch="////" if not contributory else None, edge="#c8c8c8")
                continue
            cell(x, y, EMPTY_COLOUR)
            event = gs["cn_event"]
            if event in CN_COLOURS:
                cell(x, y, CN_COLOURS[event], hatch="...." if gs["cn_coverage"] == "partial" else None, layer=1)
            if (case_no, gene) in mutated or gs["mutated"]:
                cell(x, y, MUTATION_COLOUR, height=h / 3, layer=2)
            if (case_no, gene) in fused:
                marker(x, y, "^", FUSION_COLOUR, 6)
            if gs["biallelic_inactivation"]:
                marker(x + w / 2 - 0.14, y - h / 2 + 0.14, "*", "#000000", 5)
        # tracks
        cell(x, track_y["Profile class"], PROFILE_COLOURS.get(info["profile_class"], "#ffffff"),
             hatch="////" if not contributory else None, edge="#c8c8c8")
        out = outcomes.get(case_no, {})
        for track, key in (("Local recurrence", "local_recurrence"), ("Metastasis", "metastasis")):
            value = out.get(key)
            cell(x, track_y[track], "#ffffff" if value is None else YES_COLOUR if value else NO_COLOUR,
                 edge="#c8c8c8" if value is None else "none")
        vital = out.get("vital_status")
        cell(x, track_y["Vital status"], VITAL_COLOURS.get(vital, "#ffffff"),
             edge="#c8c8c8" if vital not in VITAL_COLOURS else "none")
    for (layer, colour, hatch, edge), polygons in sorted(layers.items(), key=lambda item: item[0][0]):
        # add_artist, not add_patch: the limits are set below, and add_patch would walk every vertex
        ax.add_artist(PathPatch(Outline.make_compound_path_from_polys(np.array(polygons)), facecolor=colour,
                                edgecolor=edge, hatch=hatch, linewidth=0.6 if edge != "none" else 0))
    for (style, colour, size), (xs, ys) in markers.items():
        ax.plot(xs, ys, marker=style, color=colour, markersize=size, linestyle="none")

    ax.set_xlim(-0.6, n_cols - 0.4)
    ax.set_ylim(n_rows - 0.4, -n_tracks - 1.2)
    # a case number per column while they fit side by side; beyond, the columns are too narrow
    ax.set_xticks(*((range(n_cols), [f"#{c}" for c in order]) if case_in >= CASE_WIDTH_IN else ([], [])),
                  fontsize=7)
    ax.xaxis.tick_top()
    yticks = [track_y[t] for t in tracks] + list(range(n_rows))
    ax.set_yticks(yticks, tracks + genes, fontsize=7)
    for label in ax.get_yticklabels()[n_tracks:]:
        label.set_fontstyle("italic")
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    pct = summary.recurrent.filter(pl.col("alteration") == "any")
    percents = {g: p for g, p in pct.select("gene", "percent").iter_rows()}
    for gene in genes:
        p = percents.get(gene)
        ax.text(n_cols - 0.3, row[gene], "" if p is None else f"{p:.0f}%", va="center", ha="left", fontsize=7)
    contributory = summary.cases.filter(pl.col("status") == "ok").height
    ax.set_title(f"Molecular profile of the {len(order)} cases ({contributory} contributory; "
                 "hatched: not contributory)", fontsize=8, pad=18)

    handles = [Patch(facecolor=CN_COLOURS[k], label=CN_LABELS[k]) for k in CN_COLOURS]
    handles += [Patch(facecolor=EMPTY_COLOUR, hatch="....", label="Partial-gene event"),
                Patch(facecolor=MUTATION_COLOUR, label="Somatic mutation"),
                Patch(facecolor=FUSION_COLOUR, label="Fusion (triangle)"),
                Patch(facecolor="#000000", label="Biallelic inactivation (star)")]
    handles += [Patch(facecolor=PROFILE_COLOURS[k], edgecolor="#c8c8c8", label=f"Profile: {k}")
                for k in ("complex", "simple", "flat")]
    handles += [Patch(facecolor=YES_COLOUR, label="Event: yes"), Patch(facecolor=NO_COLOUR, label="Event: no")]
    handles += [Patch(facecolor=VITAL_COLOURS[k], label=k.replace("_", " ").capitalize()) for k in VITAL_COLOURS]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=6, frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    return fig


def write_oncoprint(summary: MolecularSummary, outcome: pl.DataFrame | None, png: Path, svg: Path) -> tuple[Path, Path]:
    """Write the figure as PNG and deterministic SVG; returns the two paths."""
    import matplotlib

    png.parent.mkdir(parents=True, exist_ok=True)
    svg.parent.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context({"svg.hashsalt": "clms-oncoprint", "svg.fonttype": "path"}):
        fig = oncoprint_figure(summary, outcome)
        fig.savefig(png, format="png", metadata={"Software": None})
        fig.savefig(svg, format="svg", metadata={"Date": None})
    return png, svg
