"""Model families: one base and its descendants, from a preset, explicit ids or model cards.

Discovery reads each model folder's card (`README.md` front matter `base_model:` and
`base_model_relation:`), the way the Hugging Face hub builds its model tree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from explorer.core.errors import HubUnreachableError, ModelLoadError

RELATIONS = (
    "base",
    "finetune",
    "instruct",
    "distillation",
    "adapter",
    "quantized",
    "merge",
    "sibling",
)

# Real hub families users ask for. They load when the hub is reachable; tests never use them.
PRESETS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "smollm2": (
        "HuggingFaceTB/SmolLM2-135M",
        [("HuggingFaceTB/SmolLM2-135M-Instruct", "instruct")],
    ),
    "gpt2": ("openai-community/gpt2", [("distilbert/distilgpt2", "distillation")]),
    "pythia": ("EleutherAI/pythia-70m", [("EleutherAI/pythia-160m", "sibling")]),
}


@dataclass(frozen=True)
class ModelRef:
    """Where a member comes from and how it relates to the family's base."""

    id: str  # hub id or local folder
    label: str  # the name shown in every table
    relation: str = "base"
    revision: str | None = None
    adapter: bool = False  # a peft adapter: loaded on top of `parent`
    parent: str | None = None  # label of the member it was made from
    server: str | None = None  # an OpenAI-compatible server (…/v1) that serves `id` by name

    @property
    def is_local(self) -> bool:
        return self.server is None and Path(self.id).exists()

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "relation": self.relation,
            "revision": self.revision,
            "adapter": self.adapter,
            "parent": self.parent,
            "server": self.server,
        }


@dataclass(frozen=True)
class Family:
    """One base and any number of descendants. Models load lazily through `store`."""

    base: ModelRef
    descendants: tuple[ModelRef, ...] = ()
    name: str = ""
    store: Any = field(default=None, compare=False, repr=False)

    @property
    def members(self) -> tuple[ModelRef, ...]:
        return (self.base, *self.descendants)

    @property
    def labels(self) -> list[str]:
        return [m.label for m in self.members]

    def ref(self, label: str) -> ModelRef:
        for m in self.members:
            if m.label == label:
                return m
        raise ValueError(f"model: {label!r} is not in this family ({', '.join(self.labels)})")

    def _store(self):
        if self.store is None:
            from explorer.core.store import default_store

            return default_store()
        return self.store

    @property
    def remote(self) -> bool:
        """Served by an inference engine (no local weights): forward-only analyses."""
        return self.base.server is not None

    def load(self, label: str):
        """The loaded member (model, tokenizer), cached in the family's model store; for a served
        family, a `RemoteModel` that talks to the server."""
        ref = self.ref(label)
        if ref.server is not None:
            from explorer.core.remote import remote_model

            return remote_model(ref, self.base)
        parent = self.ref(ref.parent) if ref.adapter and ref.parent else None
        return self._store().get(ref, parent)

    def tokenizer(self, label: str):
        if self.ref(label).server is not None:
            return self.load(label).tokenizer
        return self._store().tokenizer(self.ref(label))

    @cached_property
    def shared_tokenizer(self) -> bool:
        """Whether every member maps text to the same token ids (token-level views rely on it).

        Cached: comparing whole vocabularies is costly for large ones, and cross-scoring and
        log-ratios ask once per scorer. A served family is one base and its LoRA adapters on one
        server, which share the base's tokenizer."""
        if self.remote:
            return all(m.server == self.base.server for m in self.members)
        vocabs = [self.tokenizer(label).get_vocab() for label in self.labels]
        return all(v == vocabs[0] for v in vocabs[1:])

    def subset(self, labels: list[str] | None) -> Family:
        """The same family restricted to `labels` (the base always stays)."""
        if labels is None:
            return self
        for label in labels:
            self.ref(label)
        kept = tuple(d for d in self.descendants if d.label in labels)
        return replace(self, descendants=kept)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "members": [m.to_dict() for m in self.members]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Family:
        refs = [ModelRef(**m) for m in data["members"]]
        return cls(base=refs[0], descendants=tuple(refs[1:]), name=data.get("name", ""))


def list_presets() -> list[str]:
    return ["fable", *PRESETS]


def card_metadata(folder: Path) -> dict[str, Any]:
    """The YAML front matter of a model folder's card (empty when there is none)."""
    from huggingface_hub.repocard import metadata_load

    card = folder / "README.md"
    return (metadata_load(card) or {}) if card.is_file() else {}


def is_model_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file() or (folder / "adapter_config.json").is_file()


def _first(value: Any) -> str | None:
    if isinstance(value, list):
        return str(value[0]) if value else None
    return None if value is None else str(value)


