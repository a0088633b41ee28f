"""Static HTML reports of a run or a sweep.

One self-contained page: inline CSS, no JavaScript, nothing fetched from the network; images
are referenced by paths relative to the report, so a run directory can be moved or zipped
as a whole. All text is HTML-escaped. Files are written atomically (beside, flushed, renamed).
"""
from __future__ import annotations

import datetime as _dt
import html
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence
from urllib.parse import quote

from pipeline.leftovers import atomic_file
from pipeline.report.sections import Figure, Section, Table, format_percent, format_value, is_percent_column

__all__ = ["Figure", "Table", "Section", "format_value", "write_report", "write_sweep_index"]


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _href(target: str | os.PathLike, base_dir: Path) -> str:
    """URL-quoted relative link to ``target`` from ``base_dir`` (absolute paths are relativized)."""
    text = os.fspath(target)
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", text) and not re.match(r"^[a-zA-Z]:[\\/]", text):
        return _esc(text)  # already a URL (http:, file:, ...)
    p = Path(text)
    if p.is_absolute():
        try:
            text = os.path.relpath(p, base_dir.resolve())
        except ValueError:  # other drive on Windows
            text = p.as_uri()
            return _esc(text)
    text = text.replace(os.sep, "/")
    return _esc(quote(text, safe="/#?=&%~+-._"))


