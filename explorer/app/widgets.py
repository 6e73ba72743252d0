"""Small widget helpers shared by the views: safe HTML, tables, charts, downloads."""

from __future__ import annotations

import base64
import html
from typing import TYPE_CHECKING

import ipywidgets as w
import pandas as pd

if TYPE_CHECKING:
    import altair as alt


def escape(text: object) -> str:
    """Model output and user text are text, never markup."""
    return html.escape(str(text), quote=True)


def number(value: float) -> str:
    """Whole numbers without decimals, others to three places; never "-0.000"."""
    if value != value:  # NaN
        return "–"
    if float(value).is_integer():
        return f"{int(value)}"
    text = f"{value:.3f}"
    return "0.000" if text == "-0.000" else text


def table_html(df: pd.DataFrame | None, max_rows: int = 60, css: str = "") -> str:
    """An HTML table with every cell escaped (pandas escapes by default; we insist)."""
    if df is None or df.empty:
        return "<em>nothing yet</em>"
    shown = df.head(max_rows)
    table = shown.to_html(
        index=False, escape=True, float_format=number, border=0, classes=f"fx-table {css}".strip()
    )
    more = len(df) - max_rows
    return table + (
        f"<div class='fx-note'>{more} more rows in the Data tab export</div>" if more > 0 else ""
    )


def chart_box(placeholder: str = "nothing yet") -> w.Box:
    box = w.Box([w.HTML(f"<em>{escape(placeholder)}</em>")], layout=w.Layout(overflow="auto", width="100%"))
    box.add_class("fx-chart")
    return box


# SVG: text in charts is real text (crisp in screenshots, found by screen readers and tests)
EMBED = {"renderer": "svg"}


def show_chart(
    box: w.Box, chart: alt.TopLevelMixin | None, placeholder: str = "nothing yet"
) -> None:
    """Draw `chart` in `box` as an interactive, offline-capable JupyterChart.

    Each box keeps one chart widget for its lifetime and gives it each new spec: a new widget
    per redraw leaked widget models and, with many pages redrawing at once, raced the front
    end's initialisation of the one it replaced ("Failed to initialize model"). For the same
    reason a box that shows its placeholder for a while (results cleared before a resample's
    scores arrive) keeps its widget rather than closing it."""
    kept = getattr(box, "_fx_chart", None)
    if chart is None:
        box.children = [w.HTML(f"<em>{escape(placeholder)}</em>")]
        return
    if kept is not None:
        kept.chart = chart
        if tuple(box.children) != (kept,):
            box.children = [kept]
        return
    from explorer.app.offline_chart import OfflineChart  # altair: imported by the first chart

    box._fx_chart = OfflineChart(chart, embed_options=EMBED)
    box.children = [box._fx_chart]


def download_link(data: bytes, filename: str, label: str, mime: str) -> str:
    payload = base64.b64encode(data).decode("ascii")
    return (
        f'<a class="fx-download" download="{escape(filename)}" '
        f'href="data:{mime};base64,{payload}">{escape(label)}</a>'
    )


STYLE = """
<style>
.fx-explorer { --fx-fg: var(--jp-ui-font-color1, #111827); --fx-muted: var(--jp-ui-font-color2, #4b5563);
  --fx-line: var(--jp-border-color2, #e5e7eb); --fx-soft: var(--jp-layout-color2, #f3f4f6); color: var(--fx-fg); }
.fx-title { font-size: 20px; font-weight: 600; margin: 4px 0 2px 0; }
.fx-sub { color: var(--fx-muted); margin-bottom: 8px; }
.fx-error { background: #fee2e2; color: #991b1b; border: 1px solid #fca5a5; border-radius: 6px; padding: 6px 10px; white-space: pre-wrap; }
.fx-status { background: var(--fx-soft); color: var(--fx-fg); border-radius: 6px; padding: 6px 10px; }
/* Under Voila the page scrolls as a page (full-page screenshots, find-in-page, the browser's
   own scrolling), not an inner box of a fixed viewport height. */
html { height: auto !important; overflow: auto !important; }
body[data-voila] { height: auto !important; overflow: visible !important; }
body[data-voila] #main, body[data-voila] #jp-main-content-panel, body[data-voila] #rendered_cells {
  position: relative !important; top: auto !important; left: auto !important; width: auto !important;
  height: auto !important; min-height: 0 !important; overflow: visible !important; contain: none !important; }
.fx-table { border-collapse: collapse; font-size: 12px; max-width: 100%; }
.fx-table th, .fx-table td { padding: 2px 8px; border-bottom: 1px solid var(--fx-line); text-align: left; white-space: pre-wrap; max-width: 420px; overflow-wrap: anywhere; }
.fx-table td:first-child { white-space: nowrap; }
.fx-note { color: var(--fx-muted); font-size: 12px; }
.fx-model { font-weight: 600; margin-bottom: 2px; }
.fx-relation { color: var(--fx-muted); font-size: 12px; }
.fx-download { margin-right: 14px; }
.fx-input { font-family: monospace; font-size: 12px; color: var(--fx-fg); white-space: pre-wrap; }
.fx-empty { background: var(--fx-soft); border-radius: 8px; padding: 10px 14px; margin: 6px 0; max-width: 760px; }
.fx-chip { border-radius: 4px; padding: 1px 6px; font-size: 12px; white-space: nowrap; }
.fx-legend { margin: 6px 0; line-height: 1.9; }
.fx-behaviour { font-weight: 600; overflow-wrap: anywhere; }
.fx-findings-list { margin: 4px 0 8px 0; padding-left: 20px; }
.fx-focus { border-top: 1px solid var(--fx-line); margin-top: 8px; padding-top: 6px; }
.fx-focus-cols { display: flex; flex-wrap: wrap; gap: 16px; }
.fx-focus-col { flex: 1 1 300px; max-width: 640px; }
.fx-focus-col li, .fx-findings-list li { overflow-wrap: anywhere; }
.fx-cell button, button.fx-cell { font-size: 12px; }
.fx-clusters { display: flex; flex-wrap: wrap; gap: 3px; margin: 2px 0 4px 0; }
</style>
"""
