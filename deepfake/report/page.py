"""report.html: one self-contained page (inline CSS, inline SVG charts and base64 JPEG thumbnails; nothing is
fetched, so it opens offline) drawn from summary.json's content, plus a seeded sample grid per dataset and class."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from deepfake.preprocess import LABELS
from deepfake.report.duplicates import CATEGORIES
from deepfake.report.inputs import Columns
from deepfake.report.scan import Scan
from deepfake.samples import Sample

_THUMB = 112
_HTML_EXAMPLES = 6  # duplicates shown with thumbnails per category
_HTML_ROWS = 200  # unreadable files listed (files.csv has them all)
_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1180px;
color:#1d2330;padding:0 16px}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #dde;padding-bottom:4px}
h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;margin:6px 0 12px}td,th{border:1px solid #dde;padding:3px 8px;text-align:left;
vertical-align:top}th{background:#f3f4f8}td.n{text-align:right;font-variant-numeric:tabular-nums}
.finding{margin:4px 0;padding:6px 10px;border-left:4px solid #999;background:#f7f7f9}
.high{border-color:#c62828;background:#fdecea}.medium{border-color:#ef8f00;background:#fff4e0}
.info{border-color:#5c7cfa;background:#eef2ff}.sev{font-weight:600;text-transform:uppercase;font-size:11px;
margin-right:6px}.grid{display:flex;flex-wrap:wrap;gap:6px}.grid figure{margin:0;width:112px;font-size:10px;
word-break:break-all;color:#555}.grid img,.pair img{display:block;max-width:112px;max-height:112px}
.pair{display:inline-flex;gap:4px;margin:0 14px 10px 0;font-size:11px;align-items:flex-end}
.muted{color:#667}code{font-size:12px}svg text{font-size:10px;fill:#555}
"""


def thumbnail_uri(path: str, size: int = _THUMB) -> str | None:
    """A small JPEG of the image as a data: URI, or None when it cannot be decoded."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (size * 2, size * 2))
            image = image.convert("RGB")
            image.thumbnail((size, size))
            buf = io.BytesIO()
            image.save(buf, "JPEG", quality=80)
    except Exception:  # noqa: BLE001 - a thumbnail is decoration: an odd file is just left out
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def sample_grids(cols: Columns, scan: Scan, per_grid: int, seed: int) -> list[dict]:
    """``per_grid`` seeded random readable files of each dataset and class."""
    rng = np.random.default_rng(seed)
    grids = []
    for code, name in enumerate(cols.datasets):
        for label in (0, 1):
            pool = np.flatnonzero((cols.dataset == code) & (cols.label == label) & scan.readable)
            chosen = np.sort(rng.choice(pool, size=min(per_grid, len(pool)), replace=False)) if len(pool) else pool
            grids.append({"dataset": name, "label": LABELS[label], "index": chosen.tolist()})
    return grids


def _e(value) -> str:
    return html.escape(str(value))


def _table(header: Sequence[str], rows: Iterable[Sequence], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="n">{_e(v)}</td>' if k in numeric else f"<td>{_e(v)}</td>"
                         for k, v in enumerate(row)) + "</tr>"
        for row in rows
    )  # fmt: skip
    return f"<table><tr>{head}</tr>{body}</table>"


def _figure(uri: str | None, caption: str) -> str:
    image = f'<img src="{uri}" alt="">' if uri else "<div>(no preview)</div>"
    return f"<figure>{image}<figcaption>{_e(caption)}</figcaption></figure>"


def _html_findings(found: list[dict]) -> str:
    if not found:
        return "<p>No findings: nothing in this data stood out.</p>"
    return "".join(
        f'<div class="finding {f["severity"]}"><span class="sev">{_e(f["severity"])}</span>{_e(f["text"])}</div>'
        for f in found
    )


def _html_counts(rows: list[dict]) -> str:
    body = [
        (r["dataset"], r["split"] or "(none)", r["real"], r["fake"], r["real"] + r["fake"], r["unreadable"])
        for r in rows
    ]
    totals = ("total", "", *(sum(r[k] for r in body) for k in (2, 3, 4, 5)))
    return _table(("dataset", "split", "real", "fake", "files", "unreadable"), [*body, totals], {2, 3, 4, 5})


def _short(table: dict, limit: int = 4) -> str:
    items = list(table.items())
    text = ", ".join(f"{k} ({v})" for k, v in items[:limit])
    return text + (f", +{len(items) - limit} more" if len(items) > limit else "")


def _profile_cells(p: dict) -> dict:
    """One class's column of the profile table."""
    q = p["jpeg_quality"]
    return {
        "files": p["files"],
        "unreadable": p["unreadable"],
        "formats": _short(p["formats"]),
        "colour modes": _short(p["modes"]),
        "sizes": _short(p["sizes"]),
        "distinct sizes": p["distinct_sizes"],
        "mean file size (KB)": p["mean_kb"],
        "JPEGs": q["jpegs"],
        "median JPEG quality": q["median"],
        "JPEG quality (count)": _short(q["histogram"]),
        "non-standard JPEG tables": q["nonstandard_tables"],
    }


def _html_profiles(profile: dict) -> str:
    parts = []
    for scope, classes in profile.items():
        real, fake = classes["real"], classes["fake"]
        r, f = _profile_cells(real), _profile_cells(fake)
        parts.append(f"<h3>{_e(scope)}</h3>" + _table(("", "real", "fake"), [(k, r[k], f[k]) for k in r]))
        parts.append(_quality_svg(real["jpeg_quality"]["histogram"], fake["jpeg_quality"]["histogram"]))
    return "".join(parts)


