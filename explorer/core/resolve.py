"""Resolving a family: from a preset, a base id or path plus descendants, a folder whose
model cards name their `base_model`, or a model server.

Discovery reads each model folder's card (`README.md` front matter `base_model:` and
`base_model_relation:`), the way the Hugging Face hub builds its model tree. GGUF files count
as members too: a `.gguf` path, a folder holding one `.gguf` file, or `org/repo/file.gguf`.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from explorer.core.checks import check_ref
from explorer.core.errors import HubUnreachableError, ModelLoadError
from explorer.core.family import Family
from explorer.core.refs import RELATIONS, ModelRef
from explorer.core.served.backend import backend_for, is_server_url
from explorer.core.store import ModelStore

# Real hub families users ask for. They load when the hub is reachable; tests never use them.
PRESETS: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "smollm2": (
        "HuggingFaceTB/SmolLM2-135M",
        [("HuggingFaceTB/SmolLM2-135M-Instruct", "instruct")],
    ),
    "gpt2": ("openai-community/gpt2", [("distilbert/distilgpt2", "distillation")]),
    "pythia": ("EleutherAI/pythia-70m", [("EleutherAI/pythia-160m", "sibling")]),
}


# The bundled zoo: "fable" is its default family, "fable-all" every member it holds.
ZOO_PRESETS = ("fable", "fable-all")


def list_presets() -> list[str]:
    return [*ZOO_PRESETS, *PRESETS]


def card_metadata(folder: Path) -> dict[str, Any]:
    """The YAML front matter of a model folder's card (empty when there is none)."""
    from huggingface_hub.repocard import metadata_load

    card = folder / "README.md"
    return (metadata_load(card) or {}) if card.is_file() else {}


def gguf_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.gguf")) if folder.is_dir() else []


def is_member_folder(folder: Path) -> bool:
    """A folder that holds one member: a config, an adapter config, or GGUF weights."""
    names = ("config.json", "adapter_config.json")
    return any((folder / n).is_file() for n in names) or bool(gguf_files(folder))


def folder_gguf(folder: Path) -> str | None:
    """The one GGUF file of a folder without a config (None when it has a config)."""
    if (folder / "config.json").is_file() or (folder / "adapter_config.json").is_file():
        return None
    files = gguf_files(folder)
    if len(files) > 1:
        names = ", ".join(f.name for f in files)
        raise ModelLoadError(
            f"{folder.name}: holds {len(files)} GGUF files ({names}); name one, e.g. "
            f"load_family('{files[0]}')"
        )
    return files[0].name if files else None


def _first(value: Any) -> str | None:
    if isinstance(value, list):
        return str(value[0]) if value else None
    return None if value is None else str(value)


def discover_folder(root: Path, name: str = "") -> Family:
    """Build a family from the model folders under `root`, linking each to its card's base."""
    found = {p.parent for p in root.rglob("*") if p.name in ("config.json", "adapter_config.json")}
    found |= {p.parent for p in root.rglob("*.gguf")}
    folders = sorted(found)
    if not folders:
        raise ModelLoadError(
            f"{root} holds no model folder (a folder with config.json, adapter_config.json or a .gguf file)"
        )
    parents, relations = _card_links(root, folders)
    roots = [f for f in folders if parents[f] is None]
    if len(roots) != 1:
        raise ModelLoadError(
            f"{root}: expected exactly one base model (a card without base_model), found "
            f"{len(roots)}: {', '.join(f.name for f in roots) or 'none (a cycle?)'}"
        )
    ordered = _tree_order(roots[0], parents)
    unreachable = set(folders) - set(ordered)
    if unreachable:
        raise ModelLoadError(f"{root}: {', '.join(sorted(f.name for f in unreachable))} form a cycle")
    refs = [_folder_ref(f, f == roots[0], relations[f], parents[f]) for f in ordered]
    return Family(base=refs[0], descendants=tuple(refs[1:]), name=name or root.name)


