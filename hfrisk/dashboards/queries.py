"""What the panels query: the Redis data source's query model, and every query of a dashboard as text.

The SDK has no builder for the Redis data source plugin (``redis-datasource``), so :class:`RedisQuery`
writes the plugin's ``queryModel`` itself (``command``, ``keyName``, ``field``, ``min``, ``max``,
``count``, and ``query`` for raw commands). :func:`panel_queries` lists every query a dashboard runs,
with Redis targets as the command line the plugin sends (:func:`redis_command`), which is what the
live tests execute.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants

from hfrisk.dashboards.sources import PROMETHEUS_PLUGIN, REDIS, REDIS_PLUGIN

__all__ = ["PanelQuery", "RedisQuery", "panel_queries", "redis_command", "render_query", "split_command"]


class PanelQuery(NamedTuple):
    """One query of one panel (or template variable): what a live check runs."""

    title: str
    kind: str  # "prometheus" (PromQL) or "redis" (a Redis command line)
    query: str


# -- the Redis data source's query model ------------------------------------------------------


class RedisQuery(cogvariants.Dataquery, cogbuilder.Builder[cogvariants.Dataquery]):
    """A target of the ``redis-datasource`` plugin: one of its commands, or a raw command line.

    ``command`` is the plugin's command id (``hgetall``, ``hget``, ``zrange``, ``xrevrange``, …)
    with ``key``/``field``/``min``/``max``/``count``; ``cli`` is a whole command line, which
    the plugin runs as given (after variable interpolation) and returns as one string field.
    """

    def __init__(
        self,
        ref_id: str = "A",
        *,
        command: str = "",
        key: str = "",
        field: str = "",
        min: str = "",
        max: str = "",
        count: int = 0,
        cli: str = "",
    ) -> None:
        if bool(command) == bool(cli):
            raise ValueError("a Redis target is either a plugin command or a command line, not both")
        self.ref_id, self.command, self.key, self.field = ref_id, command, key, field
        self.min, self.max, self.count, self.cli = min, max, count, cli

    def build(self) -> RedisQuery:
        return self

    def to_json(self) -> dict[str, object]:
        data: dict[str, object] = {"refId": self.ref_id, "datasource": REDIS.to_json()}
        if self.cli:
            data |= {"type": "cli", "query": self.cli}
            return data
        data |= {"type": "command", "command": self.command, "keyName": self.key}
        data |= {"field": self.field} if self.field else {}
        data |= {"min": self.min, "max": self.max} if self.command == "zrange" else {}
        data |= {"count": self.count} if self.count else {}
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RedisQuery:
        if data.get("query"):
            return cls(data.get("refId", "A"), cli=data["query"])
        return cls(
            data.get("refId", "A"), command=data["command"], key=data.get("keyName", ""),
            field=data.get("field", ""), min=data.get("min", ""), max=data.get("max", ""),
            count=data.get("count", 0),
        )


def redis_command(target: Mapping[str, Any]) -> str:
    """The Redis command line the plugin's backend sends for ``target`` (a target's JSON),
    variables left in place (``${__from}``/``${__to}``: the time range, epoch ms).

    Mirrors the plugin's Go backend, so a live check runs exactly what Grafana would.
    """
    if target.get("query"):
        return target["query"]
    command, key = target["command"], target["keyName"]
    if command in ("hgetall", "smembers", "hkeys", "get", "type", "ttl", "hlen", "xlen", "llen", "scard"):
        return f"{command.upper()} {key}"
    if command == "hget":
        return f"HGET {key} {target['field']}"
    if command == "zrange":
        by = f" {target['zrangeQuery']}" if target.get("zrangeQuery") else ""
        return f"ZRANGE {key} {target['min']} {target['max']}{by} WITHSCORES"
    if command in ("xrange", "xrevrange"):
        start = target.get("start") or "${__from}-0"
        end = target.get("end") or "${__to}-0"
        first, last = (start, end) if command == "xrange" else (end, start)
        count = f" COUNT {target['count']}" if target.get("count") else ""
        return f"{command.upper()} {key} {first} {last}{count}"
    raise ValueError(f"no Redis command line known for the plugin command {command!r}")


# -- every query of a dashboard, as text --------------------------------------------------------


def _constants(board: Mapping[str, Any]) -> dict[str, str]:
    return {v["name"]: v["query"] for v in board.get("templating", {}).get("list", []) if v.get("type") == "constant"}


def panel_queries(board: Mapping[str, Any], variables: Mapping[str, str] | None = None) -> list[PanelQuery]:
    """Every query the dashboard runs: each panel target, then each query variable.

    Redis targets come back as the command line the plugin sends (:func:`redis_command`).
    With ``variables``, template variables in the queries are substituted (:func:`render_query`;
    the dashboard's constants fill in any not given); without, they are left as written. Titles
    stay as written, so they identify the panel either way.
    """
    out: list[PanelQuery] = []
    for panel in _panels(board["panels"]):
        kind = _kind(panel.get("datasource"))
        for target in panel.get("targets", []):
            target_kind = _kind(target.get("datasource")) or kind
            query = redis_command(target) if target_kind == "redis" else target["expr"]
            out.append(PanelQuery(panel["title"], target_kind, query))
    for var in board.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            out.append(PanelQuery(f"${var['name']} (variable)", _kind(var.get("datasource")), var["query"]))
    if variables is not None:
        values = _constants(board) | dict(variables)
        out = [q._replace(query=render_query(q.query, values)) for q in out]
    return out


def _panels(panels: Iterable[Mapping[str, Any]]) -> Iterable[Mapping[str, Any]]:
    for panel in panels:
        if panel.get("type") == "row":
            yield from _panels(panel.get("panels", []))
        else:
            yield panel


def _kind(datasource: Mapping[str, Any] | None) -> str:
    plugin = (datasource or {}).get("type", "")
    return {PROMETHEUS_PLUGIN: "prometheus", REDIS_PLUGIN: "redis"}.get(plugin, plugin)


_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")


def render_query(query: str, values: Mapping[str, str]) -> str:
    """Substitute ``${name}`` and ``$name`` as Grafana would; unknown names stay as written."""

    def substitute(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        return str(values[name]) if name in values else match.group(0)

    return _VARIABLE.sub(substitute, query)


def split_command(command_line: str) -> list[str]:
    """A rendered Redis command line as arguments (the plugin splits with shell rules too)."""
    return shlex.split(command_line)
