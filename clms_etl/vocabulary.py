"""Canonical code lists of the warehouse (``docs/centre_formats.md``, "Shared vocabulary").

Every reader maps its centre's codes onto these values; an absent value is ``None`` (the
paper's "not specified"), never 0 and never a sentinel.
"""

from __future__ import annotations

# The centres are not a code list: they come from the registry (clms_etl.centres.centre_names,
# clms_etl/data/centres.toml plus a drop folder's centres.toml), which may hold forty of them.
LABORATORY = "molecular"

SEX = ("male", "female")
SITES = ("head_neck", "trunk", "upper_limb", "lower_limb")
PRESENTATIONS = ("nodular", "ulcerated", "vegetative", "infiltrated_patch")
DIFFERENTIATION_SCORES = (1, 2, 3)  # 1 well, 2 moderate, 3 poor
NECROSIS_SCORES = (0, 1, 2)  # 0 none, 1 < 50 %, 2 >= 50 %
FNCLCC_GRADES = (1, 2, 3)
INVASIONS = ("dermal", "dermo_hypodermal")
RESECTION_STATUSES = ("R0", "R1", "R2")
SURGERY_KINDS = ("primary_excision", "re_excision", "relapse_surgery", "metastasis_surgery")
EVENT_KINDS = ("local_recurrence", "metastasis", "death", "last_news")
METASTASIS_SITES = ("bone", "skin", "lung", "liver", "lymph_node", "colon", "other")
DEATH_CAUSES = ("clms", "other", "unknown")
# Not in the centres' shared table: the follow-up state at last contact. Montpellier's
# STATUT_VITAL=PDV is "lost_to_follow_up"; a patient with no news at all has None.
VITAL_STATUSES = ("alive", "dead", "lost_to_follow_up")
# Mitotic-count classes as some charts record them next to (or instead of) the count.
MITOSIS_CLASSES = ("0-9", "10-19", ">=20")

# Actions recorded in the warehouse's audit_log (clms_etl.warehouse.load).
AUDIT_ACTIONS = ("load", "rekey", "refresh", "adopt_key", "results")
