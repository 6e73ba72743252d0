"""The Discover tab's actions: search the prompt set, then open what was found.

A part of the controller (`controller.discover`), not a mixin: it runs its work as the
controller's jobs (asked first when the estimate is long, progress per prompt, Stop keeping the
prompts that finished) and reaches the core through the controller's `Core`.
"""

from __future__ import annotations

from typing import Any

from explorer.app.jobs import Job
from explorer.core.errors import Cancelled
from explorer.core.params import SamplingParams

DISCOVERED = " (discovered)"  # how a discovered behaviour is named in the Findings matrix


class DiscoverActions:
    def __init__(self, ctl: Any) -> None:
        self.ctl = ctl

    @property
    def state(self):
        return self.ctl.state

    def options(self, prompts: str | None = None, n: int | None = None, confirm: int | None = None) -> None:
        """The prompt set ("auto", "probes", "general", or a file or sweep folder) and the
        samples per model: discovery's and confirmation's."""
        values = {"discover_set": prompts, "discover_n": n, "discover_confirm": confirm}
        self.ctl.assign(**{k: v for k, v in values.items() if v is not None})

    def run(self, confirmed: bool = False) -> Job | None:
        s = self.state
        if s.family is None:
            self.ctl.fail("Load a family first.")
            return None
        if not s.weights:
            self.ctl.fail(f"Discover compares full next-token distributions, which needs the models' weights; "
                          f"{s.server} reports only the top-20 log-probs per token. Load the models locally.")  # fmt: skip
            return None
        family = s.family.subset(list(s.selected))
        try:
            params = SamplingParams(n=max(1, s.discover_n), temperature=s.temperature, top_p=s.top_p, top_k=s.top_k,
                                    max_new_tokens=s.max_new_tokens, seed=s.seed, chat=s.chat)  # fmt: skip
        except (ValueError, TypeError) as err:
            self.ctl.fail(str(err))
            return None
        options = {"prompts": s.discover_set, "n_confirm": max(0, s.discover_confirm)}
        return self.ctl.submit("Discovering", lambda job: self._work(job, family, params, options, confirmed))

    def _work(self, job: Job, family, params: SamplingParams, options: dict, confirmed: bool) -> dict[str, Any]:
        core = self.ctl.core
        if not confirmed:
            cost = core.discover_estimate(family, params, **options)
            question = self.ctl._ask(cost, "Discover", lambda: self.run(confirmed=True))
            if question:
                return {"confirm": question, "status": ""}
            job.publish(status=f"Discovering {cost}…")

        def progress(part: str, done: int, total: int) -> None:
            job.report({part: done / max(total, 1)})

        try:
            found = core.discover(family, params, progress=progress, cancel=job.cancel, **options)
        except Cancelled as err:
            if job.abandoned or err.partial is None:
                raise
            return {"discovery": err.partial, "discover_word": None,
                    "status": f"Stopped: kept {err.partial.summary()}"}  # fmt: skip
        return {"discovery": found, "discover_word": None, "status": f"Discovered: {found.summary()}"}

    def show_word(self, model: str, word: str) -> None:
        """Show the contexts behind one mined word (the prompts and positions where it moved)."""
        self.ctl.assign(discover_word=(model, word))

    def open_prompt(self, index: int) -> Job | None:
        """Put one prompt of the results in the prompt box; when its candidates were confirmed,
        its fresh samples become the current run and its discovered behaviours fill the
        Findings matrix with the labels of the Discover page (they hold over the whole page)."""
        found = self.state.discovery
        if found is None:
            return None
        prompt = found.prompts.set_index("prompt_index").at[index, "prompt"]
        if index not in found.confirmations:
            self.ctl.assign(prompt=prompt, status="Loaded the prompt: Resample to compare the models on it.")
            return None
        return self.ctl.submit("Opening", lambda job: self._opened(found, index, prompt))

    def _opened(self, found, index: int, prompt: str) -> dict[str, Any]:
        samples = found.confirmations[index]
        rows = found.provenance[found.provenance["prompt_index"] == index]
        table = rows.drop(columns=["prompt_index", "prompt", "category"]).assign(behaviour=rows["behaviour"] + DISCOVERED)
        behaviours = {f"{w}{DISCOVERED}": r for w, r in found.candidates[found.candidates["prompt_index"] == index]
                      .drop_duplicates("word")[["word", "regex"]].itertuples(index=False)}  # fmt: skip
        analysis = self.ctl.core.analyse(samples, behaviours, None)
        analysis.provenance, analysis.findings = table.reset_index(drop=True), self.ctl.core.findings(table)
        status = f"Opened “{prompt}”: its confirmation samples, with the labels of the Discover page"
        return {**self.ctl.cleared(), **analysis.as_dict(), "behaviours": behaviours, "prompt": prompt, "status": status}
