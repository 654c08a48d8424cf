"""Structured logging: key=value on a terminal, one JSON object per line for collectors."""

from __future__ import annotations

import logging
import sys

import structlog

__all__ = ["configure_logging", "get_logger"]


class _StderrLogger:
    """Writes to whatever ``sys.stderr`` is at call time: a stream bound at configuration time
    may since have been closed (test runners and CLI harnesses swap it)."""

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


def configure_logging(level: str = "INFO", json_logs: bool = False) -> None:
    processors = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    renderer = structlog.processors.JSONRenderer() if json_logs else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=lambda *args: _StderrLogger(),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    # Exporter and client libraries narrate every pass at INFO; their warnings still show.
    for noisy in ("onnx_ir", "onnxscript", "torch.onnx", "kafka", "aiokafka", "urllib3", "httpx"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level.upper())))


def get_logger(name: str | None = None, **bound):
    return structlog.get_logger(name).bind(**bound) if bound else structlog.get_logger(name)
