"""Findings: what each adaptation changed, at a glance — one cell per (behaviour, descendant)
with its label and both rates, one sentence per decided finding, and the responses behind a cell.

Built from the provenance table (`explorer.core.provenance`), whose labels hold together at a
family-wise error rate of 5% (`explorer.core.labels`), so every sentence here is a claim.
"""

from __future__ import annotations

import pandas as pd

from explorer.core.patterns import Matcher
from explorer.core.samples import SampleSet

LABELS = ("introduced", "amplified", "suppressed", "inherited", "absent", "inconclusive")
CHANGES = ("introduced", "amplified", "suppressed")
COLUMNS = ["behaviour", "model", "label", "freq", "lo", "hi", "base", "base_freq", "base_lo", "base_hi", "n",
           "base_n", "n_needed", "sentence"]  # fmt: skip


def rate(freq: float, lo: float, hi: float) -> str:
    """"100% [81–100]": a rate and its 95% interval, in percent."""
    return f"{freq:.0%} [{lo * 100:.0f}–{hi * 100:.0f}]"


def findings(provenance: pd.DataFrame) -> pd.DataFrame:
    """One row per (behaviour, descendant) of a provenance table, changes first, then
    inherited, absent and inconclusive; each with a sentence."""
    if provenance is None or provenance.empty:
        return pd.DataFrame(columns=COLUMNS)
    base_rows = provenance[provenance["label"] == "base"].set_index("behaviour")
    rows = []
    for r in provenance[provenance["label"] != "base"].itertuples():
        b = base_rows.loc[r.behaviour]
        row = {"behaviour": r.behaviour, "model": r.model, "label": r.label, "freq": r.freq, "lo": r.lo,
               "hi": r.hi, "base": b["model"], "base_freq": b["freq"], "base_lo": b["lo"], "base_hi": b["hi"],
               "n": r.n, "base_n": b["n"], "n_needed": r.n_needed}  # fmt: skip
        rows.append(row | {"sentence": sentence(row)})
    out = pd.DataFrame(rows, columns=COLUMNS)
    order = out["label"].map({name: i for i, name in enumerate(LABELS)})
    return out.assign(_order=order).sort_values(["_order"], kind="stable").drop(columns="_order").reset_index(drop=True)


def sentence(row: dict) -> str:
    """"fable-cheerful amplified “sunny”: 100% [81–100] vs 38% [18–61] in fable-base"."""
    rates = f"{rate(row['freq'], row['lo'], row['hi'])} vs {rate(row['base_freq'], row['base_lo'], row['base_hi'])} in {row['base']}"
    what = f"“{row['behaviour']}”"
    if row["label"] == "inconclusive":
        more = f"; about {row['n_needed']} samples per model would decide it" if row.get("n_needed") else ""
        return f"{row['model']}: not yet decided for {what} ({rates}){more}"
    if row["label"] == "absent":
        return f"{row['model']} and {row['base']} do not show {what} ({rates})"
    return f"{row['model']} {row['label']} {what}: {rates}"


def needed_as_text(table: pd.DataFrame) -> pd.DataFrame:
    """`table` with `n_needed` as text for people: the number where a label is inconclusive,
    blank where it is decided (the column holds None or NaN there)."""
    if "n_needed" not in table:
        return table
    return table.assign(n_needed=table["n_needed"].map(lambda v: "" if v is None or v != v else f"{int(v)}"))


def decided(table: pd.DataFrame) -> pd.DataFrame:
    """The findings worth a sentence: changes and inherited behaviours."""
    return table[table["label"].isin((*CHANGES, "inherited"))]


def responses_behind(
    samples: SampleSet, clusters: pd.Series | None, behaviours: dict[str, str], behaviour: str, models: list[str]
) -> pd.DataFrame:
    """The samples of `models` that show `behaviour` (a user regex, or an answer cluster named
    "≈ …"), with their text: what a finding's cell counted."""
    df = samples.df
    if behaviour in behaviours:
        hit = df["text"].astype(str).map(Matcher(behaviours[behaviour], behaviour))
    elif clusters is not None and behaviour.startswith("≈ "):
        hit = clusters.reindex(df.index) == behaviour[2:]
    else:
        raise ValueError(f"behaviour: {behaviour!r} is neither a behaviour of this run nor an answer cluster")
    shown = df[hit & df["model"].isin(models)]
    return shown[["model", "sample", "text"]].reset_index(drop=True)
