"""Sample sets written by hand, so metric values can be worked out on paper."""

from __future__ import annotations

import pandas as pd

from explorer.core.params import SamplingParams
from explorer.core.responses import SAMPLE_COLUMNS
from explorer.core.samples import SampleSet


def handmade(responses: dict[str, list[str]], first: dict[str, dict[str, float]] | None = None,
             max_new_tokens: int = 4) -> SampleSet:  # fmt: skip
    rows = []
    for model, texts in responses.items():
        for i, text in enumerate(texts):
            tokens = text.split()
            rows.append({
                "model": model, "sample": i, "seed": 0, "model_seed": 0, "prompt": "p",
                "model_input": "p", "text": text, "tokens": tokens, "token_ids": list(range(len(tokens))),
                "logprobs": [-1.0] * len(tokens), "model_logprobs": [-1.0] * len(tokens),
                "entropies": [0.5 * (k + 1) for k in range(len(tokens))], "n_tokens": len(tokens),
                "finish_reason": "length" if len(tokens) >= max_new_tokens else "eos",
            })  # fmt: skip
    ft_rows = [
        {"model": m, "rank": r + 1, "token_id": r, "token": t, "prob": p}
        for m, dist in (first or {}).items()
        for r, (t, p) in enumerate(dist.items())
    ]
    return SampleSet(
        df=pd.DataFrame(rows, columns=SAMPLE_COLUMNS),
        params=SamplingParams(
            n=max(len(v) for v in responses.values()), max_new_tokens=max_new_tokens
        ),
        prompt="p",
        family={"name": "handmade", "members": [{"label": m} for m in responses]},
        first_token=pd.DataFrame(ft_rows, columns=["model", "rank", "token_id", "token", "prob"]),
    )