def _card_links(root: Path, folders: list[Path]) -> tuple[dict, dict]:
    """Each folder's parent folder (from its card's `base_model`) and relation."""
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
        relations[folder] = str(meta.get("base_model_relation") or ("finetune" if parent else "base"))
    return parents, relations


def _folder_ref(folder: Path, is_base: bool, relation: str, parent: Path | None) -> ModelRef:
    return ModelRef(
        id=str(folder), label=folder.name, relation="base" if is_base else relation,
        adapter=(folder / "adapter_config.json").is_file(),
        parent=None if is_base else parent.name, gguf_file=folder_gguf(folder),
    )  # fmt: skip


def _tree_order(base: Path, parents: dict[Path, Path | None]) -> list[Path]:
    """Base first, then each generation in name order (children before grandchildren)."""
    order, frontier = [base], [base]
    while frontier:
        children = sorted((f for f, p in parents.items() if p in frontier), key=lambda f: f.name)
        order += children
        frontier = children
    return order


def _looks_local(spec: str) -> bool:
    """Hub ids are `name`, `org/name` or `org/name/file.gguf`; anything else path-like is a path."""
    if spec.endswith(".gguf") and spec.count("/") == 2 and not spec.startswith((".", "/", "~")):
        return False
    return spec.startswith((".", "/", "~")) or spec.count("/") > 1 or "\\" in spec


def _label(model_id: str) -> str:
    return Path(model_id).name if Path(model_id).exists() else model_id.split("/")[-1]


def spec_ref(spec: str | os.PathLike | ModelRef, relation: str, parent: str | None) -> ModelRef:
    """A member's ref from a user's spec (hub id, folder, .gguf file or `org/repo/file.gguf`)."""
    if isinstance(spec, ModelRef):
        return spec
    spec = os.fspath(spec)
    path = Path(spec).expanduser()
    if not path.exists() and _looks_local(spec):
        raise ValueError(f"no such file or folder {spec!r}")
    if spec.endswith(".gguf"):
        return _gguf_ref(spec, path, relation, parent)
    if not path.exists():
        return ModelRef(id=spec, label=_label(spec), relation=relation, parent=parent)
    adapter = (path / "adapter_config.json").is_file()
    relation = str(card_metadata(path).get("base_model_relation") or relation)
    return ModelRef(id=str(path), label=path.name, relation="adapter" if adapter else relation,
                    adapter=adapter, parent=parent, gguf_file=folder_gguf(path))  # fmt: skip


def _gguf_ref(spec: str, path: Path, relation: str, parent: str | None) -> ModelRef:
    """A GGUF file: local (its folder's card, if any, gives the relation) or on the hub."""
    if not path.exists():  # org/repo/file.gguf
        repo, file = spec.rsplit("/", 1)
        return ModelRef(id=repo, label=Path(file).stem, relation=relation, parent=parent, gguf_file=file)
    if not path.is_file():
        raise ValueError(f"{spec!r} is a folder named like a GGUF file")
    relation = str(card_metadata(path.parent).get("base_model_relation") or relation)
    return ModelRef(id=str(path.parent), label=path.stem, relation=relation, parent=parent,
                    gguf_file=path.name)  # fmt: skip


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
    store: ModelStore | None = None,
    validate: bool = True,
    api_key: str | None = None,
) -> Family:
    """A family from a preset name (`"fable"`, `"smollm2"`, …), a base id/path plus
    `descendants`, a folder whose sub-folders' model cards name their `base_model`, a GGUF
    file, or a server: `load_family("http://host:8000/v1", base="name")` takes the base and its
    LoRA adapters as the server lists them (or the `descendants` named).

    With `validate` (the default) every member's config is read now, so a missing path, a
    folder that is not a causal LM, an unreachable hub or server fails here with a clear
    message instead of half-way through a run.
    """
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
        refs = [_descendant(d, base.label) for d in descendants or []]
        return Family(base=base, descendants=tuple(refs), name=base.label)
    spec = os.fspath(base)
    if spec in ZOO_PRESETS:
        return _zoo(spec, descendants)
    if spec in PRESETS and not descendants:
        return _preset(spec)
    folder = Path(spec)
    if folder.is_dir() and not is_member_folder(folder) and not descendants:
        return discover_folder(folder)
    try:
        base_ref = replace(spec_ref(spec, "base", None), relation="base", parent=None)
    except ValueError as err:
        raise ValueError(f"base: {err}") from err
    refs = tuple(_descendant(d, base_ref.label) for d in descendants or [])
    return Family(base=base_ref, descendants=refs, name=base_ref.label)


