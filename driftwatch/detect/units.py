"""Durations as people write them: `6h`, `15m`, `1h30m`, never `21600s`."""

from __future__ import annotations

_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def format_duration(seconds: float) -> str:
    """`6h`, `1h30m`, `45s`, `250ms`: the largest units first, at most two of them, so the
    text matches what the config accepts and a person reads it at a glance."""
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {seconds}")
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms" if seconds else "0s"
    whole, parts = round(seconds), []
    for unit, size in _UNITS:
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts[:2])


__all__ = ["format_duration"]