def _slug(text: str, used: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    slug, i = base, 2
    while slug in used:
        slug, i = f"{base}-{i}", i + 1
    used.add(slug)
    return slug


def atomic_write(path: Path, text: str) -> Path:
    """``text`` to ``path`` whole or not at all (:func:`pipeline.leftovers.atomic_file`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


_CSS = """
:root { --fg:#1d2330; --muted:#5b6475; --line:#dde2ea; --bg:#f5f7fa; --card:#fff; --accent:#2f6fdf; --nav:240px; }
* { box-sizing: border-box; }
html { scroll-behavior:auto; }
body { margin:0; font:15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color:var(--fg); background:var(--bg); }
header { background:#1f2a44; color:#fff; padding:14px 28px 12px; }
header h1 { margin:0; font-size:23px; font-weight:600; }
header p.subtitle { margin:4px 0 0; color:#c6cfe2; font-size:13px; overflow-wrap:anywhere; }
.page { display:flex; align-items:flex-start; }
main { flex:1 1 auto; min-width:0; max-width:1400px; padding:16px 28px 40px; }
nav.toc { flex:0 0 var(--nav); width:var(--nav); position:sticky; top:0; max-height:100vh; overflow-y:auto;
          background:var(--card); border-right:1px solid var(--line); padding:12px 10px 16px 14px; font-size:13.5px; }
nav.toc strong { display:block; font-size:12px; text-transform:uppercase; letter-spacing:.06em; color:var(--muted);
                 margin-bottom:4px; }
nav.toc ol { margin:2px 0; padding-left:16px; } nav.toc li { margin:2px 0; }
nav.toc ol ol { font-size:12.5px; padding-left:12px; list-style:none; }
nav.toc .fold-mark { color:var(--muted); font-size:11px; }
a { color:var(--accent); text-decoration:none; } a:hover { text-decoration:underline; }
section { margin:0 0 22px; }
section.level-1 { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:4px 22px 14px; }
section.level-2, section.level-3 { border-top:1px solid var(--line); padding-top:2px; margin-top:12px; margin-bottom:8px; }
.subs { display:flex; flex-wrap:wrap; align-items:flex-start; column-gap:28px; }
.subs > section { flex:0 1 auto; max-width:100%; min-width:260px; }
h2 { font-size:21px; margin:12px 0 6px; } h3 { font-size:17px; margin:10px 0 4px; }
h4, h5, h6 { font-size:15px; margin:8px 0 4px; }
p { margin:4px 0 8px; max-width:110ch; }
details.fold > summary, details.more > summary { cursor:pointer; list-style:none; }
details.fold > summary::-webkit-details-marker, details.more > summary::-webkit-details-marker { display:none; }
details.fold > summary > * { display:inline; }
details.fold > summary::before, details.more > summary::before { content:"\\25B8"; display:inline-block; width:1.1em;
          color:var(--accent); transition:transform .1s; }
details[open].fold > summary::before, details[open].more > summary::before { transform:rotate(90deg); }
.note { color:var(--muted); font-size:13px; font-weight:normal; margin-left:.6em; }
details.more { margin:4px 0 10px; }
details.more > summary { color:var(--accent); font-size:14px; }
.observations { background:#eef5ff; border-left:4px solid var(--accent); border-radius:4px;
                padding:6px 16px 6px 14px; margin:8px 0 12px; max-width:120ch; font-size:14px; }
.observations strong { display:block; font-size:12px; text-transform:uppercase; letter-spacing:.05em;
                       color:var(--accent); margin-bottom:2px; }
.observations ul { margin:2px 0; padding-left:20px; }
.table-wrap { overflow-x:auto; margin:8px 0 12px; max-height:50vh; overflow-y:auto; }
table { border-collapse:collapse; font-size:13.5px; background:var(--card); }
caption { caption-side:top; text-align:left; font-weight:600; padding:4px 0 6px; color:var(--muted); }
th, td { border:1px solid var(--line); padding:4px 9px; text-align:left; vertical-align:top; }
td.long { min-width:30ch; }
th { background:#eef1f6; font-weight:600; position:sticky; top:0; z-index:1; }
td.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
td.pic { padding:2px; } td.pic img { display:block; width:56px; height:56px; image-rendering:pixelated; }
tbody tr:nth-child(even) td { background:#fafbfd; }
.grid { display:flex; flex-wrap:wrap; gap:14px; margin:10px 0 12px; align-items:flex-start; }
figure.card { margin:0; background:var(--card); border:1px solid var(--line); border-radius:8px; flex:0 1 auto;
              max-width:100%; overflow:hidden; display:flex; flex-direction:column; box-shadow:0 1px 2px rgba(0,0,0,.04); }
figure.card.wide { flex:1 1 100%; }
figure.card a.img { display:block; background:#fff; padding:6px; cursor:zoom-in; }
figure.card a.img.jump { cursor:pointer; }
figure.card img { display:block; width:100%; height:auto; image-rendering:auto; }
figure.card.wide img { width:auto; max-width:100%; margin:0 auto; }
figure.card figcaption { padding:6px 12px 8px; font-size:13px; color:var(--muted); border-top:1px solid var(--line); }
section.deliverables .grid { flex-wrap:nowrap; }
section.deliverables figure.card { flex:1 1 0; }
section.deliverables figure.card img { height:260px; width:100%; object-fit:contain; }
section.deliverables figcaption b { color:var(--fg); }
img.thumb { display:block; width:220px; height:auto; border:1px solid var(--line); cursor:zoom-in; }
footer { color:var(--muted); font-size:12px; text-align:center; padding:10px 0 24px; }
@media (max-width:1000px) { .page { display:block; } nav.toc { position:static; width:auto; max-height:none;
          border-right:0; border-bottom:1px solid var(--line); } section.deliverables .grid { flex-wrap:wrap; } }
@media (max-width:700px) { main { padding:12px; } header { padding:12px; } }
@media print { figure.card { break-inside:avoid; } nav.toc { display:none; } details > *:not(summary) { display:block; } }
"""


def _page(title: str, subtitle: str, body: str, nav: str = "") -> str:
    created = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z").strip()
    sub = f'<p class="subtitle">{_esc(subtitle)}</p>' if subtitle else ""
    footer = f"<footer>generated by cnnvis on {_esc(created)}</footer>"
    main = f"<main>\n{body}\n{footer}\n</main>"  # the footer inside: the contents bar stays in view to the end
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{_esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<header><h1>{_esc(title)}</h1>{sub}</header>\n"
        + (f'<div class="page">\n{nav}\n{main}\n</div>\n' if nav else f"{main}\n")
        + "</body>\n</html>\n"
    )


# --------------------------------------------------------------------------- rendering
def _is_num(v: Any) -> bool:
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:
        v = v.item()
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _cell_html(v: Any, base_dir: Path, percent: bool = False) -> str:
    if percent and _is_num(v) and 0.0 <= float(v) <= 1.0:
        return f'<td class="num">{_esc(format_percent(float(v)))}</td>'
    if isinstance(v, Figure):  # a picture in a cell: a small thumbnail, a link to the file
        href = _href(v.path, base_dir)
        return (f'<td class="pic"><a href="{href}" title="{_esc(v.caption)}"><img src="{href}" '
                f'alt="{_esc(v.caption)}"></a></td>')
    if _is_num(v):
        return f'<td class="num">{_esc(format_value(v))}</td>'
    return f"<td>{_esc(format_value(v))}</td>"


def _table_html(table: Table, base_dir: Path = Path("."), fold_long: bool = True) -> str:
    head = "".join(f"<th>{_esc(c)}</th>" for c in table.columns)
    body = []
    percent = [is_percent_column(str(c)) for c in table.columns]
    for row in table.rows:
        body.append(f"<tr>{''.join(_cell_html(v, base_dir, p) for v, p in zip(row, percent))}</tr>")
    cap = f"<caption>{_esc(table.caption)}</caption>" if table.caption else ""
    html_table = (f'<div class="table-wrap"><table>{cap}<thead><tr>{head}</tr></thead>'
                  f'<tbody>{"".join(body)}</tbody></table></div>')
    if fold_long and len(table.rows) > LONG_TABLE_ROWS:  # a long table opens on demand
        return (f'<details class="more"><summary>{_esc(table.caption or "table")}: {len(table.rows)} rows '
                f"(click to open)</summary>{html_table}</details>")
    return html_table


def _image_size(path: Path) -> tuple[int, int] | None:
    try:
        from PIL import Image

        with Image.open(path) as im:
            return im.size
    except Exception:  # missing file, not an image, no Pillow: size unknown
        return None


#: A figure is shown at its own pixel width (text drawn at >= 8 pt stays >= 12 px at the figures' dpi),
#: shrunk only to fit the page, and never narrower than this; a click opens the file at full size.
MIN_SHOWN_PX = 360
_CARD_PAD_PX = 14  # the link's padding and the card's border


def shown_width(size: tuple[int, int] | None) -> int | None:
    """The width (CSS px) of a figure's card for an image of ``size`` pixels (None: unknown)."""
    return None if size is None else max(size[0], MIN_SHOWN_PX) + _CARD_PAD_PX


def _caption_html(text: str) -> str:
    return "<br>".join(_esc(line) for line in text.split("\n"))


def _cards_html(figures: Sequence[Figure], base_dir: Path) -> str:
    cards = []
    for fig in figures:
        href = _href(fig.path, base_dir)
        name = Path(os.fspath(fig.path)).name
        alt = _esc(fig.caption.split("\n")[0] if fig.caption else name)
        cap = f"<figcaption>{_caption_html(fig.caption)}</figcaption>" if fig.caption else ""
        wide = fig.wide
        size = _image_size(base_dir / Path(os.fspath(fig.path)))
        if wide is None:
            wide = bool(size and size[0] >= 2.2 * size[1]) and fig.max_width is None
        dims = f' width="{size[0]}" height="{size[1]}"' if size else ""
        cls = "card wide" if wide else "card"
        width = shown_width(size) or MIN_SHOWN_PX + _CARD_PAD_PX
        if fig.max_width is not None:
            width = min(width, fig.max_width)
        style = "" if wide else f' style="width:{width}px"'
        if fig.href:
            link = f'<a class="img jump" href="{_esc(fig.href)}" title="go to the section">'
        else:
            link = f'<a class="img" href="{href}" title="{_esc(name)}: click for full size">'
        cards.append(f'<figure class="{cls}"{style}>{link}'
                     f'<img src="{href}" alt="{alt}"{dims} loading="lazy"></a>{cap}</figure>')
    return f'<div class="grid">{"".join(cards)}</div>' if cards else ""


#: a table with more rows than this is folded (its caption and row count stay in view)
LONG_TABLE_ROWS = 12
#: observations shown open at the top of a section; the others under "n more observations"
SHOWN_OBSERVATIONS = 3

#: the width (CSS px) a figure gets at most in a 1400 px window (the contents bar and the margins aside), and
#: the height above which a figure is folded: taller than about 1.4 screens, it is never seen at once anyway
PAGE_WIDTH_PX, TALL_PX = 1060, 1300


def _too_tall(fig: Figure, base_dir: Path) -> bool:
    if fig.href and fig.max_width:  # a thumbnail leading to a section (the deliverables' cards): never folded
        return False
    size = _image_size(base_dir / Path(os.fspath(fig.path)))
    if size is None or not size[0]:
        return False
    width = min(shown_width(size) - _CARD_PAD_PX, PAGE_WIDTH_PX, fig.max_width or PAGE_WIDTH_PX)
    return size[1] * width / size[0] > TALL_PX


def _figures_html(figures: Sequence[Figure], base_dir: Path) -> str:
    """The open figures as cards, then the folded ones (and those taller than :data:`TALL_PX`)
    under a closed "n more figures"."""
    tall = {id(f) for f in figures if not f.folded and _too_tall(f, base_dir)}
    shown = [f for f in figures if not f.folded and id(f) not in tall]
    folded = [f for f in figures if f.folded or id(f) in tall]
    out = _cards_html(shown, base_dir)
    if folded:
        n = len(folded)
        what = "more figure" if shown else "figure"
        tall_note = ", taller than the window" if all(id(f) in tall for f in folded) else ""
        out += (f'<details class="more"><summary>{n} {what}{"s" if n != 1 else ""}{tall_note} (click to open)</summary>'
                f"{_cards_html(folded, base_dir)}</details>")
    return out


def _count_figures(sec: Section) -> int:
    return len(sec.figures) + sum(_count_figures(s) for s in sec.subsections)


def _section_html(sec: Section, level: int, base_dir: Path, slugs: dict[int, str]) -> str:
    h = min(level + 1, 6)
    note = sec.note
    if sec.folded and not note:
        n = _count_figures(sec)
        note = f"{n} figure{'s' if n != 1 else ''}, folded: click to open" if n else "folded: click to open"
    note_html = f'<span class="note">{_esc(note)}</span>' if note else ""
    heading = f"<h{h}>{_esc(sec.title)}</h{h}>{note_html}"
    classes = f"level-{level}" + (" folded" if sec.folded else "") + (f" {sec.anchor}" if sec.anchor else "")
    parts = [f'<section class="{classes}" id="{slugs[id(sec)]}">']
    parts.append(f'<details class="fold"><summary>{heading}</summary>' if sec.folded else heading)
    parts += [f"<p>{_esc(p)}</p>" for p in sec.paragraphs]
    if sec.links:
        parts.append('<p class="links">See ' + "; ".join(f'<a href="{_href(href, base_dir)}">{_esc(text)}</a>'
                                                          for text, href in sec.links) + ".</p>")
    if sec.observations:
        first, rest = sec.observations[:SHOWN_OBSERVATIONS], sec.observations[SHOWN_OBSERVATIONS:]
        items = "".join(f"<li>{_esc(o)}</li>" for o in first)
        more = ""
        if rest:
            more = (f'<details class="more"><summary>{len(rest)} more observation{"s" if len(rest) != 1 else ""} '
                    f'(click to open)</summary><ul>{"".join(f"<li>{_esc(o)}</li>" for o in rest)}</ul></details>')
        parts.append(f'<div class="observations"><strong>Observations</strong><ul>{items}</ul>{more}</div>')
    parts += [_table_html(t, base_dir, fold_long=not sec.folded) for t in sec.tables]  # one click, not two
    parts.append(_figures_html(sec.figures, base_dir))
    if sec.subsections:  # side by side where they are narrow (a row of small grids, of folded headings)
        parts.append('<div class="subs">' + "\n".join(_section_html(s, level + 1, base_dir, slugs)
                                                      for s in sec.subsections) + "</div>")
    if sec.folded:
        parts.append("</details>")
    parts.append("</section>")
    return "\n".join(p for p in parts if p)


def _assign_slugs(sections: Iterable[Section], used: set[str], out: dict[int, str]) -> None:
    for s in sections:
        if s.anchor and s.anchor not in used:
            used.add(s.anchor)
            out[id(s)] = s.anchor
        else:
            out[id(s)] = _slug(s.anchor or s.title, used)
        _assign_slugs(s.subsections, used, out)


def _toc(sections: Sequence[Section], slugs: dict[int, str], depth: int = 0) -> str:
    if not sections or depth > 1:
        return ""
    items = "".join(f'<li><a href="#{slugs[id(s)]}">{_esc(s.title)}</a>'
                    + (' <span class="fold-mark" title="folded">(folded)</span>' if s.folded else "")
                    + _toc(s.subsections, slugs, depth + 1) + "</li>"
                    for s in sections)
    return f"<ol>{items}</ol>"


def write_report(path, title: str, sections: Sequence[Section], subtitle: str = "") -> Path:
    """Write the report page to ``path`` (atomically) and return it."""
    path = Path(path)
    base_dir = path.parent
    slugs: dict[int, str] = {}
    _assign_slugs(sections, set(), slugs)
    nav = f'<nav class="toc"><strong>Contents</strong>{_toc(sections, slugs)}</nav>' if len(sections) > 1 else ""
    body = [_section_html(s, 1, base_dir, slugs) for s in sections]
    return atomic_write(path, _page(title, subtitle, "\n".join(body), nav))


def write_sweep_index(path, title: str, runs: Sequence[Mapping[str, Any]],
                      sections: Sequence[Section] = ()) -> Path:
    """Index page of a sweep: one table row per run, linking to its report.

    Each run is a dict with ``label``, ``href`` (the run's ``index.html``; relative to the
    sweep directory, absolute paths are made relative), optionally ``thumbnail`` (its main
    figure: shown small, a link to the full-size file) and either ``summary`` (a dict) or its
    summary pairs as the remaining keys. Columns are the union of the summary keys, in order
    of first appearance. ``sections`` (e.g. scores compared across the runs) follow the table.
    """
    path = Path(path)
    base_dir = path.parent
    summaries: list[Mapping[str, Any]] = []
    columns: list[str] = []
    for run in runs:
        summary = run.get("summary")
        if summary is None:
            summary = {k: v for k, v in run.items() if k not in ("label", "href", "thumbnail")}
        summaries.append(summary)
        for k in summary:
            if k not in columns:
                columns.append(str(k))
    thumbs = any(run.get("thumbnail") for run in runs)
    head = "<th>run</th>" + ("<th>main figure</th>" if thumbs else "") + "".join(f"<th>{_esc(c)}</th>" for c in columns)
    rows = []
    for run, summary in zip(runs, summaries):
        label = _esc(run.get("label", run.get("href", "")))
        cell = f'<a href="{_href(run["href"], base_dir)}">{label}</a>' if run.get("href") else label
        tds = []
        for c in columns:
            v = summary.get(c)
            text = format_percent(float(v)) if is_percent_column(c) and _is_num(v) and 0 <= float(v) <= 1 \
                else format_value(v)
            cls = ' class="num"' if _is_num(v) else (' class="long"' if len(text) > 40 else "")
            tds.append(f"<td{cls}>{_esc(text)}</td>")
        thumb = ""
        if thumbs:
            t = run.get("thumbnail")
            thumb = (f'<td><a href="{_href(t, base_dir)}" title="click for full size"><img class="thumb" '
                     f'src="{_href(t, base_dir)}" alt="main figure of {label}" loading="lazy"></a></td>' if t else "<td></td>")
        rows.append(f"<tr><td>{cell}</td>{thumb}{''.join(tds)}</tr>")
    n = len(runs)
    body = (f'<section class="level-1" id="runs"><h2>Runs</h2>'
            f"<p>{n} run{'s' if n != 1 else ''} in this sweep; each link opens that run's report.</p>"
            f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div></section>')
    slugs: dict[int, str] = {}
    _assign_slugs(sections, {"runs"}, slugs)
    body += "".join(_section_html(sec, 1, base_dir, slugs) for sec in sections)
    return atomic_write(path, _page(title, "", body))
