"""Every response a small model gives to a prompt, with its exact probability (for simulations).

Breadth-first over the model's own next-token distributions (temperature 1, no top-k/top-p, as
the explorer samples by default), keeping every path whose probability is at least `floor`; the
mass of the paths dropped is returned beside them, so a simulation can draw responses exactly as
sampling would from the (slightly pruned) distribution. A path ends at the end-of-text token or
after `max_new_tokens` tokens. Fine for the fable zoo (a vocabulary of ~140 words, answers of a
few words); at `floor` 1e-3 at most 1000 paths are alive at any depth.
"""

from __future__ import annotations

import torch

from explorer.core.member import model_input


@torch.no_grad()
def responses(member, prompt: str, max_new_tokens: int = 24, floor: float = 1e-3) -> tuple[dict[str, float], float]:
    """{response text: probability} and the probability mass of the responses left out."""
    tok = member.tokenizer
    prefix = tok(model_input(member, prompt, "auto"), return_tensors="pt")["input_ids"][0].tolist()
    eos = tok.eos_token_id
    alive, done, dropped = [([], 1.0)], {}, 0.0
    for depth in range(max_new_tokens):
        if not alive:
            break
        rows = torch.tensor([prefix + ids for ids, _ in alive])  # (paths, len): equal lengths at one depth
        probs = member.model(input_ids=rows).logits[:, -1].float().softmax(-1)  # (paths, vocab)
        grown = []
        for (ids, p), dist in zip(alive, probs, strict=True):
            keep = (dist * p >= floor).nonzero().flatten().tolist()
            dropped += p - float(dist[keep].sum()) * p
            for t in keep:
                q = p * float(dist[t])
                if t == eos or depth == max_new_tokens - 1:
                    text = tok.decode(ids + ([] if t == eos else [t]), skip_special_tokens=True)
                    done[text] = done.get(text, 0.0) + q
                else:
                    grown.append((ids + [t], q))
        alive = grown
    return done, dropped
