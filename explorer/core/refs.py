"""Where a family member comes from: the one data type every other module can import.

A `ModelRef` says where a member lives (a hub id, a local folder, a GGUF file, or a name on a
model server) and how it relates to the base. It holds no loaded state, so it can be saved,
compared and sent anywhere.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class ModelRef:
    """Where a member comes from and how it relates to the family's base."""

    id: str  # hub id, local folder or .gguf file, or the served model's name
    label: str  # the name shown in every table
    relation: str = "base"
    revision: str | None = None
    adapter: bool = False  # a peft adapter: loaded on top of `parent`
    parent: str | None = None  # label of the member it was made from
    server: str | None = None  # an OpenAI-compatible server (…/v1) that serves `id` by name
    gguf_file: str | None = None  # a GGUF file inside `id` (a folder or hub repository)

    @property
    def is_local(self) -> bool:
        return self.server is None and Path(self.id).exists()

    @property
    def is_served(self) -> bool:
        return self.server is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelRef:
        """A ref from `to_dict()` output, also from sessions written before a field existed."""
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})
