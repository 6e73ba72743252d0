"""`Attribution`: scores per (model, target token, source token), with the text and settings
that made them; saved and loaded losslessly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from explorer.core.results import ResultFile


@dataclass
class Attribution:
    """Scores per (model, target token, source token), with the text and settings that made them."""

    df: pd.DataFrame
    meta: dict[str, Any]

    KIND = "Attribution"

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(self.df["model"]))

    def summary(self) -> str:
        """One sentence: the method, the text, and for integrated gradients the largest
        completeness gap (how far the attributions are from summing to the change)."""
        extra = self.meta.get("extra", {})
        gaps = [max(e["completeness_gap"]) for e in extra.values() if e.get("completeness_gap")]
        note = f" · completeness gap ≤ {max(gaps):.1%}" if gaps else ""
        unconverged = self.unconverged()
        if unconverged:
            note += f" · {unconverged} target(s) not converged (column converged; raise budget=)"
        target = self.meta.get("target", "logprob")
        what = "" if target == "logprob" else f" ({target})"
        return f"{self.meta['method']}{what} of “{self.meta['response']}” after “{self.meta['prompt']}”{note}"

    def unconverged(self) -> int:
        """How many (model, target) rows stopped before meeting the method's accuracy checks."""
        if "converged" not in self.df:
            return 0
        per_target = self.df.drop_duplicates(["model", "target_pos"])
        return int((~per_target["converged"].astype(bool)).sum())

    def matrix(self, model: str, normalise: str | None = None) -> pd.DataFrame:
        """Targets × sources for one model; `normalise` = None, "l1" (each target's absolute
        scores sum to 1) or "max" (each target's largest absolute score is 1)."""
        if model not in self.models:
            raise ValueError(
                f"model: {model!r} is not in this attribution ({', '.join(self.models)})"
            )
        df = self.df[self.df["model"] == model]
        m = df.pivot(index="target_pos", columns="source_pos", values="score")
        if normalise == "l1":
            m = m.div(m.abs().sum(axis=1).replace(0, 1), axis=0)
        elif normalise == "max":
            m = m.div(m.abs().max(axis=1).replace(0, 1), axis=0)
        elif normalise is not None:
            raise ValueError(f"normalise: None, 'l1' or 'max', got {normalise!r}")
        return m

    def sequence(self) -> pd.DataFrame:
        """Attribution of the whole response to each prompt token: per (model, source), the sum
        over targets (additive methods) or the max (norm-based methods)."""
        prompt = self.df[self.df["source_part"] == "prompt"]
        how = "sum" if self.meta.get("additive", True) else "max"
        out = prompt.groupby(["model", "source_pos", "source_token"], sort=False)["score"].agg(how)
        return out.reset_index()

    def diff(self, base: str | None = None) -> pd.DataFrame:
        """Each model minus the base on the same (target, source) cells."""
        base = base or self.models[0]
        ref = self.df[self.df["model"] == base].set_index(["target_pos", "source_pos"])["score"]
        rows = []
        for model in self.models:
            own = self.df[self.df["model"] == model].set_index(["target_pos", "source_pos"])
            d = own.assign(score=own["score"] - ref.reindex(own.index)).reset_index()
            rows.append(d)
        return pd.concat(rows, ignore_index=True)

    def rank_correlation(self, base: str | None = None) -> pd.DataFrame:
        """Spearman correlation of each model's sequence-level scores with the base's."""
        seq = self.sequence()
        base = base or self.models[0]
        ref = seq[seq["model"] == base].set_index("source_pos")["score"]
        rows = []
        for model in self.models:
            own = seq[seq["model"] == model].set_index("source_pos")["score"]
            rho = own.rank().corr(ref.reindex(own.index).rank())
            rows.append({"model": model, "spearman": float(rho) if pd.notna(rho) else float("nan")})
        return pd.DataFrame(rows)

    def faithfulness(self, family, replacement: str | int | None = None, progress=None, cancel=None):
        """How well this attribution's ranking of the prompt's words explains each model's
        response: deletion and insertion curves, ERASER's comprehensiveness and sufficiency, and
        `faithfulness`, the share of the change (from removing the whole prompt) that the
        top-ranked words account for (`explorer.core.attribution.faithfulness`). Runs one
        batched forward pass per model of `family` (the family it was computed in); the
        numbers are also kept in `meta["faithfulness"]`, so they are saved with it."""
        from explorer.core.attribution.faithfulness import faithfulness

        found = faithfulness(family, self, replacement, progress, cancel)
        kept = [row for row in self.meta.get("faithfulness", []) if row["method"] != self.meta["method"]]
        self.meta["faithfulness"] = kept + found.df.to_dict("records")
        return found

    def save(self, path) -> None:
        ResultFile(self.KIND).save(path, tables={"df": self.df}, meta=self.meta)

    @classmethod
    def load(cls, path) -> Attribution:
        tables, meta = ResultFile(cls.KIND).load(path)
        return cls(df=tables["df"], meta=meta)
