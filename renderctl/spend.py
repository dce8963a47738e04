"""What work costs, as renderctl prints it: a quote's estimate and an owner's month, one line each."""

from __future__ import annotations


def duration(seconds: float | None) -> str:
    """`45s`, `12m05s`, `3h02m`; `-` when unknown."""
    if seconds is None:
        return "-"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def quote_line(quote: dict) -> str:
    """One line: the full job's worker time, wall time at the live workers, and dollars."""
    wall = (
        f"{duration(quote['wall_seconds'])} wall on {quote['workers']} worker(s)"
        if quote["wall_seconds"] is not None
        else "no live worker for a wall time"
    )
    return (
        f"quote: {quote['frames']} frames in {quote['chunks']} chunks: {duration(quote['worker_seconds'])} of worker "
        f"time, {wall}, ${quote['dollars']:.2f} ({quote['seconds_per_frame']:g} s a frame, "
        f"{quote['startup_seconds']:g} s start-up a chunk)"
    )


def usage_line(usage: dict) -> str:
    """One line: this month's spend, and the budget and what is left of it."""
    budget = (
        "no budget" if usage["budget"] is None else f"budget ${usage['budget']:.2f}, ${usage['remaining']:.2f} left"
    )
    return (
        f"{usage['month']}: ${usage['spent']:.2f} spent ({duration(usage['worker_seconds'])} of worker time), {budget}"
    )
