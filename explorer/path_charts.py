"""Chart builders for amplified sampling: each behaviour's rate along the base → descendant
logit path (explorer.core.extrapolate tables in, altair charts out; nothing displays)."""

from __future__ import annotations

import pandas as pd

from explorer.lazy import LazyModule

alt = LazyModule("altair")  # imported by the first chart, not by the app's start



def rate_by_lambda_chart(rates: pd.DataFrame, fits: pd.DataFrame | None = None,
                         curve: pd.DataFrame | None = None, descendant: str = "the descendant") -> alt.LayerChart:  # fmt: skip
    """Each behaviour's rate at every λ with its 95% interval (λ = 0 is the base, 1 the
    descendant, above 1 amplified); with `curve`, the fitted log-odds line, and with `fits`, the
    λ = 1 rate read back from the larger λ as a diamond with its interval."""
    colour = alt.Color("behaviour:N", title="behaviour", sort=list(dict.fromkeys(rates["behaviour"])))
    x = alt.X("lam:Q", title=f"λ  (0 = base, 1 = {descendant}, > 1 amplified)")
    base = alt.Chart(rates).encode(x=x, color=colour, tooltip=[
        "behaviour:N", "model:N", alt.Tooltip("lam:Q", title="λ"), "count:Q", "n:Q",
        alt.Tooltip("freq:Q", format=".1%"), alt.Tooltip("lo:Q", format=".1%"), alt.Tooltip("hi:Q", format=".1%"),
    ])  # fmt: skip
    layers = [
        base.mark_rule(strokeWidth=2).encode(y=alt.Y("lo:Q", title="rate (95% interval)", axis=alt.Axis(format="%"), scale=alt.Scale(domain=[0, 1])), y2="hi:Q"),
        base.mark_point(filled=True, size=70).encode(y="freq:Q"),
    ]  # fmt: skip
    if curve is not None and len(curve):
        layers.append(alt.Chart(curve).mark_line(strokeDash=[4, 3]).encode(x="lam:Q", y="rate:Q", color=colour))
    if fits is not None and fits["estimate"].notna().any():
        shown = fits[fits["estimate"].notna()]
        read = alt.Chart(shown).encode(x="at:Q", color=colour, tooltip=[
            "behaviour:N", alt.Tooltip("estimate:Q", format=".2%", title="read back at λ = 1"),
            alt.Tooltip("lo:Q", format=".2%"), alt.Tooltip("hi:Q", format=".2%"), alt.Tooltip("fitted_on:N", title="fitted on λ"),
        ])  # fmt: skip
        layers += [read.mark_rule(strokeWidth=5, opacity=0.35).encode(y="lo:Q", y2="hi:Q"),
                   read.mark_point(shape="diamond", size=150, filled=True, stroke="#111827").encode(y="estimate:Q")]  # fmt: skip
    title = "Rate along the path: z = z_base + λ (z_desc − z_base); ◆ the λ = 1 rate read back from larger λ"
    return alt.layer(*layers).properties(width=560, height=260, title=title)