def discover_folder(root: Path, name: str = "") -> Family:
    """Build a family from the model folders under `root`, linking each to its card's base."""
    folders = sorted(
        p.parent for p in root.rglob("*.json") if p.name in ("config.json", "adapter_config.json")
    )
    folders = list(dict.fromkeys(folders))
    if not folders:
        raise ModelLoadError(
            f"{root} holds no model folder (a folder with config.json or adapter_config.json)"
        )
    by_key: dict[str, Path] = {}
    for folder in folders:
        by_key[folder.name] = folder
        by_key[str(folder.resolve())] = folder
    parents: dict[Path, Path | None] = {}
    relations: dict[Path, str] = {}
    for folder in folders:
        meta = card_metadata(folder)
        base = _first(meta.get("base_model"))
        parent = None
        if base:
            parent = by_key.get(base) or by_key.get(str((folder / base).resolve()))
            if parent is None and (root / base).exists():
                parent = by_key.get(str((root / base).resolve()))
        parents[folder] = parent
        relations[folder] = str(
            meta.get("base_model_relation") or ("finetune" if parent else "base")
        )
    roots = [f for f in folders if parents[f] is None]
    if len(roots) != 1:
        raise ModelLoadError(
            f"{root}: expected exactly one base model (a card without base_model), found "
            f"{len(roots)}: {', '.join(f.name for f in roots) or 'none (a cycle?)'}"
        )
    base = roots[0]
    ordered = _tree_order(base, parents)
    refs = [
        ModelRef(
            id=str(f),
            label=f.name,
            relation="base" if f == base else relations[f],
            adapter=(f / "adapter_config.json").is_file(),
            parent=None if f == base else parents[f].name,
        )
        for f in ordered
    ]
    unreachable = set(folders) - set(ordered)
    if unreachable:
        raise ModelLoadError(
            f"{root}: {', '.join(sorted(f.name for f in unreachable))} form a cycle"
        )
    return Family(base=refs[0], descendants=tuple(refs[1:]), name=name or root.name)


def _tree_order(base: Path, parents: dict[Path, Path | None]) -> list[Path]:
    """Base first, then each generation in name order (children before grandchildren)."""
    order, frontier = [base], [base]
    while frontier:
        children = sorted((f for f, p in parents.items() if p in frontier), key=lambda f: f.name)
        order += children
        frontier = children
    return order


def _looks_local(spec: str) -> bool:
    """Hub ids are `name` or `org/name`; anything else path-like is meant as a folder."""
    return spec.startswith((".", "/", "~")) or spec.count("/") > 1 or "\\" in spec


def _label(model_id: str) -> str:
    return Path(model_id).name if Path(model_id).exists() else model_id.split("/")[-1]


def _ref(spec: str | ModelRef, relation: str, parent: str | None) -> ModelRef:
    if isinstance(spec, ModelRef):
        return spec
    folder = Path(spec)
    if not folder.exists() and _looks_local(str(spec)):
        raise ValueError(f"descendants: no such folder {str(spec)!r}")
    adapter = (folder / "adapter_config.json").is_file()
    if folder.exists():
        relation = str(card_metadata(folder).get("base_model_relation") or relation)
    return ModelRef(
        id=str(folder) if folder.exists() else spec,
        label=_label(spec),
        relation="adapter" if adapter else relation,
        adapter=adapter,
        parent=parent,
    )


def _check_spec(name: str, value: Any) -> None:
    if not isinstance(value, (str, os.PathLike, ModelRef)):
        raise TypeError(
            f"{name}: expected a hub id, a path or a ModelRef, got {type(value).__name__}"
        )
    if isinstance(value, str) and not value.strip():
        raise ValueError(f"{name}: empty model id")


def load_family(
    source: str | os.PathLike | ModelRef | None = None,
    descendants: list[str | os.PathLike | ModelRef] | None = None,
    *,
    base: str | os.PathLike | ModelRef | None = None,
    store: Any = None,
    validate: bool = True,
    api_key: str | None = None,
) -> Family:
    """A family from a preset name (`"fable"`, `"smollm2"`, …), a base id/path plus
    `descendants`, a folder whose sub-folders' model cards name their `base_model`, or a
    server: `load_family("http://host:8000/v1", base="name")` takes the base and its LoRA
    adapters as the server lists them (or the `descendants` named).

    With `validate` (the default) every member's config is read now, so a missing path, a
    folder that is not a causal LM, an unreachable hub or server fails here with a clear
    message instead of half-way through a run.
    """
    from explorer.core.remote import is_server_url, served_family

    if is_server_url(source):
        return served_family(source, base, descendants, api_key=api_key)
    if source is not None and base is not None:
        raise ValueError("base: give the base once (as the first argument or as base=)")
    base = source if source is not None else base
    _check_spec("base", base)
    for d in descendants or []:
        _check_spec("descendants", d)
    family = _resolve(base, descendants)
    if store is not None:
        family = replace(family, store=store)
    labels = family.labels
    if len(set(labels)) != len(labels):
        raise ValueError(f"descendants: two members share a label: {labels}")
    if validate:
        for ref in family.members:
            check_ref(ref)
    return family


