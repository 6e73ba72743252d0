"""What the app shows for an imported session: its results in a loaded family, or (replay)
every table from its samples with no model loaded."""

from __future__ import annotations

from typing import Any

from explorer.app.derived import attribution_views


def session_updates(ctl: Any, session: Any, name: str) -> dict[str, Any]:
    """The state values that show `session` (saved as file `name`) in the app of `ctl`."""
    updates: dict[str, Any] = {"behaviours": session.behaviours, "error": "", "auto_behaviours": {}}
    family = ctl.state.family
    replay = family is None
    if session.samples is not None and not replay:
        kept = [m for m in session.samples.models if m in family.labels and m != family.labels[0]]
        updates.update(ctl._analysed(family.subset(kept), session.samples, session.behaviours))
    elif session.samples is not None:  # replay: every table from the samples, no model loaded
        updates.update(ctl._analysed(None, session.samples, session.behaviours))
        updates.update(relations={m["label"]: m.get("relation", "") for m in session.family.get("members", [])})
    if session.samples is not None:
        updates["prompt"] = session.samples.prompt
    if session.attribution is not None:
        updates.update(attribution_views(session.attribution))
    if session.amplified is not None:
        updates.update(amplified=session.amplified, **ctl.core.path_tables(session.amplified, session.behaviours))
    status = (f"Replay of {name}: read-only, no model loaded (load a family to resample)" if replay
              else f"Imported session from {name}")  # fmt: skip
    return {**updates, "chosen": session.selected, "replay": replay, "status": status}
