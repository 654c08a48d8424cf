"""Pushing the dashboards to a running Grafana through its HTTP API (``hfrisk dashboards push``)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from hfrisk.dashboards.files import build_dashboards
from hfrisk.dashboards.sources import FOLDER_UID

__all__ = ["push_dashboards"]


def push_dashboards(
    url: str,
    auth: str | tuple[str, str] | None,
    folder: str = "hfrisk",
    boards: Mapping[str, dict] | None = None,
    *,
    timeout_s: float = 10.0,
) -> list[dict]:
    """Create ``folder`` if missing and upload every dashboard into it, overwriting.

    ``auth``: an API / service-account token, or ``(user, password)``. Returns Grafana's
    answers to the dashboard uploads (``uid``, ``url``, ``version``, …).
    """
    from grafana_client import GrafanaApi
    from grafana_client.client import GrafanaClientError

    boards = boards if boards is not None else build_dashboards()
    api = GrafanaApi.from_url(url, credential=auth, timeout=timeout_s)
    folder_uid = _folder_uid(folder)
    try:
        api.folder.get_folder(folder_uid)
    except GrafanaClientError as err:
        if err.status_code != 404:
            raise
        api.folder.create_folder(folder, uid=folder_uid)
    answers = []
    for board in boards.values():
        payload = {k: v for k, v in board.items() if k != "id"}
        answers.append(api.dashboard.update_dashboard({
            "dashboard": payload, "folderUid": folder_uid, "overwrite": True,
            "message": "hfrisk dashboards push",
        }))
    return answers


def _folder_uid(title: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", title.strip()).strip("-").lower()
    return slug[:40] or FOLDER_UID
