"""Grafana dashboards as code: the ward view (Redis) and the operations view (Prometheus).

Built with ``grafana-foundation-sdk`` (the 11.6 line: dashboard schemaVersion 41), whose builders
and models follow Grafana's own schema, so panel options use Grafana's field names.

* ``sources``: plugins, data source and dashboard uids, scrape jobs;
* ``queries``: the Redis plugin's query model, and every query a dashboard runs as text;
* ``builders``: small shared panel pieces; ``ward`` and ``operations``: the two dashboards;
* ``rules``: Prometheus recording and alert rules of model monitoring;
* ``files``: the JSON, provisioning YAML and rule file, built and written; ``upload``: push to a Grafana;
* ``commands``: ``hfrisk dashboards write|push``.

Example::

    >>> boards = build_dashboards()
    >>> sorted(boards)
    ['operations', 'ward']
    >>> ("Patients by current risk", "redis", "ZRANGE ${prefix}:ranking 0 -1 WITHSCORES") in panel_queries(boards["ward"])
    True
"""

from hfrisk.dashboards.commands import app
from hfrisk.dashboards.files import RULES_PATH, build_dashboards, provisioning_files, rendered_files, write_dashboards
from hfrisk.dashboards.queries import (
    PanelQuery,
    RedisQuery,
    panel_queries,
    redis_command,
    render_query,
    split_command,
)
from hfrisk.dashboards.sources import (
    DASHBOARD_UIDS,
    DATASOURCE_UIDS,
    FOLDER_UID,
    PROMETHEUS_JOBS,
    PROMETHEUS_PLUGIN,
    QUALITY_RECORDS,
    REDIS_PLUGIN,
    TREND_POINTS,
)
from hfrisk.dashboards.rules import ALERT_NAMES, RULE_NAMES, prometheus_rules, rules_file
from hfrisk.dashboards.upload import push_dashboards

__all__ = [
    "ALERT_NAMES",
    "RULES_PATH",
    "RULE_NAMES",
    "prometheus_rules",
    "rules_file",
    "DASHBOARD_UIDS",
    "DATASOURCE_UIDS",
    "FOLDER_UID",
    "PROMETHEUS_JOBS",
    "PROMETHEUS_PLUGIN",
    "QUALITY_RECORDS",
    "REDIS_PLUGIN",
    "TREND_POINTS",
    "PanelQuery",
    "RedisQuery",
    "app",
    "build_dashboards",
    "panel_queries",
    "provisioning_files",
    "push_dashboards",
    "redis_command",
    "render_query",
    "rendered_files",
    "split_command",
    "write_dashboards",
]
