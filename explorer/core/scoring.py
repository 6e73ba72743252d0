"""Teacher-forced scoring: log-probs of given text under any member, cross-scoring of samples,
per-token log-ratios against the base, and per-position KL/JS divergence."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd
import torch

from explorer.core.family import Family
from explorer.core.member import Member, model_input
from explorer.core.params import check_prompt
from explorer.core.samples import SampleSet
from explorer.core.tokens import token_texts


def encode(member: Member, text: str, special: bool = True) -> list[int]:
    return member.tokenizer(text, add_special_tokens=special)["input_ids"]


def score_texts(
    family: Family,
    prompt: str,
    responses: Sequence[str],
    models: list[str] | None = None,
    chat: str = "auto",
) -> pd.DataFrame:
    """Teacher-forced log-prob of each response after `prompt`, under each chosen member:
    one row per (model, response) with per-token log-probs, their sum and mean."""
    check_prompt(prompt)
    rows = []
    for label in models or family.labels:
        loaded = family.load(label)
        prefix = encode(loaded, model_input(loaded, prompt, chat))
        conts = [encode(loaded, r, special=False) for r in responses]
        for i, (r, lp) in enumerate(zip(responses, _score(loaded, prefix, conts), strict=True)):
            rows.append(_score_row(label, i, r, lp))
    return pd.DataFrame(rows)


def _score(
    loaded: Member, prefix: list[int], conts: list[list[int]], cancel=None
) -> list[torch.Tensor]:
    nonempty = [i for i, c in enumerate(conts) if c]
    scored = loaded.continuation_logprobs(
        [prefix] * len(nonempty), [conts[i] for i in nonempty], cancel=cancel
    )
    result = [torch.zeros(0)] * len(conts)
    for i, lp in zip(nonempty, scored, strict=True):
        result[i] = lp
    return result


def _score_row(label: str, index: int, text: str, lp: torch.Tensor) -> dict:
    n = int(lp.numel())
    return {
        "model": label,
        "response": index,
        "text": text,
        "logprobs": lp.tolist(),
        "sum_logprob": float(lp.sum()),
        "mean_logprob": float(lp.mean()) if n else float("nan"),
        "n_tokens": n,
    }


def scorer_inputs(
    family: Family, samples: SampleSet, scorer: str
) -> tuple[Member, list[int]]:
    loaded = family.load(scorer)
    text = samples.meta.get("model_inputs", {}).get(scorer) or model_input(
        loaded, samples.prompt, samples.params.chat
    )
    return loaded, encode(loaded, text)


def sample_logprobs_under(
    family: Family, samples: SampleSet, scorer: str, cancel=None
) -> list[torch.Tensor]:
    """Every sample's response tokens scored by `scorer` (token ids reused when the family shares a
    tokenizer, the response text re-tokenized otherwise)."""
    loaded, prefix = scorer_inputs(family, samples, scorer)
    shared = family.shared_tokenizer
    conts = [
        list(ids) if shared else encode(loaded, text, special=False)
        for ids, text in zip(samples.df["token_ids"], samples.df["text"], strict=True)
    ]
    return _score(loaded, prefix, conts, cancel)


def cross_score(
    family: Family, samples: SampleSet, models: list[str] | None = None, cancel=None
) -> pd.DataFrame:
    """Sampler × scorer table: mean log-prob per token of each model's samples under each model.

    A descendant whose answers differ from the base's scores its own samples higher than the base
    does (the diagonal dominates its column)."""
    scorers = models or [m for m in family.labels if m in samples.models] or family.labels
    rows = []
    for scorer in scorers:
        scored = sample_logprobs_under(family, samples, scorer, cancel)
        frame = pd.DataFrame({"sampler": samples.df["model"], "lp": scored})
        for sampler, group in frame.groupby("sampler", sort=False):
            tokens = torch.cat(list(group["lp"])) if len(group) else torch.zeros(0)
            per_sample = [float(t.mean()) for t in group["lp"] if t.numel()]
            rows.append(
                {
                    "sampler": sampler,
                    "scorer": scorer,
                    "mean_logprob": float(tokens.mean()) if tokens.numel() else float("nan"),
                    "sd_sample_mean": float(pd.Series(per_sample).std())
                    if per_sample
                    else float("nan"),
                    "n_samples": len(group),
                    "n_tokens": int(tokens.numel()),
                }
            )
    return pd.DataFrame(rows)


def require_shared(family: Family, what: str) -> None:
    if not family.shared_tokenizer:
        raise ValueError(
            f"family: {what} compares models token by token, which needs a shared tokenizer; "
            "this family's members tokenize differently"
        )


def log_ratio(
    family: Family, samples: SampleSet, base: str | None = None, cancel=None
) -> pd.DataFrame:
    """Per token of every sample: `log p_model − log p_base` — where in a response the adaptation
    acts. One row per (model, sample, position)."""
    require_shared(family, "log_ratio")
    base = base or family.base.label
    under_base = sample_logprobs_under(family, samples, base, cancel)
    rows = []
    for label in samples.models:
        own = sample_logprobs_under(family, samples, label, cancel) if label != base else under_base
        for i in (samples.df["model"] == label).to_numpy().nonzero()[0]:
            row = samples.df.iloc[i]
            for pos, (tok, lm, lb) in enumerate(
                zip(row["tokens"], own[i].tolist(), under_base[i].tolist(), strict=True)
            ):
                rows.append(
                    {"model": label, "sample": int(row["sample"]), "position": pos, "token": tok,
                     "logp_model": lm, "logp_base": lb, "log_ratio": lm - lb}
                )  # fmt: skip
    return pd.DataFrame(
        rows,
        columns=["model", "sample", "position", "token", "logp_model", "logp_base", "log_ratio"],
    )


def divergence(
    family: Family, prompt: str, response: str, models: list[str] | None = None, chat: str = "never"
) -> pd.DataFrame:
    """Per response position: KL(base ‖ model) and Jensen–Shannon divergence (nats) between the
    base's and each model's next-token distributions, teacher-forced on the same text."""
    check_prompt(prompt)
    require_shared(family, "divergence")
    base = family.load(family.base.label)
    prefix = encode(base, model_input(base, prompt, chat))
    cont = encode(base, response, special=False)
    if not cont:
        raise ValueError("response: is empty; give the text whose positions to compare")
    p = base.continuation_logprobs([prefix], [cont], full=True)[0]  # (len, vocab)
    tokens = token_texts(base.tokenizer, cont)
    rows = []
    for label in models or family.labels:
        q = family.load(label).continuation_logprobs([prefix], [cont], full=True)[0]  # (len, vocab)
        kl, js = kl_js(p, q)
        for pos, tok in enumerate(tokens):
            rows.append(
                {
                    "model": label,
                    "position": pos,
                    "token": tok,
                    "kl": float(kl[pos]),
                    "js": float(js[pos]),
                }
            )
    return pd.DataFrame(rows)


def kl_js(logp: torch.Tensor, logq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """KL(p‖q) and JS(p, q) per row of two (positions, vocab) log-distributions.

    Entries where the two agree exactly contribute exactly 0, so a model compared with itself
    scores 0, not rounding noise."""
    same = logp == logq  # (positions, vocab)
    p, q = logp.exp(), logq.exp()
    kl = torch.where(same, 0.0, p * (logp - logq)).nan_to_num().sum(-1)  # (positions,)
    logm = torch.logaddexp(logp, logq) - math.log(2)
    js_terms = 0.5 * p * (logp - logm) + 0.5 * q * (logq - logm)
    js = torch.where(same, 0.0, js_terms).nan_to_num().sum(-1)  # (positions,)
    return kl.clamp_min(0), js.clamp_min(0)
