"""The Apache Kafka broker's jars, resolved from Maven Central once and cached under ``state_dir``.

Maven resolves ``org.apache.kafka:kafka_2.13`` into one folder of jars that the JVM runs from; a
warm cache works offline, and a lock keeps two processes from resolving one version at once
(docs/local-stack.md). ``python -m hfrisk.stack.jars [VERSION]`` fills the cache (bootstrap does).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from hfrisk.core.config import get_settings
from hfrisk.core.logs import get_logger
from hfrisk.stack.process import ServiceNotInstalled

__all__ = [
    "DEPENDENCY_PLUGIN",
    "SCALA_VERSION",
    "JarResolutionError",
    "kafka_coordinates",
    "kafka_jar_dir",
    "kafka_jars",
    "resolve_jars",
]

log = get_logger(__name__)

# Kafka's own build publishes the broker for Scala 2.13 only (2.12 was dropped in 4.0).
SCALA_VERSION = "2.13"
# Pinned so a resolution does not depend on which plugin version Maven's metadata offers that day.
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.6.1"
# kafka_2.13 depends on slf4j-api only, with no binding: without one the broker logs nothing.
# Kafka 3.x's own distribution ships slf4j-reload4j (log4j 1.x API, which kafka.Kafka's
# log4j controller also uses), so we add the same binding.
SLF4J_BINDING = "org.slf4j:slf4j-reload4j:1.7.36"
# slf4j-reload4j 1.7.36 pulls reload4j 1.2.19; pin the release Kafka 3.9's distribution ships
# (a direct dependency wins Maven's nearest-first mediation).
RELOAD4J = "ch.qos.reload4j:reload4j:1.2.25"
COMPLETE_MARKER = "classpath.txt"


class JarResolutionError(ServiceNotInstalled):
    """Maven is missing, Maven Central is unreachable, or an artifact does not exist."""


def kafka_coordinates(version: str) -> list[str]:
    """Maven coordinates (``group:artifact:version``) of everything the broker needs at runtime."""
    return [f"org.apache.kafka:kafka_{SCALA_VERSION}:{version}", SLF4J_BINDING, RELOAD4J]


def kafka_jar_dir(version: str | None = None, state_dir: Path | None = None) -> Path:
    """Where the jars of Kafka ``version`` live (or will live) in the cache."""
    settings = get_settings()
    version = version or settings.kafka.version
    state_dir = Path(state_dir) if state_dir is not None else settings.paths.state_dir
    return state_dir / "kafka" / f"kafka_{SCALA_VERSION}-{version}" / "lib"


def kafka_jars(
    version: str | None = None,
    state_dir: Path | None = None,
    *,
    offline: bool = False,
    timeout_s: float = 900.0,
) -> Path:
    """The folder holding every jar of Kafka ``version``, resolving it first if the cache lacks it.

    ``offline=True`` never touches the network: it raises :class:`JarResolutionError` when the
    cache is incomplete. The JVM takes ``<folder>/*`` as its classpath.
    """
    settings = get_settings()
    version = version or settings.kafka.version
    state_dir = Path(state_dir) if state_dir is not None else settings.paths.state_dir
    lib_dir = kafka_jar_dir(version, state_dir)
    return resolve_jars(
        kafka_coordinates(version),
        lib_dir,
        maven_repo=state_dir / "kafka" / "m2",
        offline=offline,
        timeout_s=timeout_s,
    )


def cached_jars(lib_dir: Path) -> list[Path] | None:
    """The jars listed in ``lib_dir``'s marker, or None unless every one of them is present."""
    marker = lib_dir / COMPLETE_MARKER
    if not marker.is_file():
        return None
    jars = [lib_dir / name for name in marker.read_text().split()]
    if not jars or not all(jar.is_file() for jar in jars):
        return None
    return jars


def resolve_jars(
    coordinates: Sequence[str],
    lib_dir: Path,
    *,
    maven_repo: Path,
    offline: bool = False,
    timeout_s: float = 900.0,
) -> Path:
    """Copy ``coordinates`` and their runtime dependencies into ``lib_dir`` (once) and return it."""
    lib_dir = Path(lib_dir)
    if cached_jars(lib_dir) is not None:
        return lib_dir
    if offline:
        raise JarResolutionError(f"no complete jar cache at {lib_dir} and offline=True")
    mvn = shutil.which("mvn")
    if mvn is None:
        raise JarResolutionError("Maven (mvn) is not on PATH; run .ci/install-system.sh")

    lib_dir.parent.mkdir(parents=True, exist_ok=True)
    with _locked(lib_dir.parent / ".resolve.lock"):
        # Another process may have finished while we waited for the lock.
        if cached_jars(lib_dir) is not None:
            return lib_dir
        started = time.monotonic()
        log.info("resolving jars from Maven Central", coordinates=list(coordinates), into=str(lib_dir))
        with tempfile.TemporaryDirectory(dir=lib_dir.parent, prefix=".resolve-") as tmp:
            tmp_dir = Path(tmp)
            pom = tmp_dir / "pom.xml"
            pom.write_text(_pom(coordinates))
            staging = tmp_dir / "lib"
            argv = [
                mvn,
                "-q",
                "-B",
                "-f",
                str(pom),
                f"-Dmaven.repo.local={maven_repo}",
                f"{DEPENDENCY_PLUGIN}:copy-dependencies",
                f"-DoutputDirectory={staging}",
                "-DincludeScope=runtime",
            ]
            try:
                done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout_s)
            except subprocess.TimeoutExpired as exc:
                raise JarResolutionError(f"Maven did not finish in {timeout_s:.0f} s") from exc
            if done.returncode != 0:
                output = (done.stdout + done.stderr).strip().splitlines()
                raise JarResolutionError(
                    f"Maven could not resolve {', '.join(coordinates)}:\n" + "\n".join(output[-25:])
                )
            jars = sorted(p.name for p in staging.glob("*.jar"))
            if not jars:
                raise JarResolutionError(f"Maven resolved no jars for {', '.join(coordinates)}")
            # The marker goes in before the rename, so lib_dir never exists without it.
            (staging / COMPLETE_MARKER).write_text("\n".join(jars) + "\n")
            if lib_dir.exists():  # an incomplete leftover (a jar deleted by hand, say)
                shutil.rmtree(lib_dir)
            os.replace(staging, lib_dir)
        log.info("jars resolved", count=len(jars), seconds=round(time.monotonic() - started, 1))
    return lib_dir


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _pom(coordinates: Sequence[str]) -> str:
    deps = []
    for coordinate in coordinates:
        group, artifact, version = coordinate.split(":")
        deps.append(
            "    <dependency>"
            f"<groupId>{group}</groupId><artifactId>{artifact}</artifactId><version>{version}</version>"
            "</dependency>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<project xmlns="http://maven.apache.org/POM/4.0.0">\n'
        "  <modelVersion>4.0.0</modelVersion>\n"
        "  <groupId>hfrisk.local</groupId><artifactId>jar-cache</artifactId><version>0</version>\n"
        "  <packaging>pom</packaging>\n"
        "  <dependencies>\n" + "\n".join(deps) + "\n  </dependencies>\n"
        "</project>\n"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    version = args[0] if args else None
    try:
        lib_dir = kafka_jars(version)
    except JarResolutionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(lib_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