def _zoo(spec: str, descendants) -> Family:
    """The zoo's default members, all of them ("fable-all"), or its base with the descendants
    named: zoo labels (`"fable-mid"`) pick the shipped member, anything else is a path or id."""
    from explorer.zoo import MEMBERS, zoo_dir

    every = discover_folder(zoo_dir(), name="fable")
    if not descendants:
        return every if spec == "fable-all" else every.subset([m for m in MEMBERS if m in every.labels])
    base = every.base
    for d in descendants:
        if isinstance(d, str) and d.startswith("fable-") and d not in every.labels:
            raise ValueError(f"descendants: {d!r} is not in the fable zoo (it holds {', '.join(every.labels[1:])})")
    refs = tuple(
        every.ref(d) if isinstance(d, str) and d in every.labels else _descendant(d, base.label)
        for d in descendants
    )  # fmt: skip
    return Family(base=base, descendants=refs, name="fable")


def _descendant(spec, parent: str) -> ModelRef:
    try:
        return spec_ref(spec, "finetune", parent)
    except ValueError as err:
        raise ValueError(f"descendants: {err}") from err


def _preset(name: str) -> Family:
    base_id, kids = PRESETS[name]
    base_ref = ModelRef(id=base_id, label=_label(base_id))
    refs = tuple(ModelRef(id=k, label=_label(k), relation=r, parent=base_ref.label) for k, r in kids)
    return Family(base=base_ref, descendants=refs, name=name)


def served_family(url: str, base, descendants=None, api_key: str | None = None) -> Family:
    """A family served by one server: `base` is a served model name; descendants are the names
    given, or every LoRA adapter the server lists with `base` as its parent."""
    if "#" in url and base is None:  # "http://host:8000/v1#name", as the app's family box takes it
        url, base = url.split("#", 1)
    backend = backend_for(url, api_key)
    served = {m["id"]: m for m in backend.models()}
    base = _served_base(backend.root_url, served, base)
    if descendants is None:
        names = [m for m, info in served.items() if info.get("parent") == base and m != base]
    else:
        names = [str(d) for d in descendants]
    for name in names:
        if name not in served:
            raise ModelLoadError(
                f"descendants: {backend.root_url} does not serve {name!r} (it serves {', '.join(served)})"
            )
    server = backend.base_url
    base_ref = ModelRef(id=base, label=base, server=server)
    refs = tuple(
        ModelRef(id=n, label=n, relation="adapter" if served[n].get("parent") == base else "finetune",
                 adapter=served[n].get("parent") == base, parent=base, server=server)
        for n in names
    )  # fmt: skip
    return Family(base=base_ref, descendants=refs, name=f"{base} @ {backend.root_url}")


def _served_base(root_url: str, served: dict[str, dict], base: Any) -> str:
    if base is None:
        roots = [m for m, info in served.items() if not info.get("parent")]
        if len(roots) != 1:
            raise ValueError(
                f"base: {root_url} serves {', '.join(roots) or 'no base model'}; name one (base=…, or URL#name)"
            )
        base = roots[0]
    if not isinstance(base, str) or not base.strip():
        raise ValueError("base: name the served base model, e.g. load_family(url, base='my-base')")
    if base not in served:
        raise ModelLoadError(
            f"base: {root_url} does not serve {base!r} (it serves {', '.join(served) or 'nothing'})"
        )
    return base


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
        ModelRef(id=m.id, label=_label(m.id), relation=relation or "finetune", parent=_label(base_id))
        for m in found
    ]
