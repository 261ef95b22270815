"""The synthetic twin of the published cohort (``docs/reference/clms_paper.json``).

The twin is *designed*, not sampled: every Table 1 category is a list with exactly the
published count, the FNCLCC components are drawn from a joint design in which the recorded
grade equals the computed one wherever all three components are known, and the outcomes
follow a skeleton of event and follow-up times tuned so that Kaplan-Meier on the 68 patients
with at least 3 months of follow-up lands on the published estimates. The seed only moves
what the paper does not fix: which patient gets which value (within the same design), the
centre of each patient, day-level jitter of dates, and the fake identities.

Design choices the paper leaves open, made explicit here:

* Margins, resection status and Table 1 surgery variables describe the **primary excision**.
* The 5 patients of unknown vital status (79 - 74): 2 Montpellier patients lost to follow-up
  (``PDV``) after less than 3 months, and 3 patients with no news at all after diagnosis.
* The published follow-up IQR (4.9-73.9 months) cannot hold together with RFS 0.89: 19 of 76
  patients censored before 5 months would push metastasis-free survival under 0.87. The
  skeleton keeps the published median (about 39 months) and Q3 (about 74) and lets Q1 move.
* "Relapse" (for margins and hazard ratios) = local recurrence or metastasis.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl

from clms_etl.grading import fnclcc_grade
from clms_etl.synth.identities import IdentityFactory
from clms_etl.synth.truth import SCHEMAS, Truth

MONTH_DAYS = 365.25 / 12
DATA_CUTOFF = dt.date(2019, 12, 31)
ACCRUAL_START = dt.date(2000, 1, 1)
ACCRUAL_END = dt.date(2019, 6, 30)
CENTRE_SIZES = {"nice": 24, "montpellier": 21, "lyon": 19, "nimes": 15}
# Formats with a single operation per patient (centre_exports.md): only the primary excision.
SINGLE_SURGERY_FORMATS = {"montpellier", "nimes"}


@dataclass(frozen=True)
class Outcome:
    """One patient's course, in months from the pathological diagnosis."""

    follow_up: float | None  # None = no news after diagnosis
    death: str | None = None  # "clms" / "other"
    local_recurrence: float | None = None
    metastasis: float | None = None
    metastasis_sites: tuple[str, ...] = ()
    resection: str | None = None  # fixed for relapsing patients (published R0 / R1-R2 split)
    lost: bool = False  # Montpellier "PDV"

    @property
    def relapse(self) -> bool:
        return self.local_recurrence is not None or self.metastasis is not None


def _outcomes() -> list[Outcome]:
    """79 courses: 7 metastatic, 2 other-cause deaths, 9 local-only relapses, 61 event-free."""
    metastatic = [
        Outcome(14, "clms", 4, 6, ("bone",), "R1"),
        Outcome(18, "clms", None, 9, ("lung", "bone"), "R0"),
        Outcome(20, "clms", 5, 11, ("skin",), "R0"),
        Outcome(22, "clms", None, 12, ("colon",), "R0"),
        Outcome(40, "clms", 8, 15, ("lymph_node",), "R0"),
        Outcome(70, "clms", None, 18, ("bone",), "R0"),
        Outcome(80, None, None, 20, ("skin",), "R1"),  # the metastatic patient alive at the end
    ]
    other_deaths = [Outcome(26, "other"), Outcome(45, "other")]
    local_only = [
        Outcome(fu, None, lr, None, (), r)
        for lr, fu, r in [
            (3.5, 40, "R0"), (6, 28, "R1"), (7, 62, "R0"), (10, 35, "R2"), (13, 90, "R0"),
            (16, 55, "R0"), (22, 66, "R1"), (78, 100, "R0"), (92, 110, "R0"),
        ]
    ]
    censored = [
        3.3, 3.6, 4.0, 4.4, 4.8, 6, 9, 13, 17, 20, 21, 25, 28, 30, 31, 34, 36, 37, 38, 39, 40,
        41, 43, 46, 49, 52, 55, 58, 61, 64, 66, 68, 70, 72, 74, 76, 80, 84, 86, 90, 94, 100,
        108, 116, 124, 136, 150, 165, 180, 200,
    ]
    short = [0.5, 1.0, 1.5, 2.0, 2.3, 2.6]
    return (
        metastatic
        + other_deaths
        + local_only
        + [Outcome(fu) for fu in censored]
        + [Outcome(fu) for fu in short]
        + [Outcome(fu, lost=True) for fu in (1.2, 2.8)]
        + [Outcome(None) for _ in range(3)]
    )


