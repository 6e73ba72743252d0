"""Results as download bytes: tables as CSV or Parquet, a whole session as JSON, charts (given
as Vega-Lite specs) as PNG or SVG through vl-convert — no display code, no widget."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import pandas as pd

from explorer.core.session import Session

MIME = {"csv": "text/csv", "parquet": "application/octet-stream", "json": "application/json",
        "png": "image/png", "svg": "image/svg+xml", "html": "text/html"}  # fmt: skip


@dataclass(frozen=True)
class Download:
    filename: str
    data: bytes

    @property
    def mime(self) -> str:
        return MIME[self.filename.rsplit(".", 1)[-1]]


def table_bytes(df: pd.DataFrame, fmt: str = "csv") -> bytes:
    if fmt == "csv":
        return df.to_csv(index=False).encode()
    if fmt == "parquet":
        buffer = BytesIO()
        df.to_parquet(buffer, index=False)
        return buffer.getvalue()
    raise ValueError(f"fmt: 'csv' or 'parquet', got {fmt!r}")


def session_bytes(session: Session) -> bytes:
    """The session file exactly as `Session.save` writes it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "session.json"
        session.save(path)
        return path.read_bytes()


def chart_bytes(spec: dict[str, Any] | str, fmt: str = "png") -> bytes:
    """A Vega-Lite spec (dict or JSON) drawn offline by vl-convert."""
    import vl_convert as vlc

    if fmt == "png":
        return vlc.vegalite_to_png(spec, scale=2)
    if fmt == "svg":
        return vlc.vegalite_to_svg(spec).encode()
    raise ValueError(f"fmt: 'png' or 'svg', got {fmt!r}")


def downloads(
    session: Session, tables: dict[str, pd.DataFrame] | None = None,
    charts: dict[str, dict[str, Any]] | None = None,
) -> list[Download]:  # fmt: skip
    """Every download the Data tab offers: samples (CSV, Parquet), the session, each extra
    table as CSV, each chart as PNG and SVG."""
    if session.samples is None:
        raise ValueError("Nothing to export yet: resample first.")
    df = session.samples.df
    files = [Download("samples.csv", table_bytes(df)), Download("samples.parquet", table_bytes(df, "parquet")),
             Download("session.json", session_bytes(session))]  # fmt: skip
    files += [Download(f"{name}.csv", table_bytes(t)) for name, t in (tables or {}).items() if t is not None]
    for name, spec in (charts or {}).items():
        files += [Download(f"{name}.png", chart_bytes(spec, "png")), Download(f"{name}.svg", chart_bytes(spec, "svg"))]
    return files
