import os
import sys
from pathlib import Path

import pytest

from hfrisk.core.config import PathSettings, Settings
from hfrisk.stack.launcher import ServerLauncher
from hfrisk.stack.process import ManagedProcess, ServiceError, ServiceTimeout, free_port, port_open, wait_until
from hfrisk.stack.local import STACK_FILE, StackInfo, read_stack, stack_dir, stop_stack


def _settings(tmp_path: Path) -> Settings:
    return Settings(paths=PathSettings(state_dir=tmp_path))


def _spawn(name: str, tmp_path: Path, *, ignore_term: bool = False) -> ManagedProcess:
    code = "import signal, time\n"
    if ignore_term:
        code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    # A child of its own: down must stop the whole process group, not only the leader.
    code += "import subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
    code += "time.sleep(300)\n"
    return ManagedProcess(name, [sys.executable, "-c", code], log_path=tmp_path / f"{name}.log", ready=lambda: True).start()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


def test_down_stops_every_recorded_process_group(tmp_path):
    settings = _settings(tmp_path)
    folder = stack_dir(settings)
    folder.mkdir(parents=True)
    polite, stubborn = _spawn("polite", tmp_path), _spawn("stubborn", tmp_path, ignore_term=True)
    info = StackInfo(folder=str(folder), processes={"polite": polite.pid, "stubborn": stubborn.pid},
                     env={"HFRISK_REDIS__URL": "redis://127.0.0.1:1/0"})
    info.save()
    assert read_stack(settings).processes == info.processes
    assert "export HFRISK_REDIS__URL=redis://127.0.0.1:1/0" in (folder / "stack.env").read_text()

    stopped = stop_stack(settings, timeout_s=1.0)  # the stubborn one needs the SIGKILL fallback
    assert stopped == ["stubborn", "polite"]  # newest first
    assert not _group_alive(polite.pid) and not _group_alive(stubborn.pid)
    assert not (folder / STACK_FILE).exists()
    assert stop_stack(settings) == []



