"""What a person would read in the app, gathered from its widgets without a browser: HTML text,
option labels, button and tab captions, and every string in every chart's data."""

from __future__ import annotations

import html
import re

import ipywidgets as w

TAG = re.compile(r"<[^>]+>")


def widgets_in(root: w.Widget):
    yield root
    for child in getattr(root, "children", ()):
        yield from widgets_in(child)


def chart_strings(spec: dict) -> list[str]:
    rows = [r for data in (spec.get("datasets") or {}).values() for r in data]
    rows += (spec.get("data") or {}).get("values", []) if isinstance(spec.get("data"), dict) else []
    return [str(v) for row in rows for v in row.values() if isinstance(v, str)]


def rendered_strings(root: w.Widget) -> list[str]:
    import altair as alt

    found: list[str] = []
    for widget in widgets_in(root):
        if isinstance(widget, w.HTML):
            found.append(html.unescape(TAG.sub(" ", widget.value)))
        elif isinstance(widget, (w.Select, w.SelectMultiple, w.Dropdown, w.ToggleButtons)):
            found += [str(label) for label, *_ in ((o if isinstance(o, tuple) else (o,)) for o in widget.options)]
        elif isinstance(widget, w.Button):
            found.append(widget.description)
        elif isinstance(widget, alt.JupyterChart):
            found += chart_strings(widget.spec or {})
        if isinstance(widget, w.Tab):
            found += list(widget.titles)
    return found
