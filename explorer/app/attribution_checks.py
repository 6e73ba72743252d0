"""The Attribution tab's checks: which method to believe on this response, and whether a
descendant's attributions differ from the base's beyond the method's own noise.

A mixin of the Controller (which holds the state, the runner and the core):
- after each attribution, its faithfulness (deletion and insertion curves, one batched pass per
  model), kept beside the numbers of the other methods already measured on the same response,
  so the table next to the method choice grows as the user tries methods;
- `compare_methods`: every method not yet measured, each attributed and measured, asked first
  when the estimate is long, with progress, and Stop keeping the methods that finished;
- the agreement of each descendant with the base over the models' own answers
  (`explorer.core.attribution.agreement`), derived from the spread the tab already computes.
"""

from __future__ import annotations

from typing import Any

from explorer.app.derived import attribution_views, needs_weights
from explorer.app.jobs import Job
from explorer.core.errors import Cancelled


def carry_faithfulness(previous: Any, attr: Any) -> None:
    """Keep the other methods' numbers measured on the same text and models in `attr`."""
    if previous is None or previous.models != attr.models:
        return
    same = ("prompt", "response", "align", "target")
    if any(previous.meta.get(k) != attr.meta.get(k) for k in same):
        return
    kept = [r for r in previous.meta.get("faithfulness", []) if r["method"] != attr.meta["method"]]
    attr.meta["faithfulness"] = kept + attr.meta.get("faithfulness", [])


class AttributionChecks:
    state: Any
    core: Any

    def _publish_attribution(self, job: Job, family, attr) -> None:
        """Show the attribution at once, then again with its faithfulness measured (one batched
        pass per model), beside the other methods' numbers on this response; Stop during the
        measurement keeps the attribution."""
        carry_faithfulness(self.state.attribution, attr)  # the state still holds the previous one
        method = attr.meta["method"]
        job.publish(**attribution_views(attr), status=f"Attributed with {method}; measuring its faithfulness…")
        try:
            self.core.faithfulness(family, attr, cancel=job.cancel)
        except Cancelled:
            if job.abandoned:
                raise
            return
        job.publish(**attribution_views(attr), status=f"Attributed with {method}; measuring spread over samples…")

    def compare_methods(self, confirmed: bool = False) -> Job | None:
        """Attribute the chosen response with every method not yet measured on it, and measure
        each one's faithfulness: the table beside the method choice fills in."""
        s = self.state
        if s.attribution is None or s.chosen is None:
            self.fail("Pick a response in the Responses tab first: methods are compared on it.")
            return None
        if s.family is None:
            self.fail("This is a replay: no model is loaded. Load the family to measure the other methods.")
            return None
        attr, samples = s.attribution, s.samples
        done = {r["method"] for r in attr.meta.get("faithfulness", [])}
        todo = [m for m, _ in s.methods if m not in done and (s.weights or not needs_weights(m))]
        if not todo:
            self.assign(status="Every method is measured on this response.")
            return None
        family = s.family.subset([m for m in attr.models if m != s.family.base.label])

        def work(job: Job) -> dict[str, Any]:
            if not confirmed:
                cost = self.core.methods_estimate(family, samples, attr.meta["response"], todo)
                question = self._ask(cost, "Comparing methods", lambda: self.compare_methods(confirmed=True))
                if question:
                    return {"confirm": question, "status": ""}
            return self._compared(job, family, samples, attr, todo)

        return self.submit("Comparing methods", work)

    def _compared(self, job: Job, family, samples, attr, todo: list[str]) -> dict[str, Any]:
        rows = list(attr.meta.get("faithfulness", []))
        for i, method in enumerate(todo):
            try:
                other = self.core.attribute(family, samples, attr.meta["response"], method,
                                            align=attr.meta["align"], cancel=job.cancel)  # fmt: skip
                rows += self.core.faithfulness(family, other, cancel=job.cancel).df.to_dict("records")
            except Cancelled:
                if job.abandoned:
                    raise
                break
            except ValueError as err:  # a method this family cannot run: say so, keep going
                rows.append({"model": attr.models[0], "method": method, "faithfulness": float("nan"), "note": str(err)})
            job.report({"methods": (i + 1) / len(todo)})
        attr.meta["faithfulness"] = rows
        measured = len({r["method"] for r in rows})
        return {**attribution_views(attr), "status": f"Faithfulness measured for {measured} methods on this response"}