def test_the_local_stack_ignores_client_security_from_the_environment(monkeypatch):
    # Its own servers are plain loopback ones: SASL or TLS settings meant for production would
    # make its workers and replay fail to connect.
    from pydantic import SecretStr

    from hfrisk.core.config import RedisSettings, Settings
    from hfrisk.core.security import redis_client_kwargs, redis_url
    from hfrisk.stack.local import _plain_environ, plain_redis_settings

    monkeypatch.setenv("HFRISK_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("HFRISK_KAFKA__USERNAME", "ward")
    monkeypatch.setenv("HFRISK_KAFKA__PASSWORD_FILE", "/run/secrets/kafka")
    monkeypatch.setenv("HFRISK_REDIS__SSL", "true")
    monkeypatch.setenv("HFRISK_KAFKA__PARTITIONS", "8")
    env = _plain_environ()
    assert not {"HFRISK_KAFKA__SECURITY_PROTOCOL", "HFRISK_KAFKA__USERNAME", "HFRISK_KAFKA__PASSWORD_FILE",
                "HFRISK_REDIS__SSL"} & set(env)
    assert env["HFRISK_KAFKA__PARTITIONS"] == "8"

    secured = Settings(redis=RedisSettings(username="worker", password=SecretStr("s3cret-pass"), ssl=True,
                                           key_prefix="ward7"))
    plain = plain_redis_settings(secured, "redis://127.0.0.1:6390/0")
    assert (plain.username, plain.password, plain.ssl, plain.key_prefix) == (None, None, False, "ward7")
    # A TLS URL configured for the hospital's Redis must not turn TLS on for the stack's own one.
    remote = Settings(redis=RedisSettings(url="rediss://redis.ward.example:6380/0", key_prefix="ward7"))
    plain = plain_redis_settings(remote, "redis://127.0.0.1:6390/0")
    assert not plain.tls and redis_url(plain) == "redis://127.0.0.1:6390/0"
    assert redis_client_kwargs(plain) == {}


class _EchoServer(ServerLauncher):
    """The smallest launcher: a Python TCP server, ready once its port answers."""

    service = "echo"

    def __init__(self, data_dir: Path, *, crash: bool = False, ready_timeout_s: float = 20.0):
        self.data_dir = data_dir
        self.port = free_port()
        self.crash = crash
        self.ready_timeout_s = ready_timeout_s

    def _command(self) -> list[str]:
        if self.crash:
            return [sys.executable, "-c", "import sys; print('no config here'); sys.exit(3)"]
        # SO_REUSEADDR, as Redis, Kafka and Triton set it: the server closes the readiness probes'
        # connections, which leaves them in TIME_WAIT on its port, and without it a restart on the
        # same port fails with "Address already in use" (seen in CI).
        serve = ("import socketserver as s; s.TCPServer.allow_reuse_address = True; "
                 f"s.TCPServer(('127.0.0.1', {self.port}), s.BaseRequestHandler).serve_forever()")
        return [sys.executable, "-c", serve]

    def _ready(self) -> bool:
        return port_open(self.host, self.port)

    def _addresses(self) -> dict[str, str]:
        return {"address": f"{self.host}:{self.port}"}


def test_a_launcher_starts_restarts_on_its_port_and_stops(tmp_path):
    server = _EchoServer(tmp_path)
    assert repr(server) == f"_EchoServer(address=127.0.0.1:{server.port}, stopped)" and server.pid is None
    with server:
        first_pid, port = server.pid, server.port
        assert server.running() and port_open("127.0.0.1", port) and _group_alive(first_pid)
        assert server.start().pid == first_pid  # a no-op while it runs
        server.restart(kill=True)
        assert server.port == port and server.pid != first_pid and port_open("127.0.0.1", port)
    assert not server.running() and not _group_alive(server.pid)
    assert server.log_path == tmp_path / "server.log" and server.log_path.exists()


def test_a_launcher_that_exits_early_fails_with_its_log(tmp_path):
    server = _EchoServer(tmp_path, crash=True)
    with pytest.raises(ServiceError, match="(?s)exited with code 3.*no config here"):
        server.start()
    assert "no config here" in server.tail_log()


def test_wait_until_returns_the_first_true_result_or_times_out():
    calls = []

    def third_time_lucky():
        calls.append(1)
        return len(calls) if len(calls) >= 3 else None

    assert wait_until(third_time_lucky, 5.0, interval_s=0.01) == 3
    with pytest.raises(ServiceTimeout, match="never, after"):
        wait_until(lambda: False, 0.05, interval_s=0.01, what=lambda: "never, after 0.05 s")
    with pytest.raises(ZeroDivisionError):  # a check's own error is not swallowed
        wait_until(lambda: 1 / 0, 1.0)


def test_free_port_avoids_the_ports_already_handed_out():
    taken = {free_port()}
    assert free_port(avoid=taken) not in taken


class _StandIn:
    """A server of the local stack that is only a process group (so that the failure path's
    ``down`` has something real to stop)."""

    def __init__(self, name: str, tmp_path: Path):
        self.process = _spawn(name, tmp_path)
        self.pid = self.process.pid
        self.url, self.bootstrap_servers = "redis://127.0.0.1:1/0", "127.0.0.1:1"

    def start(self) -> "_StandIn":
        return self


@pytest.mark.parametrize("preprocess_on, loaded", [("server", ["--load-model=hfrisk_raw"]), ("worker", [])])
def test_the_local_stack_serves_the_raw_model_when_the_workers_send_raw_windows(monkeypatch, tmp_path,
                                                                               preprocess_on, loaded):
    """``hfrisk up``'s Triton loads ``hfrisk_raw`` in server mode: until 2026-12-07 it did not, and a
    server-mode worker waited for a model that was never loaded (the ward stayed empty)."""
    from hfrisk.stack.local import start_stack

    class Stop(Exception):
        pass

    seen: dict = {}

    def triton(*args, **kwargs):
        seen.update(kwargs)
        raise Stop

    stand_ins = []
    for module, name in (("hfrisk.stack.redis_server", "RedisServer"), ("hfrisk.stack.kafka", "KafkaBroker")):
        monkeypatch.setattr(f"{module}.{name}", lambda *a, name=name, **k: stand_ins.append(_StandIn(name, tmp_path))
                            or stand_ins[-1])
    monkeypatch.setattr("hfrisk.stack.triton_server.TritonServer", triton)
    monkeypatch.setenv("HFRISK_STREAM__PREPROCESS_ON", preprocess_on)
    with pytest.raises(Stop):
        start_stack(_settings(tmp_path), model_repository=tmp_path / "repository")
    assert seen["extra_args"] == loaded
    assert [s.pid for s in stand_ins] and not any(_group_alive(s.pid) for s in stand_ins)  # stopped again
