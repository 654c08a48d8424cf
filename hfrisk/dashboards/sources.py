"""What the dashboards point at: the data source plugins and uids, dashboard uids, scrape jobs.

Uids are part of every link to a dashboard and of the provisioned data sources: never change one.
"""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as mdash

__all__ = [
    "REDIS_PLUGIN", "PROMETHEUS_PLUGIN", "DASHBOARD_UIDS", "DATASOURCE_UIDS", "PROMETHEUS_JOBS", "FOLDER_UID",
    "TREND_POINTS", "QUALITY_RECORDS", "PROMETHEUS", "REDIS",
]

REDIS_PLUGIN = "redis-datasource"
PROMETHEUS_PLUGIN = "prometheus"
# Dashboard uids are part of every link to them: never change one.
DASHBOARD_UIDS = {"ward": "hfrisk-ward", "operations": "hfrisk-operations"}
# The provisioned data sources; the datasource variables default to them.
DATASOURCE_UIDS = {"prometheus": "hfrisk-prometheus", "redis": "hfrisk-redis"}
# Scrape job names in deploy/prometheus.yml, used by the "targets up" panel.
PROMETHEUS_JOBS = {"worker": "worker", "triton": "triton"}
FOLDER_UID = "hfrisk"
# The plugin cannot bound a ZRANGE by the time picker (see hfrisk.dashboards.ward): an hour at a 5-s hop.
TREND_POINTS = 720
QUALITY_RECORDS = 100

PROMETHEUS = mdash.DataSourceRef(type_val=PROMETHEUS_PLUGIN, uid="${prometheus}")
REDIS = mdash.DataSourceRef(type_val=REDIS_PLUGIN, uid="${redis}")
