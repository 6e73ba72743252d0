"""Small widget helpers shared by the views: safe HTML, tables, charts, downloads."""

from __future__ import annotations

import base64
import html

import altair as alt
import ipywidgets as w
import pandas as pd


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
    return w.Box(
        [w.HTML(f"<em>{escape(placeholder)}</em>")], layout=w.Layout(overflow="auto", width="100%")
    )


def show_chart(
    box: w.Box, chart: alt.TopLevelMixin | None, placeholder: str = "nothing yet"
) -> None:
    """Draw `chart` in `box` as an interactive, offline-capable JupyterChart.

    A chart already in the box is given the new spec rather than replaced: a new widget per
    redraw leaked widget models and, with many pages redrawing at once, raced the front end's
    initialisation of the one it replaced ("Failed to initialize model")."""
    if chart is None:
        _close_charts(box)
        box.children = [w.HTML(f"<em>{escape(placeholder)}</em>")]
        return
    current = box.children[0] if box.children else None
    if isinstance(current, alt.JupyterChart):
        current.chart = chart
        return
    box.children = [alt.JupyterChart(chart)]


def _close_charts(box: w.Box) -> None:
    for child in box.children:
        if isinstance(child, alt.JupyterChart):
            child.close()


def download_link(data: bytes, filename: str, label: str, mime: str) -> str:
    payload = base64.b64encode(data).decode("ascii")
    return (
        f'<a class="fx-download" download="{escape(filename)}" '
        f'href="data:{mime};base64,{payload}">{escape(label)}</a>'
    )


STYLE = """
<style>
.fx-title { font-size: 20px; font-weight: 600; margin: 4px 0 2px 0; }
.fx-sub { color: #4b5563; margin-bottom: 8px; }
.fx-error { background: #fee2e2; color: #991b1b; border: 1px solid #fca5a5; border-radius: 6px; padding: 6px 10px; white-space: pre-wrap; }
.fx-status { background: #f3f4f6; color: #374151; border-radius: 6px; padding: 6px 10px; }
.fx-table { border-collapse: collapse; font-size: 12px; }
.fx-table th, .fx-table td { padding: 2px 8px; border-bottom: 1px solid #e5e7eb; text-align: left; white-space: pre-wrap; max-width: 420px; }
.fx-table td:first-child { white-space: nowrap; }
.fx-note { color: #6b7280; font-size: 12px; }
.fx-model { font-weight: 600; margin-bottom: 2px; }
.fx-relation { color: #6b7280; font-size: 12px; }
.fx-download { margin-right: 14px; }
.fx-input { font-family: monospace; font-size: 12px; color: #374151; white-space: pre-wrap; }
</style>
"""
