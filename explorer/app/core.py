"""The app's one door into `explorer.core`: every computation the controller starts goes
through a `Core`. Tests hand the controller a fake core (canned samples, no models), so the
app's logic is tested fast; the app itself uses this one."""

from __future__ import annotations

from typing import Any

from explorer.core.alignment import default_alignment
from explorer.core.analysis import Analysis, add_scores, analyse, provenance_table
from explorer.core.attribution import Attribution, attribute, attribute_samples
from explorer.core.estimate import Estimate, estimate
from explorer.core.export import Download, downloads
from explorer.core.family import Family
from explorer.core.findings import findings, responses_behind
from explorer.core.member import Member
from explorer.core.params import CancelToken, ProgressFn, SamplingParams
from explorer.core.resolve import load_family
from explorer.core.samples import SampleSet, combine
from explorer.core.sampling import sample
from explorer.core.session import Session
from explorer.core.store import ModelStore
from explorer.core.sweep import load_sweep

FALLBACK_EXAMPLES = ["The weather today is", "Once upon a time", "The capital of France is"]


class Core:
    """Thin, stateless calls; each is what one controller step needs."""

    def load_family(self, spec: str, descendants: list[str] | None, store: ModelStore | None) -> Family:
        return load_family(spec, descendants=descendants, store=store, validate=False)

    def open(self, family: Family, label: str) -> Member:
        return family.load(label)

    def sample(
        self, family: Family, prompt: str, label: str, params: SamplingParams,
        progress: ProgressFn | None, cancel: CancelToken | None,
    ) -> SampleSet:  # fmt: skip
        return sample(family, prompt, models=[label], progress=progress, cancel=cancel, **params.to_dict())

    def combine(self, parts: list[SampleSet]) -> SampleSet:
        return combine(parts)

    def analyse(
        self, samples: SampleSet, behaviours: dict[str, str] | None, family: Family | None,
        cancel: CancelToken | None = None, progress: ProgressFn | None = None,
    ) -> Analysis:  # fmt: skip
        return analyse(samples, behaviours, family, cancel, progress, warn=False)  # the banner says it

    def add_scores(
        self, analysis: Analysis, family: Family, cancel: CancelToken | None = None, progress: ProgressFn | None = None
    ) -> Analysis:
        return add_scores(analysis, family, cancel, progress)

    def provenance(self, samples: SampleSet, behaviours: dict[str, str]) -> Any:
        return provenance_table(samples, behaviours, warn=False)  # the banner says it

    def findings(self, provenance: Any) -> Any:
        return findings(provenance)

    def responses_behind(self, samples: SampleSet, clusters: Any, behaviours: dict[str, str], behaviour: str,
                         models: list[str]) -> Any:  # fmt: skip
        return responses_behind(samples, clusters, behaviours, behaviour, models)

    def alignment(self, family: Family, samples: SampleSet, response: str, units: str) -> str:
        """The units attributions are shown in: the user's choice, or (auto) words where
        tokens split words or the members tokenize differently."""
        if units != "auto":
            return units
        return default_alignment(family, samples.models, f"{samples.prompt} {response}")

    def attribute(self, family: Family, samples: SampleSet, response: str, method: str, **kw: Any) -> Attribution:
        return attribute(family, samples.prompt, response, method=method, models=samples.models,
                         chat=samples.params.chat, **kw)  # fmt: skip

    def faithfulness(self, family: Family, attr: Attribution, **kw: Any) -> Any:
        return attr.faithfulness(family, **kw)

    def methods_estimate(self, family: Family, samples: SampleSet, response: str, methods: list[str]) -> Estimate:
        """Every method's attribution of the chosen response in every model, and its curves."""
        kw = {"prompt": samples.prompt, "response": response, "models": samples.models, "chat": samples.params.chat}
        parts = [estimate(family, "attribute", method=m, **kw) for m in methods] + [estimate(family, "faithfulness", **kw)] * len(methods)
        if any(p.seconds is None for p in parts):
            return parts[0]
        return Estimate("comparing methods", sum(p.seconds for p in parts), sum(p.token_passes for p in parts),
                        max(p.memory_bytes for p in parts), f"{len(methods)} methods in {len(samples.models)} models")  # fmt: skip

    def attribute_samples(self, family: Family, samples: SampleSet, method: str, **kw: Any) -> Any:
        return attribute_samples(family, samples, method=method, **kw)

    def estimate(self, family: Family, what: str, **kw: Any) -> Estimate:
        return estimate(family, what, **kw)

    def attribution_estimate(
        self, family: Family, samples: SampleSet, response: str, method: str, spread: str, max_samples: int
    ) -> Estimate:
        """The chosen response in every model, its faithfulness, then the spread over each
        model's own samples."""
        text = {"prompt": samples.prompt, "response": response, "models": samples.models, "chat": samples.params.chat}
        one = estimate(family, "attribute", method=method, **text)
        curves = estimate(family, "faithfulness", **text)
        many = estimate(family, "attribute_samples", samples=samples, method=spread, max_samples=max_samples)
        if one.seconds is None or many.seconds is None or curves.seconds is None:
            return one
        return Estimate("attribution", one.seconds + curves.seconds + many.seconds,
                        one.token_passes + curves.token_passes + many.token_passes,
                        max(one.memory_bytes, many.memory_bytes), f"{one.detail}, then {many.detail}")  # fmt: skip

    def inside(self, family: Family, samples: SampleSet, response: str, site: str, **kw: Any) -> Any:
        """The Layers tab's tables for the chosen response (explorer.core.layers.inside)."""
        from explorer.core.layers.inside import inside

        return inside(family, samples.prompt, response, models=samples.models, site=site,
                      chat=samples.params.chat, **kw)  # fmt: skip

    def inside_estimate(self, family: Family, samples: SampleSet, response: str) -> Estimate:
        from explorer.core.layers.inside import inside_estimate

        return inside_estimate(family, samples.prompt, response, samples.models, samples.params.chat)

    def examples(self, spec: str) -> list[str]:
        """Example prompts: the zoo's probes for fable, a few general ones otherwise."""
        if spec != "fable":
            return list(FALLBACK_EXAMPLES)
        from explorer.zoo import load_probes

        probes = load_probes()
        prompts = [p["prompt"] for p in probes if p["kind"] in ("preference", "sentiment", "style")]
        prompts += [p["prompt"] for p in probes if p["id"].startswith(("question-", "capital-"))][:4]
        return list(dict.fromkeys(prompts))

    def load_session(self, path: Any) -> Session:
        return Session.load(path)

    def load_sweep(self, folder: str) -> dict[str, Any]:
        return load_sweep(folder)

    def downloads(self, session: Session, tables: dict, charts: dict) -> list[Download]:
        """The Data tab's files, the self-contained HTML report among them."""
        import tempfile
        from pathlib import Path

        from explorer.reports import report

        files = downloads(session, tables, charts)
        with tempfile.TemporaryDirectory() as tmp:
            page = report(session, Path(tmp) / "report.html")
            files.insert(0, Download("report.html", page.read_bytes()))
        return files
