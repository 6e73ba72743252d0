"""The app's one door into `explorer.core`: every computation the controller starts goes
through a `Core`. Tests hand the controller a fake core (canned samples, no models), so the
app's logic is tested fast; the app itself uses this one."""

from __future__ import annotations

from typing import Any

from explorer.app.amplify_tab import AmplifyCore
from explorer.app.deciding import DecideCore
from explorer.core.alignment import default_alignment
from explorer.core.analysis import Analysis, add_scores, analyse, provenance_table
from explorer.core.attribution import Attribution, attribute, attribute_samples
from explorer.core.decide import cluster_behaviours
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


def with_exact_labels(analysis: Analysis, family: Family, cancel: CancelToken | None = None) -> Analysis:
    """`analysis` with its provenance's exact columns filled for the regex behaviours, and the
    labels decided again where an exact figure is narrower; the findings follow."""
    from explorer.core.exact import exact_table
    from explorer.core.provenance import with_exact

    patterns = analysis.provenance.attrs.get("patterns") or {}
    if not patterns or not family.has_weights or "decided" in analysis.samples.meta:
        return analysis
    known = [m for m in analysis.samples.models if m in family.labels]
    exact = exact_table(family.subset([m for m in known if m != family.base.label]), analysis.samples, patterns, cancel=cancel)
    analysis.provenance = with_exact(analysis.provenance, exact)
    analysis.findings = findings(analysis.provenance)
    return analysis


FALLBACK_EXAMPLES = ["The weather today is", "Once upon a time", "The capital of France is"]


class Core(AmplifyCore, DecideCore):
    """Thin, stateless calls; each is what one controller step needs (the Amplify tab's and
    deciding's in their own modules)."""

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
        """Cross-scores and log-ratios, and the exact probabilities of the user's regexes where
        the weights allow (explorer.core.exact): the labels then use them."""
        scored = add_scores(analysis, family, cancel, progress)
        return with_exact_labels(scored, family, cancel)

    def provenance(self, samples: SampleSet, behaviours: dict[str, str]) -> Any:
        """The provenance of `behaviours`: on confidence sequences for decided samples (their
        rounds were looked at), else fixed-n (the banner says what was left out)."""
        from explorer.core.sequential import sequential_provenance

        if "decided" in samples.meta:
            return sequential_provenance(samples, behaviours or cluster_behaviours(samples))
        return provenance_table(samples, behaviours, warn=False)

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

    def activation_diff(self, family: Family, models: list[str], texts: list[str], **kw: Any) -> Any:
        """What each descendant adds to the residual stream (explorer.core.layers.diffs)."""
        from explorer.core.layers.diffs import activation_diff

        return activation_diff(family, models=models, texts=texts, **kw)

    def diff_estimate(self, family: Family, models: list[str], texts: list[str]) -> Estimate:
        from explorer.core.layers.diffs import diff_estimate

        return diff_estimate(family, models, texts)

    def steer(self, family: Family, prompt: str, diff: Any, params: SamplingParams, **kw: Any) -> SampleSet:
        """The base and the base steered by a descendant's difference (explorer.core.steering)."""
        from explorer.core.steering import steer

        return steer(family, prompt, diff, **params.to_dict(), **kw)

    def steer_estimate(self, family: Family, prompt: str, params: SamplingParams) -> Estimate:
        from explorer.core.steering import steer_estimate

        return steer_estimate(family, prompt, params)

    def examples(self, spec: str) -> list[str]:
        """Example prompts: the zoo's probes for fable, a few general ones otherwise."""
        from explorer.core.resolve import ZOO_PRESETS

        if spec not in ZOO_PRESETS:
            return list(FALLBACK_EXAMPLES)
        from explorer.zoo import load_probes

        probes = load_probes()
        prompts = [p["prompt"] for p in probes if p["kind"] in ("preference", "sentiment", "style")]
        prompts += [p["prompt"] for p in probes if p["id"].startswith(("question-", "capital-"))][:4]
        return list(dict.fromkeys(prompts))

    def discover(self, family: Family, params: SamplingParams, **kw: Any) -> Any:
        from explorer.core.discover import discover

        return discover(family, n=params.n, max_new_tokens=params.max_new_tokens, temperature=params.temperature,
                        top_p=params.top_p, top_k=params.top_k, seed=params.seed, chat=params.chat, **kw)  # fmt: skip

    def discover_estimate(self, family: Family, params: SamplingParams, **kw: Any) -> Estimate:
        from explorer.core.discover.cost import discover_estimate

        return discover_estimate(family, n=params.n, max_new_tokens=params.max_new_tokens, chat=params.chat, **kw)

    def mined_behaviours(self, family: Family | None, samples: SampleSet, cancel: CancelToken | None) -> dict[str, str]:
        """Words to label when answers rarely repeat (else none: answer clusters serve)."""
        from explorer.core.discover.auto import can_mine, mined_behaviours, rarely_repeat

        if not rarely_repeat(samples) or not can_mine(family, samples):
            return {}
        return mined_behaviours(family, samples, cancel=cancel)

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
