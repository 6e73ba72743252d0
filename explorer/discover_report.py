"""The Discover section of the HTML report: what each descendant changed over the prompt set,
the words it raised and lowered, and the findings confirmed on fresh samples."""

from __future__ import annotations

import json
from typing import Any

from explorer import discover_charts
from explorer.core.findings import needed_as_text


def discovery_sections(found: Any, esc, table, chart_section, sentences) -> tuple[list[str], list[dict]]:
    """Report sections of a Discovery (the report's helpers passed in, to share its style)."""
    meta, specs = found.meta, []
    body = [f"<h2>Discover</h2><p>{esc(found.summary())} · family <b>{esc(meta.get('family', {}).get('name', ''))}</b>"
            f" · discovery sampling <code>{esc(json.dumps(meta.get('params', {})))}</code> · words ranked by "
            f"<b>{esc(meta.get('rank_by', 'excess'))}</b></p>"]  # fmt: skip
    made = [discover_charts.divergence_bars(found.df)] if len(found.df) else []
    made += [discover_charts.word_bars(found.words)] if len(found.words) else []
    body.append(chart_section("Where each descendant departs, and what it raised or lowered", specs, made))
    head = ("<h2>Discovered behaviours, labelled on fresh samples</h2><p class='note'>Each candidate word was "
            "proposed from the discovery samples and labelled on new ones; all labels of this page hold together "
            "(family-wise 95%, over every prompt).</p>")  # fmt: skip
    cols = ["prompt", "behaviour", "model", "label", "freq", "lo", "hi", "base_freq", "proposed_by"]
    shown = found.findings[[c for c in cols if c in found.findings]]
    body.append(head + sentences(found.findings) + table(needed_as_text(shown)))
    top = found.df[found.df["rank"] <= 5][["model", "rank", "prompt", "kl_mean", "kl_mean_on_base", "log_ratio", "stays"]]
    body.append("<h2>Prompts ranked per descendant (top 5)</h2>" + table(top))
    return body, specs
