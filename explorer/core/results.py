"""Saving and loading result objects losslessly, as one versioned JSON file.

JSON keeps every float exactly (Python writes the shortest repr that reads back to the same
double), lists of tokens stay lists, and the file says what it is and which format version wrote
it, so a truncated file or one from a newer version fails with a clear message.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

FORMAT = "model-family-explorer"
VERSION = 1


def library_versions() -> dict[str, str]:
    import torch
    import transformers

    import explorer

    versions = {
        "explorer": explorer.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    try:
        import peft

        versions["peft"] = peft.__version__
    except ImportError:  # pragma: no cover - peft is a dependency
        pass
    return versions


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as plain Python values (for json)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot save a value of type {type(value).__name__}")


def table_to_json(df: pd.DataFrame) -> dict[str, Any]:
    return {"columns": list(map(str, df.columns)), "rows": df.astype(object).values.tolist()}


def table_from_json(data: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(data["rows"], columns=data["columns"])


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: never a half-written file, and no
    temporary file left behind by a Ctrl-C (held until the rename is done, see `signals_held`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with signals_held():
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block ends (main thread, POSIX): a Ctrl-C that landed
    between creating the temporary file and the `try` that removes it left it behind (seen
    once in a loaded test run). Elsewhere the block runs as is."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class ResultFile:
    """The on-disk envelope for one kind of result object."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def save(
        self, path: str | os.PathLike, tables: dict[str, pd.DataFrame], meta: dict[str, Any]
    ) -> None:
        doc = {
            "format": FORMAT,
            "kind": self.kind,
            "version": VERSION,
            "meta": meta,
            "tables": {name: table_to_json(df) for name, df in tables.items()},
        }
        write_atomic(Path(path), json.dumps(doc, default=_plain, allow_nan=True))

    def load(self, path: str | os.PathLike) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"path: no file at {path}")
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(
                f"path: {path.name} is not a complete {self.kind} file (truncated or damaged: {err})"
            ) from err
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(f"path: {path.name} is not a Model Family Explorer file")
        if doc.get("kind") != self.kind:
            raise ValueError(f"path: {path.name} holds a {doc.get('kind')}, not a {self.kind}")
        version = doc.get("version")
        if not isinstance(version, int) or version > VERSION:
            raise ValueError(
                f"path: {path.name} was written by a newer format (version {version}; this "
                f"explorer reads up to {VERSION}). Upgrade model-family-explorer to open it."
            )
        tables = {name: table_from_json(t) for name, t in doc["tables"].items()}
        return tables, doc["meta"]
