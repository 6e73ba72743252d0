"""What the Attribution tab says about trusting an attribution, as small HTML strings shared by
the app and the report: the faithfulness of each method measured on a response, and each
descendant's agreement with the base beyond the method's noise. Pure text; every name and token
is escaped."""

from __future__ import annotations

import html

import pandas as pd


def escape(text: object) -> str:
    return html.escape(str(text), quote=True)


FAITHFUL_NOTE = (
    "Faithfulness on this response: the words each method ranks highest are deleted (or kept "
    "alone) and the response's log-prob measured; the number is the area between the insertion "
    "and deletion curves, in units of the largest change the prompt's words make on their own "
    "(deleting the whole prompt, or one word). Near 100%: the top words carry the change at "
    "every k; about 0: no better than a random order; below 0: the ranking points the wrong way."
)


def percent(value: float) -> str:
    return "–" if value != value else f"{value:.0%}"


def faithfulness_html(table: pd.DataFrame | None) -> str:
    """A sentence for the first model and a method × model table of every number."""
    if table is None or table.empty:
        return ""
    first = table["model"].iloc[0]
    mine = table[table["model"] == first].dropna(subset=["faithfulness"]).sort_values("faithfulness", ascending=False)
    parts = [f"{escape(m)} {percent(v)}" for m, v in zip(mine["method"], mine["faithfulness"], strict=True)]
    lead = f"On this response in {escape(first)}, the top-ranked words explain: {', '.join(parts)}." if parts else ""
    wide = table.pivot_table(index="method", columns="model", values="faithfulness", aggfunc="first", sort=False)
    head = "".join(f"<th>{escape(c)}</th>" for c in wide.columns)
    body = "".join(
        f"<tr><td>{escape(m)}</td>" + "".join(f"<td>{percent(v)}</td>" for v in row) + "</tr>"
        for m, row in zip(wide.index, wide.to_numpy(), strict=True)
    )
    return (f"<div class='fx-faithful'><b>{lead}</b><table class='fx-table'><tr><th>method</th>{head}</tr>{body}</table>"
            f"<div class='fx-note'>{escape(FAITHFUL_NOTE)}</div></div>")  # fmt: skip


def agreement_html(table: pd.DataFrame | None, base: str, method: str) -> str:
    """One sentence per descendant: its rank correlation with the base and the base's with
    itself, each with its interval, and the verdict; for relative methods the tokens whose
    change is beyond noise."""
    if table is None or table.empty:
        return ""
    if "spearman" not in table:
        return changes_html(table, method)
    lines = []
    for row in table.itertuples():
        if row.spearman != row.spearman:
            lines.append(f"{escape(row.model)}: too few answers ({row.n}) to compare with {escape(base)}.")
            continue
        verdict = "differs beyond the method's noise" if row.beyond_noise else "within the method's noise"
        lines.append(f"{escape(row.model)} ranks the prompt's tokens like {escape(base)} at ρ = {row.spearman:.2f} "
                     f"[{row.lo:.2f} – {row.hi:.2f}]; {escape(base)} against itself: {row.self:.2f} "
                     f"[{row.self_lo:.2f} – {row.self_hi:.2f}] → <b>{verdict}</b>.")  # fmt: skip
    note = (f"Agreement over each model's own answers ({escape(method)}): rank correlations of mean attributions "
            "over random halves of the samples, with their central 95%.")  # fmt: skip
    return "<div class='fx-agreement'>" + "<br>".join(lines) + f"<div class='fx-note'>{note}</div></div>"


def changes_html(table: pd.DataFrame, method: str) -> str:
    lines = []
    for model, rows in table.groupby("model", sort=False):
        beyond = rows[rows["beyond_noise"]]
        tokens = ", ".join(f"“{escape(t)}” {m:+.2f} [{lo:.2f} – {hi:.2f}]"
                           for t, m, lo, hi in zip(beyond["source_token"], beyond["mean"], beyond["lo"], beyond["hi"], strict=True))  # fmt: skip
        lines.append(f"{escape(model)}: " + (f"changes beyond noise on {tokens}" if tokens else "no token's change is beyond noise"))
    note = f"The change each adaptation made ({escape(method)}), over the model's own answers: 95% bootstrap intervals."
    return "<div class='fx-agreement'>" + "<br>".join(lines) + f"<div class='fx-note'>{note}</div></div>"