# FNCLCC design rows: (differentiation, mitotic score, necrosis, recorded grade, count);
# None = not specified. Marginals: differentiation 38/14/7/20 ns, mitotic classes 46/12/7/14 ns,
# necrosis 57 absent / 12 present / 10 ns, grade 49/16/7/7 ns.
_GRADING_DESIGN: list[tuple[int | None, int | None, int | None, int | None, int]] = [
    # grade III
    (3, 3, 1, 3, 1), (3, 3, 2, 3, 1), (3, 2, 1, 3, 1), (2, 3, 1, 3, 1), (3, 3, 0, 3, 1),
    (None, 3, None, 3, 1), (3, None, 1, 3, 1),
    # grade II
    (2, 2, 0, 2, 4), (2, 1, 1, 2, 2), (1, 2, 1, 2, 1), (3, 1, 0, 2, 1), (1, 3, 0, 2, 1),
    (2, 2, 1, 2, 1), (None, 2, 0, 2, 2), (2, None, 0, 2, 2), (None, None, None, 2, 2),
    # grade not specified
    (3, 1, None, None, 1), (None, 3, 0, None, 1), (None, None, None, None, 2),
    (1, None, 0, None, 1), (None, 1, 0, None, 2),
    # grade I
    (2, 1, 0, 1, 4), (1, 2, 0, 1, 3), (1, 1, 1, 1, 3), (1, 1, 0, 1, 25), (None, 1, 0, 1, 6),
    (None, None, 0, 1, 2), (None, 1, None, 1, 2), (1, None, 0, 1, 2), (1, None, None, 1, 2),
]
# Rows given to the 16 relapsing patients, so that grade II/III, moderate/poor
# differentiation and mitoses > 10 carry the published excess risk.
_RELAPSE_GRADING = [
    (3, 3, 1, 3), (3, 3, 2, 3), (3, 2, 1, 3), (2, 3, 1, 3), (3, 3, 0, 3),
    (2, 2, 0, 2), (2, 2, 0, 2), (2, 1, 1, 2), (1, 3, 0, 2), (3, 1, 0, 2),
    (1, 1, 0, 1), (1, 1, 0, 1), (2, 1, 0, 1), (1, 2, 0, 1), (None, 1, 0, 1),
    (None, None, None, None),
]


def _grading_rows() -> list[tuple]:
    rows = [r[:4] for r in _GRADING_DESIGN for _ in range(r[4])]
    for r in rows:
        d, m, n, g = r
        if None not in (d, m, n):
            assert fnclcc_grade(d, (0, 9, 15, 25)[m], n) == g, r
    return rows


def _counts(**counts: int) -> list:
    """``_counts(a=2, b=1)`` -> ["a", "a", "b"]; the key ``ns`` stands for None."""
    out = []
    for key, n in counts.items():
        out += [None if key == "ns" else key] * n
    return out


