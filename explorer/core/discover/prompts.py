"""Prompt sets to search over: the zoo's probes, a general set shipped with the package, the
user's own file (.txt, .csv, .jsonl, as `sweep` reads them) or a sweep folder.

The general set (`explorer/prompts/general.jsonl`) holds 200 prompts the team wrote, 25 in each
of eight categories — greetings, facts, advice, instructions, code, stories, refusals, opinions —
phrased so that chat models (through their template) and base models both answer them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from explorer.core.params import check_prompt

GENERAL = Path(__file__).resolve().parents[2] / "prompts" / "general.jsonl"
NAMED = ("probes", "general")


@dataclass(frozen=True)
class PromptItem:
    prompt: str
    category: str = ""


def prompt_set(spec: str | os.PathLike | list | None, family_name: str = "") -> list[PromptItem]:
    """The prompts of `spec`: "probes", "general", "auto" (probes for the fable zoo, else
    general), a file, a sweep folder, or a list of prompts (strings or PromptItems)."""
    if spec is None or spec == "auto":
        spec = "probes" if family_name == "fable" else "general"
    if isinstance(spec, (list, tuple)):
        items = [p if isinstance(p, PromptItem) else PromptItem(str(p)) for p in spec]
    elif spec == "probes":
        items = probe_prompts()
    elif spec == "general":
        items = general_prompts()
    else:
        items = _from_path(Path(spec))
    if not items:
        raise ValueError("prompts: the prompt set is empty")
    for item in items:
        check_prompt(item.prompt)
    return items


def general_prompts() -> list[PromptItem]:
    lines = GENERAL.read_text(encoding="utf-8").splitlines()
    return [PromptItem(**json.loads(line)) for line in lines if line.strip()]


def probe_prompts() -> list[PromptItem]:
    """The zoo's probes to search with (`explorer.zoo.probes.discovery_prompts`: the base's own
    language and a few prompts of the instruction format), their kind as the category."""
    from explorer.zoo.probes import discovery_prompts

    return [PromptItem(p, kind) for p, kind in discovery_prompts()]


def _from_path(path: Path) -> list[PromptItem]:
    from explorer.core.sweep import MANIFEST, read_prompts

    if path.is_dir():
        manifest = path / MANIFEST
        if not manifest.is_file():
            raise ValueError(f"prompts: {path} is a folder but not a sweep (no {MANIFEST})")
        return [PromptItem(p["prompt"]) for p in json.loads(manifest.read_text())["prompts"]]
    if not path.exists() and str(path) not in NAMED:
        raise ValueError(f"prompts: {str(path)!r} is neither a prompt set ({', '.join(NAMED)}), a file nor a sweep folder")
    return [PromptItem(p.prompt, p.category) for p in read_prompts(path)]
