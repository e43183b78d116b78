"""Small text helpers shared by the sections and the renderers: numbers, durations, slugs, safe URLs."""

from __future__ import annotations

import math
import re
from typing import Any


def number(value: Any, decimals: int = 3) -> str:
    """A number for a table: fixed decimals, '-' when missing or not finite."""
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        return "-" if value in (None, "") else str(value)
    if not math.isfinite(as_float):
        return "-"
    if as_float == int(as_float) and abs(as_float) < 1e9 and decimals == 0:
        return str(int(as_float))
    return f"{as_float:.{decimals}f}"


MIN_INTERVAL_N = 2  # below two observations a bootstrap interval is one point ('1.000-1.000'): never printed


def interval(low: Any, high: Any, n: Any = None) -> str:
    """'[lo, hi]' with table decimals; with `n` below MIN_INTERVAL_N, no interval but the reason (issue 22, 9)."""
    try:
        too_few = n is not None and int(n) < MIN_INTERVAL_N
    except (TypeError, ValueError):
        too_few = False
    if too_few:
        return f"none (n = {n})"
    return f"[{number(low)}, {number(high)}]"


def duration(seconds: Any) -> str:
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        return "not recorded"
    if not math.isfinite(value):
        return "not recorded"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.2f} h"


def metric_label(metric: str) -> str:
    """'clip_i' -> 'CLIP-I'."""
    return metric.upper().replace("_", "-")


def slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def a1111_name(token: str) -> str:
    """The token as a file/prompt word for AUTOMATIC1111 (and as a Hub tag): letters, digits, '_' and '-'."""
    return re.sub(r"[^A-Za-z0-9_-]+", "", token) or "token"


def safe_url(url: str) -> str:
    """Only http(s) addresses become links; spaces, quotes and angle brackets are percent-encoded."""
    url = str(url).strip()
    if not re.match(r"^https?://", url, re.I):
        return ""
    return url.replace(" ", "%20").replace("<", "%3C").replace(">", "%3E").replace('"', "%22").replace("'", "%27")
