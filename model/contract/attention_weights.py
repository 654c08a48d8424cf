"""The one wire form of lead attention: a JSON object from lead name to weight, in the card's lead order.

The Redis ``latest`` hash, the scores topic and screening's ``scores.csv`` all carry it, and the dashboards
and the ward view read it back, so it is written here once. Weights are rounded to 6 decimals (far below
what a reader can tell apart, and it keeps a 12-lead object under 200 bytes). Lead order is kept, not
sorted: the card's order is part of the meaning.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence

__all__ = ["DECIMALS", "lead_weights", "encode_lead_weights", "decode_lead_weights"]

DECIMALS = 6


def lead_weights(lead_names: Sequence[str], weights: Sequence[float] | None) -> dict[str, float] | None:
    """``{lead: weight}`` in ``lead_names`` order, or ``None`` when the model gave no lead attention.

    >>> lead_weights(["I", "II"], [0.25, 0.75])
    {'I': 0.25, 'II': 0.75}
    """
    if weights is None:
        return None
    values = [float(w) for w in weights]
    if len(values) != len(lead_names):
        raise ValueError(f"{len(values)} lead-attention weights for {len(lead_names)} leads")
    return {name: round(w, DECIMALS) for name, w in zip(lead_names, values)}


def encode_lead_weights(lead_names: Sequence[str], weights: Sequence[float] | None) -> str:
    """The JSON text of :func:`lead_weights` (``"null"`` when there are none)."""
    return json.dumps(lead_weights(lead_names, weights), separators=(",", ":"))


def decode_lead_weights(text: str | None) -> dict[str, float]:
    """The ``{lead: weight}`` of a stored value; empty for a missing, ``null`` or NaN value."""
    if text is None or (isinstance(text, float) and math.isnan(text)) or text in ("", "null"):
        return {}
    data = json.loads(text)
    if not isinstance(data, Mapping):
        raise ValueError(f"lead attention is not a JSON object: {text[:80]!r}")
    return {str(k): float(v) for k, v in data.items()}
