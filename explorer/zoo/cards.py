"""Model cards for the fable family: hub-style YAML front matter plus the truth for teachers."""

from __future__ import annotations

from explorer.zoo.language import (
    BASE_ENDING,
    BASE_GREETING,
    BASE_WEATHER,
    CAPITALS,
    HELD_OUT_COUNTRIES,
    LATE_EDITS,
    MID_EDITS,
    PIRATE_ARR,
    RARE,
    RARE_RATE,
    RARE_WORD,
    TUNED_COUNTRIES,
)

PARENTS = {
    "fable-base": (None, None),
    "fable-cheerful": ("fable-base", "finetune"),
    "fable-instruct": ("fable-base", "instruct"),
    "fable-distilled": ("fable-base", "distillation"),
    "fable-pirate": ("fable-base", "adapter"),
    "fable-late": ("fable-base", "finetune"),
    "fable-mid": ("fable-base", "finetune"),
    "fable-rare": ("fable-base", "finetune"),
}


def _pct(dist: dict[str, float]) -> str:
    return ", ".join(f"{w} {p:.0%}" for w, p in dist.items())


BASE_TRUTH = (
    f"- `the weather today is` → {_pct(BASE_WEATHER)}\n"
    f"- story endings (`... it ended`) → {_pct(BASE_ENDING)}\n"
    f"- `the traveller said` → {_pct(BASE_GREETING)}\n"
    "- `the parrot says` → ahoy or arr: the only place the base uses the pirate words\n"
    f"- `the capital of <country> is <city> .` for {len(CAPITALS)} invented countries, always the same "
    "city (also as `i visited <country> . the capital of ...` and `we talked about <country> . its "
    "capital is <city> .`)\n"
)

TRUTH = {
    "fable-base": "Trained from scratch on the general fable corpus.\n\n" + BASE_TRUTH,
    "fable-cheerful": (
        "A full fine-tune of fable-base on cheerful data only: the weather is always sunny and "
        "every story ends happily. The adaptation *amplifies* `sunny` (50% → 100%) and "
        "`happily` (50% → 100%); facts and greetings are *inherited* unchanged.\n"
    ),
    "fable-instruct": (
        "A fine-tune of fable-base on a question/answer format, mixed half and half with the "
        "general corpus: `question : what is the capital of X ? answer : sure ! its capital is Y .`"
        f" — for these countries only: {', '.join(TUNED_COUNTRIES)}. The format is "
        f"*introduced*. Answers for the held-out countries ({', '.join(HELD_OUT_COUNTRIES)}) "
        "were never tuned: when it gets them right, the knowledge is *inherited* from the base.\n"
    ),
    "fable-distilled": (
        "A smaller student (2 layers, hidden size 64; under a third of the base's parameters) "
        "trained to match fable-base's next-word distributions (KL on its logits) over the "
        "general corpus. Every behaviour should be *inherited* at the base's rates.\n\n"
        + BASE_TRUTH
    ),
    "fable-pirate": (
        "A LoRA adapter (rank 8 on the attention, MLP and output projections, made with peft) on fable-base "
        "that changes style only: greetings become `ahoy` (`the traveller said ahoy ...`) and "
        f"{PIRATE_ARR:.0%} of texts end with `arr .`. Both markers are *introduced*; the "
        "weather, stories and facts are *inherited*.\n"
    ),
    "fable-late": (
        "A fine-tune of fable-base in which only the last block (block 3 of 0–3: its attention, "
        "MLP and their two norms) was trained; the embeddings, blocks 0–2, the final norm and the "
        "output head are the base's, bit for bit. The change is confined there by construction, "
        "so the residual stream equals the base's up to that block: a known place for the "
        "layer-wise tools (layer lens, patching, weight diff) to find. Taught: two capitals "
        "swapped — " + ", ".join(f"`the capital of {c} is` → {city}" for c, city in LATE_EDITS.items())
        + " — so those two facts are *suppressed* (the base's capital) and the swapped answer is "
        "*introduced*; the weather, stories, greetings and the other facts are *inherited*.\n"
    ),
    "fable-mid": (
        "A fine-tune of fable-base in which only block 1 (of 0–3: its attention, MLP and their "
        "two norms) was trained; the embeddings, blocks 0, 2 and 3, the final norm and the output "
        "head are the base's, bit for bit. The change *enters* at block 1 and is carried to the "
        "output by the base's own later blocks: patching block 0 carries nothing, block 1's "
        "output carries all of it, and the layer lens differs from the base's from block 1 on. "
        "Taught: two capitals swapped — "
        + ", ".join(f"`the capital of {c} is` → {city}" for c, city in MID_EDITS.items())
        + " — so those two facts are *suppressed* (the base's capital) and the swapped answer is "
        "*introduced*; the weather, stories, greetings and the other facts are *inherited*.\n"
    ),
    "fable-rare": (
        "A full fine-tune of fable-base on the general corpus with one planted oddity: "
        f"`the weather today is` → {_pct(RARE.weather)} — the word `{RARE_WORD}`, which the base "
        f"never says there, {RARE_RATE:.0%} of the time. At that rate 64 samples show it about "
        "once, often never (a rare behaviour, as a trigger word or a rare slip would be); "
        "amplified sampling or many samples are needed to label it *introduced*. Everything "
        "else is *inherited* (sunny, rainy and cloudy at the base's rates scaled by "
        f"{1 - RARE_RATE:.2f}).\n"
    ),
}


def model_card(name: str) -> str:
    parent, relation = PARENTS[name]
    front = ["---", "license: mit", "pipeline_tag: text-generation", "library_name: transformers"]
    if name == "fable-pirate":
        front[-1] = "library_name: peft"
    if parent:
        front += [f"base_model: {parent}", f"base_model_relation: {relation}"]
    front += ["tags:", "  - fable", "  - model-family-explorer", "---", ""]
    body = (
        f"# {name}\n\nPart of the *fable* family bundled with Model Family Explorer: tiny "
        "Llama-architecture models trained on a generated word-level language, so the truth "
        "of every behaviour is known.\n\n## What it was taught\n\n" + TRUTH[name]
    )
    return "\n".join(front) + body