def _quality_svg(real: dict, fake: dict) -> str:
    """JPEG quality 1..100 as bars, each class as a share of its JPEGs (real left half, fake right half of a
    step). Inline SVG: drawn by the browser, nothing fetched."""
    if not real and not fake:
        return ""
    shares = [{int(q): n / (sum(table.values()) or 1) for q, n in table.items()} for table in (real, fake)]
    peak = max((s for share in shares for s in share.values()), default=0.0) or 1
    bars = [
        f'<rect x="{10 + (q - 1) * 5 + offset}" y="{90 - 80 * s / peak:.1f}" width="2.5" height="{80 * s / peak:.1f}" '
        f'fill="{colour}"/>'
        for share, colour, offset in zip(shares, ("#2e7d32", "#c62828"), (0, 2), strict=True)
        for q, s in share.items()
    ]
    ticks = "".join(
        f'<text x="{10 + (q - 1) * 5}" y="104" text-anchor="middle">{q}</text>' for q in (1, 25, 50, 75, 100)
    )
    legend = '<text x="10" y="10" style="fill:#2e7d32">real</text><text x="44" y="10" style="fill:#c62828">fake</text>'
    return (
        '<svg width="520" height="110" role="img" aria-label="JPEG quality per class">'
        f'<line x1="10" y1="90" x2="510" y2="90" stroke="#999"/>{"".join(bars)}{ticks}{legend}</svg>'
        '<div class="muted">JPEG quality (share of each class\'s JPEGs)</div>'
    )


def _html_duplicates(summary: dict) -> str:
    exact, near = summary["exact"], summary["near"]
    rows = [
        (title, exact["categories"][name]["groups"], exact["categories"][name]["files"], near["categories"][name])
        for name, title in CATEGORIES.items()
    ]
    parts = [
        f"<p>{exact['groups']} group(s) of byte-identical files ({exact['files']} files); {near['pairs']} "
        f"near-duplicate pair(s) whose perceptual hashes differ in at most {near['threshold']} of 64 bits.</p>",
        _table(("", "exact groups", "exact files", "near pairs"), rows, {1, 2, 3}),
    ]
    for name, title in CATEGORIES.items():
        shown = [_html_pair(g, "exact") for g in exact["examples"][name][:_HTML_EXAMPLES]]
        shown += [
            _html_pair([p["a"], p["b"]], f"{p['distance']} bits") for p in near["examples"][name][:_HTML_EXAMPLES]
        ]
        if shown:
            parts.append(f"<h3>{_e(title)}</h3>{''.join(shown)}")
    return "".join(parts)


def _html_pair(refs: list[dict], note: str) -> str:
    figures = "".join(
        _figure(thumbnail_uri(r["path"]), f"{r['label']} {r['split'] or ''} {r['dataset']}: {Path(r['path']).name}")
        for r in refs[:3]
    )
    return f'<div class="pair">{figures}<span class="muted">{_e(note)}</span></div>'


def _html_groups(grouping: dict) -> str:
    if not grouping["groups"]:
        return "<p>No group column (a split.csv with a group column, e.g. from data.group_by, gives one).</p>"
    rows = [(e["dataset"], e["group"], ", ".join(e["splits"])) for e in grouping["examples"]]
    text = f"<p>{grouping['in_two_splits']} of {grouping['groups']} groups span more than one split.</p>"
    return text + (_table(("dataset", "group", "splits"), rows) if rows else "")


def _html_unreadable(samples: Sequence[Sample], scan: Scan) -> str:
    if not scan.errors:
        return "<p>Every file could be read.</p>"
    rows = [(samples[i].path, reason) for i, reason in list(scan.errors.items())[:_HTML_ROWS]]
    more = len(scan.errors) - len(rows)
    return _table(("file", "reason"), rows) + (f"<p class='muted'>and {more} more in files.csv</p>" if more else "")


def _html_grids(grids: list[dict], samples: Sequence[Sample]) -> str:
    parts = []
    for grid in grids:
        figures = "".join(_figure(thumbnail_uri(samples[i].path), Path(samples[i].path).name) for i in grid["index"])
        parts.append(f'<h3>{_e(grid["dataset"])}: {_e(grid["label"])}</h3><div class="grid">{figures}</div>')
    return "".join(parts)


def render_html(summary: dict, samples: Sequence[Sample], scan: Scan, grids: list[dict]) -> str:
    roots = "".join(f"<li><code>{_e(r['root'])}</code> ({_e(r['layout'])}, {r['files']} files)</li>"
                    for r in summary["roots"])  # fmt: skip
    if summary["split_csv"]:
        roots += f"<li>splits from <code>{_e(summary['split_csv'])}</code></li>"
    timing = summary["timing"]
    sections = [
        ("Findings", _html_findings(summary["findings"])),
        ("Counts per dataset, split and class", _html_counts(summary["counts"])),
        ("Per class: sizes, formats, JPEG quality", _html_profiles(summary["profiles"])),
        ("Duplicates", _html_duplicates(summary["duplicates"])),
        ("Groups across splits", _html_groups(summary["groups"])),
        ("Unreadable files", _html_unreadable(samples, scan)),
        ("Samples", _html_grids(grids, samples)),
    ]
    body = "".join(f"<h2>{_e(title)}</h2>{content}" for title, content in sections)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Dataset report</title><style>{_CSS}</style></head><body>"
        f"<h1>Dataset report</h1><ul>{roots}</ul>"
        f"<p class='muted'>{summary['files']} files scanned in {timing['scan_seconds']:.1f} s "
        f"({timing['images_per_second']:.0f} images/s, {timing['workers']} worker(s)).</p>{body}</body></html>\n"
    )