AGES = [
    26, 26, 27, 28, 29, 31, 32, 34, 36, 38, 40, 42, 44, 46, 48, 51, 53, 56, 57, 57, 57, 57, 58,
    59, 59, 60, 61, 62, 62, 63, 64, 65, 65, 66, 67, 68, 68, 69, 70, 70, 70, 71, 71, 72, 72, 73,
    73, 74, 74, 74, 75, 75, 76, 76, 77, 77, 78, 78, 79, 79, 79, 80, 81, 82, 82, 83, 84, 85, 85,
    86, 87, 88, 88, 89, 90, 91, 91, 92, 93,
]  # median 70, quartiles 57 / 79, mean 65.8, SD 18.2
KI67 = [
    4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 10, 10, 12, 14, 15, 17, 18, 20, 22, 24, 25, 25, 25, 26, 27,
    27, 28, 28, 29, 30, 30, 30, 30, 38, 41, 44, 46, 48, 49, 51, 52, 54, 56,
]  # 43 known: 12 <= 10 %, 31 > 10 %; median 25, quartiles 10 / 30, mean 24.8, SD 15.5
SIZES_CM = (
    [0.3, 0.4, 0.4, 0.5, 0.5, 0.5, 0.6, 0.6, 0.6, 0.7, 0.7, 0.7, 0.8, 0.8, 0.8, 0.9, 0.9, 0.9]
    + [1.0] * 4 + [1.2] * 4 + [1.4] * 3 + [1.5] * 5 + [1.7] * 2 + [1.8] * 2 + [2.0] * 6
    + [2.2] * 2 + [2.5] * 3 + [2.8, 2.9]
    + [3.0, 3.0, 3.0, 3.2, 3.3, 3.5, 3.5, 3.8, 4.0, 9.0]
)  # 61 known: 18 < 1 cm, 33 in 1-2.9, 10 >= 3; mean 1.77, range 0.3-9
DELAYS_MONTHS = [
    0.5, 1, 1, 2, 2, 3, 3, 4, 6, 6, 6, 8, 10, 12, 12, 12, 18, 18, 24, 24, 30, 36, 36, 48,
    60, 63.5, 80, 110, 150, 180,
]  # 30 known, mean 32.2, range 0.5-180
CLINICAL_MARGINS_RELAPSE = [0.5, 0.5, 0.8, 0.8, 1.0, 1.0, 1.0, 1.0, 1.0, 1.2, 1.2, 1.2, 1.3, 1.5, 1.5, 1.5]
CLINICAL_MARGINS_NO_RELAPSE = (
    [0.0, 0.5, 0.5] + [1.0] * 11 + [1.5] * 13 + [2.0] * 17 + [2.5] * 6 + [3.0] * 8
)  # 16 relapsing: mean 1.06; 58 others: mean 1.80; all 74: mean 1.64
PROPOSED_MARGINS = [0.0] + [1.0] * 18 + [1.5] * 4 + [2.0] * 20 + [2.5] * 6 + [3.0] * 10 + [3.5]
HISTOLOGICAL_MARGIN_MEAN = 0.83
HISTOLOGICAL_MARGIN_KNOWN = 55

SITE_DETAILS = {
    "head_neck": ["cuir chevelu", "joue", "front", "tempe", "nez", "cou", "oreille"],
    "trunk": ["dos", "flanc", "thorax", "abdomen", "lombaire"],
    "upper_limb": ["épaule droite", "épaule gauche", "bras", "avant-bras", "main"],
    "lower_limb": ["jambe gauche", "jambe droite", "cuisse", "mollet", "genou", "hanche", "pied"],
}
TREATMENTS = {
    "local_recurrence": ["reprise chirurgicale", "exérèse élargie", "radiothérapie"],
    "metastasis": ["chimiothérapie doxorubicine", "radiothérapie", "soins de support", "chirurgie"],
}


