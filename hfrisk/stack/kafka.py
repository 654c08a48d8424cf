"""A real Apache Kafka broker: one KRaft node (broker and controller in one JVM) on loopback.

Kafka 3.9 by default (``HFRISK_KAFKA__VERSION``), its jars from Maven Central (:mod:`hfrisk.stack.jars`).
The client listener is PLAINTEXT on 127.0.0.1, or SASL_SSL with ``security=KafkaListenerSecurity(...)``.
Why this version, how the storage is formatted and how the listener is secured: docs/local-stack.md.

Example::

    with KafkaBroker(tmp_path / "kafka") as broker:
        create_topics(broker.bootstrap_servers, {"ecg.chunks": 4})  # hfrisk.stream.ingest.kafka_admin
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import shutil
import subprocess
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hfrisk.core.config import get_settings
from hfrisk.core.logs import get_logger
from hfrisk.stack.jars import kafka_jars
from hfrisk.stack.launcher import ServerLauncher
from hfrisk.stack.process import LOOPBACK, ServiceError, ServiceNotInstalled, free_port, port_open
from hfrisk.stream.ingest.kafka_admin import admin_client

__all__ = [
    "KafkaBroker",
    "KafkaListenerSecurity",
    "find_java",
    "random_cluster_id",
    "scram_credential",
]

log = get_logger(__name__)

HOST = LOOPBACK
NODE_ID = 1

# JVM flags for a 2-core machine shared with the rest of the stack. G1 with short pauses as in
# Kafka's own kafka-run-class.sh, but with GC and JIT thread pools sized for two cores instead
# of however many the host reports; a fixed heap so that it never grows into the others' memory.
JVM_FLAGS = (
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:ParallelGCThreads=2",
    "-XX:ConcGCThreads=1",
    "-XX:CICompilerCount=2",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)

# Everything to stdout, which ManagedProcess sends to the broker's log file; the request logger
# would log every fetch at DEBUG/TRACE, so it is held at WARN like Kafka's own config does.
LOG4J_PROPERTIES = """\
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.network.RequestChannel$=WARN
log4j.logger.state.change.logger=INFO
log4j.logger.kafka.authorizer.logger=INFO
"""


# SCRAM's PBKDF2 work factor: Kafka's minimum for SCRAM-SHA-512 and what its tools use by default.
SCRAM_ITERATIONS = 4096
BROKER_USER = "hfrisk-broker"


@dataclass(frozen=True)
class KafkaListenerSecurity:
    """A SASL_SSL client listener: the broker's TLS certificate and the SCRAM users it accepts.

    ``certfile``: PEM certificate chain, leaf first, naming the address clients connect to
    (``127.0.0.1`` locally). ``keyfile``: its PEM private key in PKCS#8 form (``BEGIN PRIVATE
    KEY``; ``openssl pkcs8 -topk8 -nocrypt`` converts others). ``cafile``: the CA that clients
    and the broker itself (inter-broker) trust. ``users``: SCRAM user name -> password.
    """

    certfile: Path
    keyfile: Path
    cafile: Path
    users: Mapping[str, str] = field(default_factory=dict, repr=False)
    mechanism: str = "SCRAM-SHA-512"

    def __post_init__(self) -> None:
        if self.mechanism not in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
            raise ValueError(f"mechanism must be SCRAM-SHA-256 or SCRAM-SHA-512, not {self.mechanism!r}")
        if BROKER_USER in self.users:
            raise ValueError(f"{BROKER_USER!r} is the broker's own user; pick another name")


def scram_credential(mechanism: str, name: str, password: str, *, iterations: int = SCRAM_ITERATIONS,
                     salt: bytes | None = None) -> str:
    """One ``--add-scram`` argument of ``kafka-storage format`` holding the salted password only.

    SCRAM (RFC 5802) stores ``SaltedPassword = PBKDF2-HMAC(password, salt, iterations)``; the
    broker derives its keys from that, so the password itself never reaches the command line.
    """
    if any(c in name for c in ',="[]') or not name:
        raise ValueError(f"SCRAM user names may not be empty or hold , = \" [ ]: {name!r}")
    digest = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}[mechanism]
    salt = salt if salt is not None else secrets.token_bytes(32)
    salted = hashlib.pbkdf2_hmac(digest, password.encode("utf-8"), salt, iterations)
    b64 = base64.b64encode
    return (f'{mechanism}=[name={name},iterations={iterations},'
            f'salt="{b64(salt).decode()}",saltedpassword="{b64(salted).decode()}"]')


def find_java() -> str:
    """The ``java`` to run the broker with: ``$JAVA_HOME/bin/java``, else the one on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise ServiceNotInstalled("no java on PATH (Kafka needs Java 17); run .ci/install-system.sh")
    return java


