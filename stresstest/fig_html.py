"""The HTML page of a report: the formats of its tables' cells, the tables, and the page
itself, which holds every PNG as a data URI so that it refers to no other file."""

from __future__ import annotations

import html
import json
from pathlib import Path

from .formats import fmt as table_fmt
from .formats import money, num, pct

def fmt_money(v: float) -> str:
    return money(v, table=True)


def fmt_pct(v: float, digits: int = 2) -> str:
    return pct(v, digits, table=True)


def fmt_num(v: float) -> str:
    return num(v, table=True)


def fmt(name: str, v: float) -> str:
    return table_fmt(name, v, table=True)


def header(name: str, currency: str) -> str:
    return {"npv": f"NPV (M {currency})", "irr": "IRR", "roi": "ROI", "equity_irr": "equity IRR",
            "min_dscr": "min DSCR", "payback_months": "payback (months)"}.get(name, name)


CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1000px;
margin:2em auto;padding:0 1em;color:#111;line-height:1.4}
table{border-collapse:collapse;margin:0.5em 0 1.2em}th,td{border:1px solid #bbb;padding:0.25em 0.6em}
th{background:#eee;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1.5em 0}figure img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption{font-size:0.9em;color:#333}.note{background:#fff8dc;border-left:4px solid #c90;padding:0.4em 0.8em}
code,pre{font-size:0.85em}pre{white-space:pre-wrap;word-break:break-all;background:#f6f6f6;padding:0.6em}"""


def escape(s) -> str:
    return html.escape(str(s), quote=True)


def table(head: list[str], rows: list[list[str]], num_cols=()) -> str:
    num = set(num_cols)
    out = ["<table>", "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"]
    for r in rows:
        out.append("<tr>" + "".join(f'<td class="num">{escape(c)}</td>' if i in num else f"<td>{escape(c)}</td>"
                                    for i, c in enumerate(r)) + "</tr>")
    out.append("</table>")
    return "\n".join(out)


def data_uri(path: Path) -> str:
    """A PNG as a data URI, so that the page holds its images and can be mailed alone."""
    import base64

    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def page(title: str, prov: list[tuple[str, str]], body: list[str], captions: dict, written: list[str],
          notes: list[str], config: str | None, folder: Path) -> str:
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{escape(title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
             f"<h1>{escape(title)}</h1>", "<h2>Provenance</h2>",
             table(["field", "value"], [[k, v] for k, v in prov])]
    parts += [f'<p class="note">{escape(n)}</p>' for n in notes]
    parts += body
    parts.append("<h2>Figures</h2>")
    for name in written:
        cap = captions.get(name, name)
        parts.append(f'<figure><img src="{data_uri(folder / name)}" alt="{escape(cap)}">'
                     f'<figcaption>{escape(cap)} <code>{escape(name)}</code></figcaption></figure>')
    if config:
        try:
            config = json.dumps(json.loads(config), indent=1)
        except ValueError:
            pass
        parts.append("<details><summary>Configuration (JSON, as stored in the file)</summary>"
                     f"<pre>{escape(config)}</pre></details>")
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)
