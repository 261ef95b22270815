"""Data Docs that work with no network: every page pointed at vendored copies of its CSS and JavaScript.

Great Expectations' page templates load Bootstrap, jQuery, bootstrap-table, Font Awesome, ... from
CDNs, and GE has no setting for it (its maintainers declined offline Data Docs). On a hospital
network without internet the pages are unstyled and the index, whose table bootstrap-table draws
from data in the page, lists no validation at all. :func:`make_offline` copies the vendored files
(``clms_etl/data/vendor/``, versions and licences in its README) into the site's ``static/vendor/``
and rewrites every page's ``<script>``, ``<link>`` and ``<img>`` addresses to them, following
``clms_etl/data/vendor/data_docs.toml``; the site's own CSS gets GE's local logo.
"""

from __future__ import annotations

import os
import re
import shutil
import tomllib
from functools import cache
from importlib import resources
from pathlib import Path

VENDOR_SUBDIR = Path("static") / "vendor"  # in the site
# an asset tag (not a hyperlink) whose address is on the internet
_ASSET_TAG = re.compile(r"<(script|link|img)\b[^>]*?\b(?:src|href)=\"(https?://[^\"]+)\"[^>]*>(?:\s*</script>)?",
                        re.IGNORECASE)
# the site's own static files: GE gets the depth wrong on the pages of a dotted suite name (favicon)
_STATIC_ADDRESS = re.compile(r"(<(?:script|link|img)\b[^>]*?\b(?:src|href)=\")((?:\.\.?/)*static/[^\"]+)\"",
                             re.IGNORECASE)
_CSS_URL = re.compile(r"url\((['\"]?)(https?://[^)'\"]+)\1\)")
_CORS_ATTRIBUTES = re.compile(r"\s+(?:integrity|crossorigin)=\"[^\"]*\"")  # a file:// page cannot satisfy them


def vendor_dir() -> Path:
    return Path(str(resources.files("clms_etl") / "data" / "vendor"))


@cache
def _plan() -> dict:
    return tomllib.loads((vendor_dir() / "data_docs.toml").read_text(encoding="utf-8"))


def make_offline(site: Path) -> list[Path]:
    """Point every page and stylesheet of the Data Docs site at ``site`` at local files (see the
    module docstring); pages already rewritten are left as they are. Returns the files rewritten."""
    site = Path(site)
    vendor = site / VENDOR_SUBDIR
    if not vendor.exists():
        shutil.copytree(vendor_dir(), vendor, ignore=shutil.ignore_patterns("*.toml", "*.md", "__pycache__"))
    rewritten = []
    for page in sorted(site.rglob("*.html")):
        text = page.read_text(encoding="utf-8")
        new = _ASSET_TAG.sub(lambda m: _local_tag(m, site, page, text), text)
        new = _STATIC_ADDRESS.sub(lambda m: _static_address(m, site, page), new)
        if new != text:
            page.write_text(new, encoding="utf-8")
            rewritten.append(page)
    for sheet in sorted((site / "static" / "styles").glob("*.css")):
        text = sheet.read_text(encoding="utf-8")
        new = _CSS_URL.sub(lambda m: _local_url(m, site, sheet), text)
        if new != text:
            sheet.write_text(new, encoding="utf-8")
            rewritten.append(sheet)
    return rewritten


def _local_tag(match: re.Match, site: Path, page: Path, text: str) -> str:
    tag, url = match.group(0), match.group(2)
    plan, bare = _plan(), url.split("?", 1)[0]
    if bare in plan["unused_unless"] and plan["unused_unless"][bare] not in text:
        return ""
    local = _local_path(bare, site)
    if local is None:
        return tag  # unknown: left for the test to report
    return _CORS_ATTRIBUTES.sub("", tag.replace(url, _relative(local, page)))


def _static_address(match: re.Match, site: Path, page: Path) -> str:
    address = match.group(2)
    if (page.parent / address).exists():
        return match.group(0)
    target = site / "static" / address.split("static/", 1)[1]
    return f'{match.group(1)}{_relative(target, page)}"' if target.exists() else match.group(0)


def _local_url(match: re.Match, site: Path, sheet: Path) -> str:
    local = _local_path(match.group(2).split("?", 1)[0], site)
    return match.group(0) if local is None else f"url({_relative(local, sheet)})"


def _local_path(url: str, site: Path) -> Path | None:
    plan = _plan()
    if url in plan["local"]:
        return site / VENDOR_SUBDIR / plan["local"][url]
    if url in plan["ge_static"]:
        return site / "static" / plan["ge_static"][url]
    return None


def _relative(target: Path, source: Path) -> str:
    return Path(os.path.relpath(target, source.parent)).as_posix()