def random_cluster_id() -> str:
    """A fresh Kafka cluster id: 16 random bytes, URL-safe base64 without padding.

    The same form as ``kafka-storage random-uuid`` (Kafka's ``Uuid``), made here to save a JVM
    start. Kafka rejects ids that start with '-' (they look like command-line flags).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class KafkaBroker(ServerLauncher):
    """One single-node KRaft Kafka cluster with its data in ``data_dir``.

    Ports are picked free when the broker is made (or given) and stay the same across
    :meth:`restart`, so clients keep their ``bootstrap_servers``. After ``restart(kill=True)``
    the broker is back ~10 s later than after a clean stop: the controller keeps the dead
    broker's registration until ``broker.session.timeout.ms`` (9 s) runs out.
    """

    service = "kafka"
    log_name = "server.log"
    stop_timeout_s = 30.0

    def __init__(
        self,
        data_dir: Path,
        *,
        version: str | None = None,
        heap: str | None = None,
        port: int | None = None,
        controller_port: int | None = None,
        max_message_bytes: int | None = None,
        state_dir: Path | None = None,
        extra_properties: Mapping[str, str] | None = None,
        ready_timeout_s: float = 120.0,
        security: KafkaListenerSecurity | None = None,
        bind_address: str | None = None,
    ):
        settings = get_settings()
        self.security = security
        self.bind_address = bind_address or settings.kafka.bind_address
        self.data_dir = Path(data_dir)
        self.version = version or settings.kafka.version
        self.heap = heap or settings.kafka.heap
        self.port = port or free_port(HOST)
        self.controller_port = controller_port or free_port(HOST, avoid={self.port})
        self.max_message_bytes = max_message_bytes or settings.kafka.max_message_bytes
        self.state_dir = Path(state_dir) if state_dir is not None else settings.paths.state_dir
        self.extra_properties = dict(extra_properties or {})
        self.ready_timeout_s = ready_timeout_s
        self.cluster_id: str | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def listener_protocol(self) -> str:
        return "SASL_SSL" if self.security else "PLAINTEXT"

    def client_kwargs(self, username: str | None = None, password: str | None = None) -> dict[str, Any]:
        """kafka-python keyword arguments to reach this broker: none for PLAINTEXT; for SASL_SSL
        the CA and SCRAM credentials (the broker's own user unless ``username`` is given)."""
        if self.security is None:
            return {}
        if username is None:
            username, password = BROKER_USER, self._broker_password()
        return {
            "security_protocol": "SASL_SSL",
            "ssl_cafile": str(self.security.cafile),
            "sasl_mechanism": self.security.mechanism,
            "sasl_plain_username": username,
            "sasl_plain_password": password,
        }

    @property
    def properties_path(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def log_dir(self) -> Path:
        """Kafka's data (its "log dirs"): topic partitions and the KRaft metadata log."""
        return self.data_dir / "data"

    def _command(self) -> list[str]:
        """Resolve the jars if needed, write the config, format the storage the first time."""
        java = find_java()
        lib_dir = kafka_jars(self.version, self.state_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # The properties may hold the broker's SCRAM password (inter-broker login).
        self.properties_path.touch(mode=0o600)
        self.properties_path.write_text(self.server_properties())
        log4j = self.data_dir / "log4j.properties"
        log4j.write_text(LOG4J_PROPERTIES)
        jvm = [
            java,
            f"-Xms{self.heap}",
            f"-Xmx{self.heap}",
            *JVM_FLAGS,
            f"-Dlog4j.configuration=file:{log4j}",
            f"-Dkafka.logs.dir={self.data_dir}",
            "-cp",
            f"{lib_dir}/*",
        ]
        if not (self.log_dir / "meta.properties").exists():
            self._format(jvm)
        else:
            self.cluster_id = self._read_cluster_id()
        return [*jvm, "kafka.Kafka", str(self.properties_path)]

    def _addresses(self) -> dict[str, str]:
        return {"bootstrap": self.bootstrap_servers, "protocol": self.listener_protocol}

    def server_properties(self) -> str:
        """The broker's ``server.properties``: a combined broker+controller KRaft node."""
        name = self.listener_protocol
        props = {
            "process.roles": "broker,controller",
            "node.id": str(NODE_ID),
            "controller.quorum.voters": f"{NODE_ID}@{HOST}:{self.controller_port}",
            "listeners": f"{name}://{self.bind_address}:{self.port},CONTROLLER://{HOST}:{self.controller_port}",
            "advertised.listeners": f"{name}://{self.host}:{self.port}",
            "listener.security.protocol.map": f"{name}:{name},CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": name,
            "log.dirs": str(self.log_dir),
            # Topics are created explicitly with the app's partition count (Faust tables
            # crash-loop on a mismatch); a typo must fail rather than make a 1-partition topic.
            "auto.create.topics.enable": "false",
            "num.partitions": "1",
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            # One node: internal topics cannot have more replicas than that; fewer partitions
            # than the defaults (50) so the first consumer group does not create 50 logs.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "4",
            # Consumers in tests and the local stack should join at once, not after 3 s.
            "group.initial.rebalance.delay.ms": "0",
            # Thread pools for two cores (defaults: 3 network, 8 I/O, 10 background).
            "num.network.threads": "2",
            "num.io.threads": "4",
            "background.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            # KafkaSettings.max_message_bytes, 4 MiB by default: a 10-s 12-lead window is 120 kB
            # as int16 at 500 Hz but ~0.5 MB as float32 at 1000 Hz and more as JSON or batched,
            # too close to Kafka's ~1 MB default. Producers raise max_request_size to match.
            "message.max.bytes": str(self.max_message_bytes),
            "replica.fetch.max.bytes": str(self.max_message_bytes),
        }
        if self.security is not None:
            props.update(self._security_properties())
        props.update(self.extra_properties)
        return "".join(f"{key}={value}\n" for key, value in props.items())

    def _security_properties(self) -> dict[str, str]:
        sec = self.security
        assert sec is not None
        key = Path(sec.keyfile).read_text()
        if "-----BEGIN PRIVATE KEY-----" not in key:
            raise ServiceError(
                f"{sec.keyfile}: Kafka's PEM keystore needs an unencrypted PKCS#8 key (BEGIN PRIVATE KEY); "
                f"convert it with: openssl pkcs8 -topk8 -nocrypt -in {sec.keyfile} -out key.pk8.pem"
            )
        keystore = self.data_dir / "keystore.pem"
        keystore.touch(mode=0o600)
        keystore.write_text(key.rstrip("\n") + "\n" + Path(sec.certfile).read_text())
        mech = sec.mechanism.lower()
        jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{BROKER_USER}" password="{self._broker_password()}";'
        )
        return {
            "sasl.enabled.mechanisms": sec.mechanism,
            "sasl.mechanism.inter.broker.protocol": sec.mechanism,
            f"listener.name.sasl_ssl.{mech}.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(Path(sec.cafile).resolve()),
            # TLS 1.2 at least; the broker checks its own name on inter-broker connections.
            "ssl.enabled.protocols": "TLSv1.3,TLSv1.2",
            "ssl.endpoint.identification.algorithm": "https",
        }

    def _broker_password(self) -> str:
        """The broker's own SCRAM password: made at the first format, then read back."""
        path = self.data_dir / "broker.secret"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(32))
        return path.read_text().strip()

    def _format(self, jvm: list[str]) -> None:
        self.cluster_id = random_cluster_id()
        # A short-lived tool: a small heap and the C1 compiler only start it faster.
        argv = [
            *[a for a in jvm if not a.startswith(("-Xms", "-Xmx"))],
            "-Xmx256m",
            "-XX:TieredStopAtLevel=1",
            "kafka.tools.StorageTool",
            "format",
            "-t",
            self.cluster_id,
            "-c",
            str(self.properties_path),
        ]
        if self.security is not None:
            users = {BROKER_USER: self._broker_password(), **self.security.users}
            for user, password in users.items():
                argv += ["--add-scram", scram_credential(self.security.mechanism, user, password)]
        with open(self.log_path, "ab") as log_file:
            done = subprocess.run(argv, check=False, stdout=log_file, stderr=subprocess.STDOUT, timeout=120)
        if done.returncode != 0:
            tail = "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
            raise ServiceError(f"kafka-storage format failed ({done.returncode}):\n{tail}")

    def _read_cluster_id(self) -> str | None:
        for line in (self.log_dir / "meta.properties").read_text().splitlines():
            if line.startswith("cluster.id="):
                return line.split("=", 1)[1].strip()
        return None

    def _ready(self) -> bool:
        # The port opens before the broker has caught up with the metadata log; only once it
        # lists itself as a broker will topic creation and produce requests succeed.
        if not port_open(self.host, self.port):
            return False
        admin = admin_client(self.bootstrap_servers, timeout_s=5.0, client_kwargs=self.client_kwargs())
        try:
            cluster = admin.describe_cluster()
        finally:
            admin.close()
        if self.cluster_id and cluster.get("cluster_id") != self.cluster_id:
            raise ServiceError(
                f"another Kafka cluster ({cluster.get('cluster_id')}) answers on {self.bootstrap_servers}"
            )
        # kafka-python 3 names the field broker_id; 2.x named it node_id.
        return any(b.get("broker_id", b.get("node_id")) == NODE_ID for b in cluster.get("brokers", []))

    def _describe(self) -> str:
        return f"{self.bootstrap_servers}, {self.listener_protocol}, version={self.version}"