def _resolve(base, descendants) -> Family:
    if isinstance(base, ModelRef):
        refs = [_ref(d, "finetune", base.label) for d in descendants or []]
        return Family(base=base, descendants=tuple(refs), name=base.label)
    spec = os.fspath(base)
    if spec == "fable" and not descendants:
        from explorer.zoo import zoo_dir

        return discover_folder(zoo_dir(), name="fable")
    if spec in PRESETS and not descendants:
        base_id, kids = PRESETS[spec]
        base_ref = ModelRef(id=base_id, label=_label(base_id))
        refs = tuple(
            ModelRef(id=k, label=_label(k), relation=r, parent=base_ref.label) for k, r in kids
        )
        return Family(base=base_ref, descendants=refs, name=spec)
    folder = Path(spec)
    if folder.is_dir() and not is_model_folder(folder) and not descendants:
        return discover_folder(folder)
    if not folder.exists() and _looks_local(spec):
        raise ValueError(f"base: no such folder {spec!r}")
    base_ref = _ref(spec, "base", None)
    base_ref = replace(base_ref, relation="base", parent=None)
    refs = tuple(_ref(d, "finetune", base_ref.label) for d in descendants or [])
    return Family(base=base_ref, descendants=refs, name=base_ref.label)


def check_ref(ref: ModelRef) -> None:
    """Read a member's config (local or hub) and say clearly why it cannot be used."""
    if ref.is_local:
        folder = Path(ref.id)
        if not folder.is_dir() or not is_model_folder(folder):
            raise ModelLoadError(
                f"{ref.label}: {folder} is not a model folder (no config.json or adapter_config.json)"
            )
        if ref.adapter:
            return
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(ref.id, revision=ref.revision, trust_remote_code=False)
    except OSError as err:
        raise _hub_error(ref, err) from err
    except ValueError as err:
        raise ModelLoadError(f"{ref.label}: unsupported model config ({err})") from err
    archs = config.architectures or []
    if archs and not any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        raise ModelLoadError(
            f"{ref.label}: {', '.join(archs)} is not a causal language model; the explorer "
            "needs models that generate text left to right (…ForCausalLM)"
        )


def _hub_error(ref: ModelRef, err: Exception) -> ModelLoadError:
    if ref.is_local:
        return ModelLoadError(f"{ref.label}: cannot read {ref.id}: {err}")
    text = str(err)
    offline = any(
        s in text
        for s in (
            "offline",
            "resolve",
            "connect",
            "Connection",
            "Network",
            "Temporary failure",
            "cached files",
        )
    )
    if offline or os.environ.get("HF_HUB_OFFLINE") == "1":
        return HubUnreachableError(
            f"{ref.label}: cannot fetch {ref.id!r} from the Hugging Face hub (it is not reachable "
            "from here, or HF_HUB_OFFLINE=1). Use a local folder, or the bundled 'fable' family."
        )
    return ModelLoadError(f"{ref.label}: cannot load {ref.id!r}: {text.splitlines()[0]}")


def discover_descendants(
    base_id: str, relation: str | None = None, limit: int = 50
) -> list[ModelRef]:
    """A hub model's children from its model-tree tags (`base_model:<relation>:<id>`).

    Needs the hub; raises `HubUnreachableError` without it.
    """
    if limit < 1:
        raise ValueError(f"limit: must be at least 1, got {limit}")
    if relation is not None and relation not in RELATIONS:
        raise ValueError(f"relation: one of {', '.join(RELATIONS)}, got {relation!r}")
    from huggingface_hub import HfApi

    tag = f"base_model:{relation}:{base_id}" if relation else f"base_model:{base_id}"
    try:
        found = list(HfApi().list_models(filter=tag, limit=limit, sort="downloads"))
    except Exception as err:  # the hub client raises many network error types
        raise HubUnreachableError(
            f"discover_descendants: cannot list children of {base_id!r} on the Hugging Face hub "
            f"({type(err).__name__}); it needs network access to the hub."
        ) from err
    return [
        ModelRef(
            id=m.id, label=_label(m.id), relation=relation or "finetune", parent=_label(base_id)
        )
        for m in found
    ]