def build_twin(seed: int = 0) -> Truth:
    """The 79-patient twin; deterministic for a seed, published marginals for every seed."""
    rng = np.random.default_rng(seed)
    outcomes = _outcomes()
    n = len(outcomes)
    assert n == 79
    relapse_idx = [i for i, o in enumerate(outcomes) if o.relapse]
    others_idx = [i for i, o in enumerate(outcomes) if not o.relapse]

    def spread(values: list, length: int = n) -> list:
        values = list(values) + [None] * (length - len(values))
        assert len(values) == length
        return [values[i] for i in rng.permutation(length)]

    grading = _assign_grading(rng, relapse_idx, others_idx, n)
    resection = _assign_resection(rng, outcomes)
    clinical = [None] * n
    for i, v in zip(relapse_idx, spread(CLINICAL_MARGINS_RELAPSE, len(relapse_idx))):
        clinical[i] = v
    for i, v in zip(others_idx, spread(CLINICAL_MARGINS_NO_RELAPSE, len(others_idx))):
        clinical[i] = v
    histological = _histological_margins(rng, clinical, resection)
    centres = _assign_centres(rng, outcomes)

    table = {
        "sex": spread(_counts(male=57, female=22)),
        "age": spread(AGES),
        "site": spread(_counts(head_neck=23, trunk=10, upper_limb=15, lower_limb=29, ns=2)),
        "presentation": spread(
            _counts(nodular=49, ulcerated=1, vegetative=1, infiltrated_patch=3, ns=25)
        ),
        "pain": spread([True] * 33 + [False] * 46),
        "on_scar": spread([True] * 5 + [False] * 74),
        "size_cm": spread(SIZES_CM),
        "ulceration": spread([True] * 10 + [False] * 69),
        "invasion": spread(_counts(dermal=24, dermo_hypodermal=35, ns=20)),
        "ki67": spread(KI67),
    }
    # Nîmes charts have no tumour-board (RCP) margin, no consultation delay and no
    # immunosuppression field: those values go to the other centres, Nîmes keeps nulls
    # (Table 1 counts an unmentioned immunosuppression as "no", as the paper does).
    charted = [i for i in range(n) if centres[i] != "nimes"]
    for name, values in (("proposed", PROPOSED_MARGINS), ("delay", DELAYS_MONTHS),
                         ("immunosuppression", [True] + [False] * (len(charted) - 1))):
        table[name] = [None] * n
        for i, v in zip(charted, spread(values, len(charted))):
            table[name][i] = v
    identities = IdentityFactory(rng)
    patients, tumours, surgeries, events = [], [], [], []
    for i, o in enumerate(outcomes):
        centre = centres[i]
        local_id = identities.local_id(centre)
        key = f"{centre}:{local_id}"
        diagnosis = _diagnosis_date(rng, o)
        age = table["age"][i]
        sex = table["sex"][i]
        first, last = identities.name(sex)
        patients.append(
            {
                "patient_key": key,
                "centre": centre,
                "local_id": local_id,
                "last_name": last,
                "first_name": first,
                "birth_date": identities.birth_date(diagnosis, age),
                "sex": sex,
                "immunosuppression": table["immunosuppression"][i],
                "diagnosis_date": diagnosis,
                "vital_status": _vital_status(o),
                # REDCap's patient_complete: a few Lyon records are not marked complete.
                "record_complete": centre != "lyon" or bool(rng.random() > 0.15),
            }
        )
        d, m, nec, grade = grading[i]
        site = table["site"][i]
        tumours.append(
            {
                "patient_key": key,
                "site": site,
                "site_detail": None if site is None else str(rng.choice(SITE_DETAILS[site])),
                "size_cm": table["size_cm"][i],
                "presentation": table["presentation"][i],
                "pain": table["pain"][i],
                "on_scar": table["on_scar"][i],
                "consultation_delay_months": table["delay"][i],
                "fnclcc_grade": grade,
                "differentiation_score": d,
                "mitoses_per_10hpf": _mitotic_count(rng, m),
                "necrosis_score": nec,
                "invasion": table["invasion"][i],
                "histological_ulceration": table["ulceration"][i],
                "ki67_percent": None if table["ki67"][i] is None else float(table["ki67"][i]),
            }
        )
        surgeries += _surgeries(rng, key, centre, o, diagnosis, resection[i], table["proposed"][i], clinical[i], histological[i])
        events += _events(rng, key, o, diagnosis)

    truth = Truth(
        pl.DataFrame(patients, schema=SCHEMAS["patient"]),
        pl.DataFrame(tumours, schema=SCHEMAS["tumour"]),
        pl.DataFrame(surgeries, schema=SCHEMAS["surgery"]),
        pl.DataFrame(events, schema=SCHEMAS["event"]),
    )
    truth.extras["molecular_links"] = _molecular_links(rng, outcomes, truth)
    return truth


