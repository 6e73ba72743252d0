"""Teacher-forced scoring: log-probs of given text under any member, cross-scoring of samples,
per-token log-ratios against the base, and per-position KL/JS divergence."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from explorer.core import vocab
from explorer.core.errors import Cancelled
from explorer.core.family import Family
from explorer.core.member import Member, model_input
from explorer.core.params import CancelToken, ProgressFn, check_cancel, check_prompt
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
    family: Family, samples: SampleSet, scorer: str, cancel=None, reuse_own: bool = True
) -> list[torch.Tensor]:
    """Every sample's response tokens scored by `scorer` (token ids reused when the family shares a
    tokenizer, the response text re-tokenized otherwise).

    With `reuse_own` the scorer's own samples keep the raw log-probs recorded while sampling
    (the same model on the same text, computed incrementally), so only the other models'
    samples run through the scorer again."""
    loaded, prefix = scorer_inputs(family, samples, scorer)
    shared = family.shared_tokenizer
    own = (samples.df["model"] == scorer).to_numpy() if reuse_own else np.zeros(len(samples.df), bool)
    conts = [
        [] if mine else (list(ids) if shared else encode(loaded, text, special=False))
        for mine, ids, text in zip(own, samples.df["token_ids"], samples.df["text"], strict=True)
    ]
    scored = _score(loaded, prefix, conts, cancel)
    recorded = samples.df["model_logprobs"]
    return [torch.tensor(list(recorded.iloc[i]), dtype=torch.float32) if own[i] else lp for i, lp in enumerate(scored)]


def score_samples(
    family: Family, samples: SampleSet, scorers: list[str], cancel: CancelToken | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, list[torch.Tensor]]:  # fmt: skip
    """Every sample's response tokens scored by each scorer, one scorer after another (each is
    one batched teacher-forced pass per 64 samples). Stop raises `Cancelled` whose `partial`
    holds the scorers that finished."""
    done: dict[str, list[torch.Tensor]] = {}
    for i, scorer in enumerate(scorers):
        try:
            done[scorer] = sample_logprobs_under(family, samples, scorer, cancel)
        except Cancelled as err:
            raise Cancelled("cancelled", partial=dict(done)) from err
        if progress:
            progress(scorer, i + 1, len(scorers))
    return done


def default_scorers(family: Family, samples: SampleSet) -> list[str]:
    return [m for m in family.labels if m in samples.models] or family.labels


def cross_score(
    family: Family, samples: SampleSet, models: list[str] | None = None, cancel: CancelToken | None = None,
    progress: ProgressFn | None = None, scored: dict[str, list[torch.Tensor]] | None = None,
) -> pd.DataFrame:  # fmt: skip
    """Sampler × scorer table: mean log-prob per token of each model's samples under each model.

    A descendant whose answers differ from the base's scores its own samples higher than the base
    does (the diagonal dominates its column). `scored` reuses scores already computed
    (`score_samples`); `progress(scorer, done, total)` follows the scorers."""
    scorers = models or default_scorers(family, samples)
    scored = scored if scored is not None else score_samples(family, samples, scorers, cancel, progress)
    return cross_table(samples, {s: scored[s] for s in scorers if s in scored})


def cross_table(samples: SampleSet, scored: dict[str, list[torch.Tensor]]) -> pd.DataFrame:
    """The sampler × scorer table from per-sample scores (pure: no model runs)."""
    rows = []
    for scorer, lps in scored.items():
        frame = pd.DataFrame({"sampler": samples.df["model"], "lp": lps})
        for sampler, group in frame.groupby("sampler", sort=False):
            tokens = torch.cat(list(group["lp"])) if len(group) else torch.zeros(0)
            per_sample = [float(t.mean()) for t in group["lp"] if t.numel()]
            rows.append({
                "sampler": sampler, "scorer": scorer,
                "mean_logprob": float(tokens.mean()) if tokens.numel() else float("nan"),
                "sd_sample_mean": float(pd.Series(per_sample).std()) if per_sample else float("nan"),
                "n_samples": len(group), "n_tokens": int(tokens.numel()),
            })  # fmt: skip
    return pd.DataFrame(rows, columns=["sampler", "scorer", "mean_logprob", "sd_sample_mean", "n_samples", "n_tokens"])


def require_shared(family: Family, what: str) -> None:
    if not family.shared_tokenizer:
        raise ValueError(
            f"family: {what} compares models token by token, which needs a shared tokenizer; "
            "this family's members tokenize differently"
        )


RATIO_COLUMNS = ["model", "sample", "position", "token", "logp_model", "logp_base", "log_ratio"]


def log_ratio(
    family: Family, samples: SampleSet, base: str | None = None, cancel: CancelToken | None = None,
    progress: ProgressFn | None = None, scored: dict[str, list[torch.Tensor]] | None = None,
) -> pd.DataFrame:  # fmt: skip
    """Per token of every sample: `log p_model − log p_base` — where in a response the adaptation
    acts. One row per (model, sample, position). `scored` reuses scores already computed."""
    require_shared(family, "log_ratio")
    base = base or family.base.label
    needed = list(dict.fromkeys([base, *samples.models]))
    if scored is None or not set(needed) <= set(scored):
        scored = score_samples(family, samples, needed, cancel, progress)
    return ratio_table(samples, scored, base)


def ratio_table(samples: SampleSet, scored: dict[str, list[torch.Tensor]], base: str) -> pd.DataFrame:
    """Per-token log-ratios from per-sample scores (pure: no model runs)."""
    rows = []
    for i, row in enumerate(samples.df.itertuples(index=False)):
        own, under_base = scored[row.model][i].tolist(), scored[base][i].tolist()
        for pos, (tok, lm, lb) in enumerate(zip(row.tokens, own, under_base, strict=True)):
            rows.append((row.model, int(row.sample), pos, tok, lm, lb, lm - lb))
    return pd.DataFrame(rows, columns=RATIO_COLUMNS)


def divergence(
    family: Family, prompt: str, response: str, models: list[str] | None = None, chat: str = "never",
    progress: ProgressFn | None = None, cancel: CancelToken | None = None,
) -> pd.DataFrame:  # fmt: skip
    """Per response position: KL(base ‖ model) and Jensen–Shannon divergence (nats) between the
    base's and each model's next-token distributions, teacher-forced on the same text.
    `progress(model, done, total)` follows the models; `cancel` stops between them."""
    check_prompt(prompt)
    require_shared(family, "divergence")
    base = family.load(family.base.label)
    prefix = encode(base, model_input(base, prompt, chat))
    cont = encode(base, response, special=False)
    if not cont:
        raise ValueError("response: is empty; give the text whose positions to compare")
    p = base.continuation_logprobs([prefix], [cont], full=True)[0]  # (len, vocab)
    tokens = token_texts(base.tokenizer, cont)
    rows, labels = [], models or family.labels
    for i, label in enumerate(labels):
        check_cancel(cancel)
        q = family.load(label).continuation_logprobs([prefix], [cont], full=True)[0]  # (len, vocab)
        kl, js = kl_js(p, q)
        rows += [{"model": label, "position": pos, "token": tok, "kl": float(kl[pos]), "js": float(js[pos])}
                 for pos, tok in enumerate(tokens)]  # fmt: skip
        if progress:
            progress(label, i + 1, len(labels))
    return pd.DataFrame(rows)


def kl_js(logp: torch.Tensor, logq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """KL(p‖q) and JS(p, q) per row of two (positions, vocab) log-distributions, a slice of
    positions at a time (`vocab.kl_js`: exactly 0 where the two agree)."""
    return vocab.kl_js(logp, logq)
