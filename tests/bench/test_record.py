"""What a benchmark writes as the command that reproduces it (bench/record.py)."""

from __future__ import annotations

from bench.record import command_line


def test_the_command_carries_the_settings_of_the_environment_but_no_secret(monkeypatch):
    for name in [n for n in __import__("os").environ if n.startswith("HFRISK_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HFRISK_STREAM__BATCH_SIZE", "128")
    monkeypatch.setenv("HFRISK_STREAM__BATCH_TIMEOUT_S", "0.05")
    monkeypatch.setenv("HFRISK_REDIS__PASSWORD", "hunter2")
    monkeypatch.setenv("HFRISK_PSEUDONYM__KEY", "k")
    monkeypatch.setenv("OTHER_TOOL_SETTING", "1")
    line = command_line("bench_stream", ["--workers", "2", "--out", "a dir"])
    assert line == ("HFRISK_STREAM__BATCH_SIZE=128 HFRISK_STREAM__BATCH_TIMEOUT_S=0.05 "
                    ".venv/bin/python -m bench.bench_stream --workers 2 --out 'a dir'")