def _assign_grading(rng, relapse_idx: list[int], others_idx: list[int], n: int) -> list[tuple]:
    pool = _grading_rows()
    for row in _RELAPSE_GRADING:
        pool.remove(row)
    out: list[tuple] = [None] * n  # type: ignore[list-item]
    for i, j in zip(relapse_idx, rng.permutation(len(_RELAPSE_GRADING))):
        out[i] = _RELAPSE_GRADING[j]
    for i, j in zip(others_idx, rng.permutation(len(pool))):
        out[i] = pool[j]
    return out


def _mitotic_count(rng, score: int | None) -> int | None:
    if score is None:
        return None
    # 10 itself is left out of class 2 so that "mitoses > 10" and the class agree.
    low, high = {1: (0, 9), 2: (11, 19), 3: (20, 45)}[score]
    return int(rng.integers(low, high + 1))


def _assign_resection(rng, outcomes: list[Outcome]) -> list[str | None]:
    fixed = [o.resection for o in outcomes if o.resection]
    remaining = ["R0"] * (54 - fixed.count("R0"))
    incomplete = 20 - sum(r != "R0" for r in fixed)
    r2 = 4 - fixed.count("R2")
    remaining += ["R2"] * r2 + ["R1"] * (incomplete - r2) + [None] * 5
    free = [i for i, o in enumerate(outcomes) if not o.resection]
    assert len(free) == len(remaining)
    out = [o.resection for o in outcomes]
    for i, j in zip(free, rng.permutation(len(remaining))):
        out[i] = remaining[j]
    return out


def _histological_margins(rng, clinical, resection) -> list[float | None]:
    """55 histological margins, each <= the clinical one, 0 after R1/R2, mean 0.83 cm."""
    known = [i for i, c in enumerate(clinical) if c is not None and resection[i] is not None]
    chosen = sorted(rng.choice(known, HISTOLOGICAL_MARGIN_KNOWN, replace=False).tolist())
    widest = max(chosen, key=lambda i: (clinical[i] if resection[i] == "R0" else -1, -i))
    fraction = rng.uniform(0.25, 0.75, len(chosen))

    def margins(scale: float) -> dict[int, float]:
        out = {}
        for i, f in zip(chosen, fraction):
            if resection[i] != "R0":
                out[i] = 0.0
            elif i == widest:
                out[i] = min(2.6, clinical[i])  # the published maximum
            else:
                out[i] = round(min(clinical[i], 2.5, max(0.1, clinical[i] * f * scale)), 1)
        return out

    lo, hi = 0.1, 4.0
    for _ in range(60):  # bisection on the common scale factor to hit the published mean
        mid = (lo + hi) / 2
        if np.mean(list(margins(mid).values())) < HISTOLOGICAL_MARGIN_MEAN:
            lo = mid
        else:
            hi = mid
    values = margins(lo)
    return [values.get(i) for i in range(len(clinical))]


def _assign_centres(rng, outcomes: list[Outcome]) -> list[str]:
    """Centre sizes fixed; the two lost-to-follow-up patients are Montpellier's (PDV)."""
    pool = [c for c, k in CENTRE_SIZES.items() for _ in range(k)]
    lost = [i for i, o in enumerate(outcomes) if o.lost]
    for _ in lost:
        pool.remove("montpellier")
    pool = [pool[j] for j in rng.permutation(len(pool))]
    it = iter(pool)
    return ["montpellier" if o.lost else next(it) for o in outcomes]


def _diagnosis_date(rng, o: Outcome) -> dt.date:
    span_end = ACCRUAL_END
    if o.follow_up is not None:
        latest = DATA_CUTOFF - dt.timedelta(days=int(o.follow_up * MONTH_DAYS) + 1)
        span_end = min(span_end, latest)
    days = (span_end - ACCRUAL_START).days
    return ACCRUAL_START + dt.timedelta(days=int(rng.integers(0, days + 1)))


def _vital_status(o: Outcome) -> str | None:
    if o.death:
        return "dead"
    if o.lost:
        return "lost_to_follow_up"
    return None if o.follow_up is None else "alive"


