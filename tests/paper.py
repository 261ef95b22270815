"""The published figures the tests compare with: the repository's copy, ``docs/reference/clms_paper.json``
(provenance in ``docs/reference/README.md``)."""

from __future__ import annotations

import json
from pathlib import Path

PAPER_PATH = Path(__file__).resolve().parents[1] / "docs" / "reference" / "clms_paper.json"
PAPER = json.loads(PAPER_PATH.read_text(encoding="utf-8"))
