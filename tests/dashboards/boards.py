"""What the dashboard tests share: the generated boards, built once."""

from __future__ import annotations

from hfrisk import dashboards as dash

BOARDS = dash.build_dashboards()


def panels(board: dict) -> list[dict]:
    """The board's panels, rows left out."""
    return [p for p in board["panels"] if p["type"] != "row"]
