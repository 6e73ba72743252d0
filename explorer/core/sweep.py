"""Sweeps: the same analysis over a prompt set, one (prompt, model) unit at a time, resumable.

Each finished unit is written atomically to `units/`, so an interrupted sweep (Ctrl-C, kill,
a crash) loses at most the unit in flight, and re-running the same command continues where it
stopped. A re-run whose parameters differ from the manifest is refused.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from explorer.core.analysis import describe_samples
from explorer.core.attribution import attribute_samples
from explorer.core.family import Family
from explorer.core.params import CancelToken, SamplingParams, check_cancel
from explorer.core.patterns import compile_pattern
from explorer.core.results import library_versions, write_atomic
from explorer.core.samples import SampleSet, combine
from explorer.core.sampling import sample

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class PromptSpec:
    prompt: str
    behaviours: dict[str, str]
    category: str = ""  # a `category` column, when the file has one


def read_prompts(path: str | os.PathLike) -> list[PromptSpec]:
    """Prompts from .txt (one per line), .csv or .jsonl (a `prompt` column; optional columns
    named `behaviour` or `behaviour:<name>` hold regexes)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"prompts: no file at {path}")
    if path.suffix == ".txt":
        rows = [
            {"prompt": line.rstrip("\n")}
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
    elif path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    elif path.suffix == ".jsonl":
        rows = [
            json.loads(line)
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
    else:
        raise ValueError(f"prompts: use a .txt, .csv or .jsonl file, got {path.name}")
    if not rows:
        raise ValueError(f"prompts: {path.name} has no prompts")
    if "prompt" not in rows[0]:
        raise ValueError(f"prompts: {path.name} needs a 'prompt' column")
    return [PromptSpec(str(r["prompt"]), _behaviours(r, path.name, i + 1), str(r.get("category") or ""))
            for i, r in enumerate(rows)]  # fmt: skip


def _behaviours(row: dict[str, Any], file: str, line: int) -> dict[str, str]:
    """A row's behaviours, each checked now (a bad or unbounded pattern fails before any
    sampling, naming its file and row)."""
    out = {}
    for key, value in row.items():
        if key.startswith("behaviour") and value:
            name = key.split(":", 1)[1] if ":" in key else str(value)
            try:
                compile_pattern(str(value), name)
            except ValueError as err:
                raise ValueError(f"prompts: {file}, row {line}: {err}") from err
            out[name] = str(value)
    return out


def unit_name(index: int, model: str) -> str:
    digest = hashlib.sha1(model.encode()).hexdigest()[:8]
    return f"p{index:05d}-{digest}.json"


def manifest_for(
    family: Family, prompts: list[PromptSpec], params: SamplingParams, attribute: str | None
) -> dict:
    return {
        "family": family.to_dict(),
        "params": params.to_dict(),
        "prompts": [{"prompt": p.prompt, "behaviours": p.behaviours} for p in prompts],
        "attribute": attribute,
    }


def check_manifest(out: Path, wanted: dict) -> None:
    """Refuse to mix runs: the saved manifest must match this run's family, params and prompts."""
    path = out / MANIFEST
    if not path.is_file():
        return
    saved = json.loads(path.read_text())
    for key in ("params", "prompts", "attribute", "family"):
        if saved.get(key) != wanted[key]:
            detail = ""
            if key == "params":
                diff = {
                    k: (saved["params"].get(k), v)
                    for k, v in wanted["params"].items()
                    if saved["params"].get(k) != v
                }
                detail = ": " + ", ".join(f"{k} was {a!r}, now {b!r}" for k, (a, b) in diff.items())
            raise ValueError(
                f"out: {out} holds a sweep with different {key}{detail}. Use another --out folder, "
                "or re-run with the original arguments to resume."
            )


def run_sweep(
    family: Family,
    prompts: list[PromptSpec],
    params: SamplingParams,
    out: str | os.PathLike,
    attribute: str | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, pd.DataFrame]:
    """Sample every (prompt, model) unit not yet on disk, then write the tables.

    `progress(done, total, what)` is called before each unit and at the end; `cancel` stops
    after the unit in flight (finished units stay on disk, and the same call resumes)."""
    out = Path(out)
    units = out / "units"
    units.mkdir(parents=True, exist_ok=True)
    wanted = manifest_for(family, prompts, params, attribute)
    check_manifest(out, wanted)
    started = time.perf_counter()
    manifest = {**wanted, "versions": library_versions(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    write_atomic(out / MANIFEST, json.dumps(manifest, indent=1))
    todo = [(i, m) for i in range(len(prompts)) for m in family.labels if not (units / unit_name(i, m)).is_file()]
    total = len(prompts) * len(family.labels)
    for done, (index, model) in enumerate(todo, start=total - len(todo)):
        check_cancel(cancel)
        if progress:
            progress(done, total, f"prompt {index + 1}/{len(prompts)} · {model}")
        unit_params = {**params.to_dict(), "seed": params.seed + index}
        result = sample(family, prompts[index].prompt, models=[model], cancel=cancel, **unit_params)
        result.save(units / unit_name(index, model))
    if progress:
        progress(total, total, "tables")
    tables = write_tables(family, prompts, params, out, attribute)
    manifest["seconds_this_run"] = round(time.perf_counter() - started, 2)
    manifest["behaviours_left_out"] = tables["provenance"].attrs.get("skipped", {})
    write_atomic(out / MANIFEST, json.dumps(manifest, indent=1))
    return tables


def _unit_sets(
    family: Family, prompts: list[PromptSpec], out: Path
) -> Iterable[tuple[int, SampleSet]]:
    for index in range(len(prompts)):
        parts = [SampleSet.load(out / "units" / unit_name(index, m)) for m in family.labels]
        yield index, combine(parts)


def write_tables(family: Family, prompts: list[PromptSpec], params: SamplingParams, out: Path,
                 attribute: str | None) -> dict[str, pd.DataFrame]:  # fmt: skip
    samples, variability, provenance, attributions = [], [], [], []
    skipped: dict[str, str] = {}  # behaviours left out (patterns that ran out of time)
    for index, s in _unit_sets(family, prompts, out):
        tag = {"prompt_index": index}
        samples.append(s.df.assign(**tag))
        var, prov = describe_samples(s, prompts[index].behaviours or None, top=None, warn=False)
        skipped.update({f"prompt {index + 1}: {k}": v for k, v in prov.attrs.get("skipped", {}).items()})
        variability.append(var.assign(prompt=s.prompt, **tag))
        provenance.append(prov.assign(prompt=s.prompt, **tag))
        if attribute:
            attributions.append(
                attribute_samples(family, s, method=attribute, max_samples=8).assign(**tag)
            )
    tables = {
        "samples": pd.concat(samples, ignore_index=True),
        "variability": pd.concat(variability, ignore_index=True),
        "provenance": pd.concat(provenance, ignore_index=True),
    }
    if attributions:
        tables["attribution"] = pd.concat(attributions, ignore_index=True)
    tables["provenance"].attrs["skipped"] = skipped
    for name, df in tables.items():
        df.to_parquet(out / f"{name}.parquet", index=False)
        if name != "samples":
            df.to_csv(out / f"{name}.csv", index=False)
    return tables


def summary(provenance: pd.DataFrame) -> pd.DataFrame:
    """Per behaviour × descendant: how many prompts got each provenance label."""
    desc = provenance[provenance["label"] != "base"]
    return (
        desc.groupby(["behaviour", "model", "label"])
        .size()
        .unstack("label", fill_value=0)
        .reset_index()
    )


def load_sweep(out: str | os.PathLike) -> dict[str, Any]:
    """A sweep folder back as DataFrames (samples, variability, provenance[, attribution]) plus
    its manifest."""
    out = Path(out)
    if not (out / MANIFEST).is_file():
        raise ValueError(f"out: {out} is not a sweep folder (no {MANIFEST})")
    result: dict[str, Any] = {"manifest": json.loads((out / MANIFEST).read_text())}
    for name in ("samples", "variability", "provenance", "attribution"):
        path = out / f"{name}.parquet"
        if path.is_file():
            result[name] = pd.read_parquet(path)
    if "samples" not in result:
        raise ValueError(f"out: {out} is an unfinished sweep; re-run it to finish")
    return result
