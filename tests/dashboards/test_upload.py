"""Pushing the dashboards to a (fake) Grafana HTTP API on loopback."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from typer.testing import CliRunner

from hfrisk import dashboards as dash
from tests.dashboards.boards import BOARDS


class _FakeGrafana(BaseHTTPRequestHandler):
    """The three endpoints push uses; folders and dashboards kept in memory, requests recorded."""

    folders: dict[str, str]
    dashboards: dict[str, dict]
    requests: list[tuple[str, str, dict | None, str]]

    def _reply(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> dict | None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.requests.append((self.command, self.path, body, self.headers.get("Authorization", "")))
        return body

    def do_GET(self):
        self._record()
        uid = self.path.removeprefix("/api/folders/")
        if uid in self.folders:
            self._reply(200, {"uid": uid, "title": self.folders[uid]})
        else:
            self._reply(404, {"message": "folder not found"})

    def do_POST(self):
        body = self._record()
        if self.path == "/api/folders":
            self.folders[body["uid"]] = body["title"]
            self._reply(200, {"uid": body["uid"], "title": body["title"]})
        elif self.path == "/api/dashboards/db":
            uid = body["dashboard"]["uid"]
            version = self.dashboards.get(uid, {}).get("version", 0) + 1
            self.dashboards[uid] = {"version": version, **body}
            self._reply(200, {"uid": uid, "url": f"/d/{uid}/x", "version": version, "status": "success"})
        else:
            self._reply(404, {"message": "not found"})

    def log_message(self, *args):  # keep pytest output clean
        pass


@pytest.fixture
def fake_grafana():
    handler = type("Handler", (_FakeGrafana,), {"folders": {}, "dashboards": {}, "requests": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_push_creates_the_folder_then_overwrites_both_dashboards(fake_grafana):
    url, grafana = fake_grafana
    answers = dash.push_dashboards(url, "service-token", "hfrisk")
    assert sorted(a["uid"] for a in answers) == sorted(dash.DASHBOARD_UIDS.values())
    calls = [(method, path) for method, path, _, _ in grafana.requests]
    assert calls == [("GET", "/api/folders/hfrisk"), ("POST", "/api/folders"),
                     ("POST", "/api/dashboards/db"), ("POST", "/api/dashboards/db")]
    assert all(auth == "Bearer service-token" for *_, auth in grafana.requests)
    for uid, stored in grafana.dashboards.items():
        assert stored["overwrite"] is True and stored["folderUid"] == "hfrisk"
        assert stored["dashboard"]["panels"] and "id" not in stored["dashboard"]
        assert stored["dashboard"] == {k: v for k, v in BOARDS[_name_of(uid)].items() if k != "id"}

    # A second push finds the folder and bumps each dashboard's version.
    grafana.requests.clear()
    answers = dash.push_dashboards(url, ("admin", "pw"), "hfrisk")
    assert [(m, p) for m, p, _, _ in grafana.requests][:1] == [("GET", "/api/folders/hfrisk")]
    assert ("POST", "/api/folders") not in [(m, p) for m, p, _, _ in grafana.requests]
    assert {a["version"] for a in answers} == {2}
    expected = "Basic " + base64.b64encode(b"admin:pw").decode()
    assert all(auth == expected for *_, auth in grafana.requests)


def test_push_command_needs_credentials(fake_grafana, monkeypatch):
    url, grafana = fake_grafana
    for var in ("GRAFANA_TOKEN", "GRAFANA_PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    result = CliRunner().invoke(dash.app, ["push", "--url", url])
    assert result.exit_code == 2 and grafana.requests == []
    result = CliRunner().invoke(dash.app, ["push", "--url", url, "--folder", "Ward Boards"], env={"GRAFANA_TOKEN": "t"})
    assert result.exit_code == 0, result.output
    assert grafana.folders == {"ward-boards": "Ward Boards"}


def _name_of(uid: str) -> str:
    return next(name for name, u in dash.DASHBOARD_UIDS.items() if u == uid)
