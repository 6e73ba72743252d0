"""A model family: one base and its descendants, each a `ModelRef`; members open lazily.

Resolving a family from a preset, folder, hub ids or a server lives in
`explorer.core.resolve`; this module is only the data type and its access to members.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from explorer.core.member import Member
from explorer.core.members import open_member
from explorer.core.refs import ModelRef
from explorer.core.store import ModelStore


@dataclass(frozen=True)
class Family:
    """One base and any number of descendants. Members load lazily through `store`."""

    base: ModelRef
    descendants: tuple[ModelRef, ...] = ()
    name: str = ""
    store: ModelStore | None = field(default=None, compare=False, repr=False)

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

    def load(self, label: str) -> Member:
        """The member `label`, ready to sample and score (cached by the store or client)."""
        ref = self.ref(label)
        parent = self.ref(ref.parent) if ref.adapter and ref.parent else None
        return open_member(ref, self.base, parent, self.store)

    member = load

    def tokenizer(self, label: str) -> Any:
        return self.load(label).tokenizer

    @property
    def has_weights(self) -> bool:
        """Whether every member's weights are at hand (gradients, attention, KL need them)."""
        return all(self.load(label).has_weights for label in self.labels)

    @property
    def server(self) -> str | None:
        """The server of a served base (for messages), else None."""
        return self.base.server

    @cached_property
    def shared_tokenizer(self) -> bool:
        """Whether every member maps text to the same token ids (token-level views rely on it).

        Cached: comparing whole vocabularies is costly for large ones, and cross-scoring and
        log-ratios ask once per scorer."""
        keys = [self.load(label).tokenizer_key for label in self.labels]
        return all(k == keys[0] for k in keys[1:])

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
    def from_dict(cls, data: dict[str, Any], store: ModelStore | None = None) -> Family:
        refs = [ModelRef.from_dict(m) for m in data["members"]]
        return cls(base=refs[0], descendants=tuple(refs[1:]), name=data.get("name", ""), store=store)
