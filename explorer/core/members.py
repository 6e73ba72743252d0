"""The one place that decides how a member is run: its weights loaded here, or a server.

Everything downstream works through the `Member` protocol and asks capabilities
(`has_weights`, `concurrent`), so a new backend is one more branch here and one class that
implements the protocol.
"""

from __future__ import annotations

from explorer.core.member import Member
from explorer.core.refs import ModelRef
from explorer.core.served.member import served_member
from explorer.core.store import ModelStore, default_store


def open_member(
    ref: ModelRef, base: ModelRef, parent: ModelRef | None, store: ModelStore | None
) -> Member:
    """The member for `ref`: served when its ref names a server, else loaded into `store`
    (the process-wide store when None), on top of `parent` for an adapter."""
    if ref.is_served:
        return served_member(ref, base)
    return (store or default_store()).get(ref, parent if ref.adapter else None)
