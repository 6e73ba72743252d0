"""Model Family Explorer: compare a foundation model with the models made from it.

The public API (``import explorer as fx``) is resolved lazily so that ``family-explorer --help``
and other light entry points do not pay for importing torch and transformers.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_API = {
    "ModelRef": "explorer.core.refs",
    "Family": "explorer.core.family",
    "Member": "explorer.core.member",
    "load_family": "explorer.core.resolve",
    "discover_descendants": "explorer.core.resolve",
    "list_presets": "explorer.core.resolve",
    "ModelStore": "explorer.core.store",
    "SamplingParams": "explorer.core.params",
    "CancelToken": "explorer.core.params",
    "Cancelled": "explorer.core.errors",
    "SampleSet": "explorer.core.samples",
    "sample": "explorer.core.sampling",
    "score_texts": "explorer.core.scoring",
    "cross_score": "explorer.core.scoring",
    "log_ratio": "explorer.core.scoring",
    "divergence": "explorer.core.scoring",
    "variability": "explorer.core.metrics",
    "register_metric": "explorer.core.metrics",
    "list_metrics": "explorer.core.metrics",
    "provenance": "explorer.core.provenance",
    "amplify": "explorer.core.amplify",
    "rates_by_lambda": "explorer.core.extrapolate",
    "extrapolate": "explorer.core.extrapolate",
    "decide": "explorer.core.decide",
    "exact_probability": "explorer.core.exact",
    "exact_table": "explorer.core.exact",
    "analyse": "explorer.core.analysis",
    "attribute": "explorer.core.attribution",
    "attribute_samples": "explorer.core.attribution",
    "Attribution": "explorer.core.attribution",
    "register_method": "explorer.core.attribution",
    "list_methods": "explorer.core.attribution",
    "register_target": "explorer.core.attribution",
    "list_targets": "explorer.core.attribution",
    "agreement": "explorer.core.attribution.agreement",
    "faithfulness": "explorer.core.attribution.faithfulness",
    "layer_lens": "explorer.core.layers",
    "patch": "explorer.core.layers",
    "Patching": "explorer.core.layers",
    "weight_diff": "explorer.core.layers",
    "discover": "explorer.core.discover",
    "Discovery": "explorer.core.discover",
    "prompt_set": "explorer.core.discover",
    "weight_spectra": "explorer.core.layers",
    "activation_diff": "explorer.core.layers",
    "ActivationDiff": "explorer.core.layers",
    "steer": "explorer.core.steering",
    "load_sweep": "explorer.core.sweep",
    "run_sweep": "explorer.core.sweep",
    "Session": "explorer.reports",
    "OpenAIBackend": "explorer.core.served.backend",
    "register_backend": "explorer.core.served.backend",
    "ServerUnavailableError": "explorer.core.served.backend",
    "ModelLoadError": "explorer.core.errors",
    "set_threads": "explorer.core.threads",
    "get_threads": "explorer.core.threads",
    "estimate": "explorer.core.estimate",
    "report": "explorer.reports",
    "Estimate": "explorer.core.estimate",
    "Explorer": "explorer.app",
    "load_probes": "explorer.zoo",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'explorer' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