def _at(diagnosis: dt.date, months: float) -> dt.date:
    return diagnosis + dt.timedelta(days=round(months * MONTH_DAYS))


def _surgeries(rng, key, centre, o, diagnosis, resection, proposed, clinical, histological) -> list[dict]:
    primary = diagnosis + dt.timedelta(days=int(rng.integers(0, 35)))
    first_event = min(x for x in (o.local_recurrence, o.metastasis, o.follow_up, 9999) if x is not None)
    primary = min(primary, _at(diagnosis, first_event))
    rows = [
        {
            "patient_key": key,
            "surgery_no": 1,
            "surgery_date": primary,
            "surgery_kind": "primary_excision",
            "proposed_margin_cm": proposed,
            "clinical_margin_cm": clinical,
            "histological_margin_cm": histological,
            "resection_status": resection,
            "adjuvant_radiotherapy": False,
        }
    ]
    end = None if o.follow_up is None else _at(diagnosis, o.follow_up)

    def add(kind: str, when: dt.date, status: str | None) -> None:
        if end is not None and when <= end:
            rows.append(
                {"patient_key": key, "surgery_no": len(rows) + 1, "surgery_date": when,
                 "surgery_kind": kind, "proposed_margin_cm": None, "clinical_margin_cm": None,
                 "histological_margin_cm": None, "resection_status": status,
                 "adjuvant_radiotherapy": False}
            )

    if centre in SINGLE_SURGERY_FORMATS:
        return rows
    if resection in ("R1", "R2") and rng.random() < 0.5:
        add("re_excision", primary + dt.timedelta(days=int(rng.integers(20, 50))), "R0")
    if o.local_recurrence is not None:
        add("relapse_surgery", _at(diagnosis, o.local_recurrence) + dt.timedelta(days=int(rng.integers(10, 40))), "R0")
    if o.metastasis is not None and rng.random() < 0.4:
        add("metastasis_surgery", _at(diagnosis, o.metastasis) + dt.timedelta(days=int(rng.integers(10, 40))), None)
    rows.sort(key=lambda r: r["surgery_date"])
    for no, r in enumerate(rows, start=1):
        r["surgery_no"] = no
    return rows


def _events(rng, key, o: Outcome, diagnosis: dt.date) -> list[dict]:
    rows: list[dict] = []

    def add(kind, months, site=None, cause=None, treatment=None):
        rows.append({"patient_key": key, "event_no": 0, "event_kind": kind,
                     "event_date": _at(diagnosis, months), "metastasis_site": site,
                     "death_cause": cause, "treatment": treatment})

    if o.local_recurrence is not None:
        add("local_recurrence", o.local_recurrence, treatment=str(rng.choice(TREATMENTS["local_recurrence"])))
    if o.metastasis is not None:
        treatment = str(rng.choice(TREATMENTS["metastasis"]))
        for site in o.metastasis_sites:
            add("metastasis", o.metastasis, site=site, treatment=treatment)
    if o.death:
        add("death", o.follow_up, cause=o.death)
    elif o.follow_up is not None:
        add("last_news", o.follow_up)
    rows.sort(key=lambda r: r["event_date"])
    for no, r in enumerate(rows, start=1):
        r["event_no"] = no
    return rows


def _molecular_links(rng, outcomes: list[Outcome], truth: Truth) -> dict[int, tuple[str, str]]:
    """Lab case number -> (centre, local id): complex cases 1-4 are metastatic patients."""
    keys = truth.patient["patient_key"].to_list()
    metastatic = [i for i, o in enumerate(outcomes) if o.metastasis is not None]
    followed = [i for i, o in enumerate(outcomes) if o.metastasis is None and o.follow_up and o.follow_up >= 3]
    picks = [metastatic[j] for j in rng.permutation(len(metastatic))[:4]]
    rest = [followed[j] for j in rng.permutation(len(followed))[:10]]
    links = {}
    for case_no, i in enumerate(picks + rest, start=1):
        centre, local_id = keys[i].split(":", 1)
        links[case_no] = (centre, local_id)
    return links
