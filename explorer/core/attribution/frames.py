"""Attribution matrices as `Attribution.df` rows: per token, or mapped onto the words of the text.

Token names are the text each token stands for (`target_token`, `source_token`); the
tokenizer's own pieces stay beside them (`target_piece`, `source_piece`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from explorer.core.alignment import aggregate, token_units, word_units
from explorer.core.attribution.problem import Problem
from explorer.core.member import model_input
from explorer.core.tokens import display_tokens


def token_frame(
    label: str, method: str, problem: Problem, scores: torch.Tensor, converged: np.ndarray
) -> pd.DataFrame:
    """`converged` (targets,): whether the method met its own accuracy checks per target."""
    tok = problem.member.tokenizer
    ids = problem.ids.tolist()
    names = np.array(display_tokens(tok, ids), dtype=object)
    pieces = np.array(tok.convert_ids_to_tokens(ids), dtype=object)
    seq = problem.n_sources
    matrix = scores[:, :seq].detach().float().cpu().numpy()  # (targets, sources)
    target_pos = np.array(problem.targets)
    at = problem.start + target_pos
    frame = grid_frame(label, method, matrix, target_pos, (names[at], pieces[at]),
                       (names[:seq], pieces[:seq]), problem.start)  # fmt: skip
    return frame.assign(converged=np.repeat(converged, seq))


def word_frame(
    label: str, method: str, problem: Problem, scores: torch.Tensor, text: tuple[str, str, str],
    additive: bool, converged: np.ndarray,
) -> pd.DataFrame:  # fmt: skip
    """The model's token matrix mapped onto the words of the text (see explorer.core.alignment);
    `text` is (prompt, response, chat). A word converged when all its tokens did."""
    prompt, response, chat = text
    member = problem.member
    units = token_units(member.tokenizer, model_input(member, prompt, chat), prompt, response, problem.start)
    words = word_units(prompt, response)
    seq = problem.n_sources
    m = aggregate(scores[:, :seq], units[problem.start + np.array(problem.targets)], units[:seq],
                  len(words.names), additive)  # fmt: skip
    first = words.first_response
    n_sources = first if problem.sources == "prompt" else len(words.names)
    names = np.array(words.names, dtype=object)
    targets, sources = names[first:], names[:n_sources]
    frame = grid_frame(label, method, m[first:, :n_sources], np.arange(len(names) - first),
                       (targets, targets), (sources, sources), first)  # fmt: skip
    word_done = np.ones(len(names), dtype=bool)
    for unit, done in zip(units[problem.start + np.array(problem.targets)], converged, strict=True):
        if unit >= 0:
            word_done[unit] &= bool(done)
    return frame.assign(converged=np.repeat(word_done[first:], n_sources))


def grid_frame(
    label: str, method: str, matrix: np.ndarray, target_pos: np.ndarray,
    targets: tuple[np.ndarray, np.ndarray], sources: tuple[np.ndarray, np.ndarray], n_prompt: int,
) -> pd.DataFrame:  # fmt: skip
    """One row per (target, source) cell of `matrix` (targets, sources): the `Attribution.df`
    layout; `targets`/`sources` are (display names, raw pieces); sources before `n_prompt` are
    the prompt's."""
    t_idx, s_idx = np.meshgrid(np.arange(len(target_pos)), np.arange(len(sources[0])), indexing="ij")
    t_idx, s_idx = t_idx.ravel(), s_idx.ravel()
    return pd.DataFrame(
        {
            "model": label, "method": method, "target_pos": np.asarray(target_pos)[t_idx],
            "target_token": targets[0][t_idx], "source_pos": s_idx, "source_token": sources[0][s_idx],
            "source_part": np.where(s_idx < n_prompt, "prompt", "response"),
            "score": matrix[t_idx, s_idx].astype(float),
            "target_piece": targets[1][t_idx], "source_piece": sources[1][s_idx],
        }
    )  # fmt: skip
