"""Scores ECG windows on Triton: an asyncio client for the stream workers, a blocking one for scripts.

:class:`RiskClient` speaks Triton's gRPC API (``tritonclient.grpc.aio``). It splits a batch into
requests of at most ``max_batch`` windows (sent concurrently, so Triton's dynamic batcher and
instances can work on them together), gives each request a deadline, and retries with
exponential backoff only what a retry can fix: the server being unavailable (restarting, model
reloading) and timeouts. A request Triton rejects (wrong shape, NaN …) fails at once with
Triton's own message. With ``shared_memory="system"`` (Triton on the same host) large input tensors
go through ``/dev/shm`` regions instead of the request (:mod:`hfrisk.serving.shared_memory`).

The client needs the served model's card (input name, outputs): the one written beside the model
in the repository (``load_card(repository / "hfrisk" / CARD_FILENAME)``), never a default.

>>> async def score(windows, card):  # doctest: +SKIP
...     async with RiskClient("127.0.0.1:8001", card=card) as client:
...         await client.wait_ready(timeout_s=30)
...         return (await client.infer(windows))["log_risk"]
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Literal

import numpy as np

from hfrisk.core.logs import get_logger
from hfrisk.model.contract.card import ModelCard
from hfrisk.core.retries import Backoff, retrying
from hfrisk.serving.shared_memory import MIN_SHARED_BYTES, RegionPool, is_stale, needed_bytes

__all__ = [
    "RiskClient",
    "RawRiskClient",
    "SyncRiskClient",
    "TritonClientError",
    "ServerNotReady",
    "ModelNotReady",
    "InferenceError",
    "SharedMemoryUnavailable",
    "RETRYABLE_STATUSES",
]

log = get_logger(__name__)

# gRPC statuses worth a retry: the server is (re)starting or overloaded, or the deadline passed.
RETRYABLE_STATUSES = frozenset({"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED"})


class TritonClientError(RuntimeError):
    """Base of the errors :class:`RiskClient` raises."""


class ServerNotReady(TritonClientError):
    """Triton is not reachable or not ready (after the retries)."""


class ModelNotReady(TritonClientError):
    """Triton is up but does not serve the model (unknown, not loaded, or failed to load)."""


class InferenceError(TritonClientError):
    """Triton refused or failed a request; ``message`` is Triton's own text, ``status`` the gRPC code."""

    def __init__(self, message: str, status: str | None = None):
        super().__init__(f"{message} [{status}]" if status else message)
        self.message = message
        self.status = status


class SharedMemoryUnavailable(TritonClientError):
    """Triton cannot open this host's shared memory: it runs on another host, or in a container
    that does not share ``/dev/shm`` with this one. A misconfiguration, not an outage: no retry
    helps, so a worker refuses to start (or, found at a batch, stops with the batch unacknowledged)."""

    def __init__(self, message: str, status: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status


SharedMemory = Literal["off", "system"]


def _status(exc: Exception) -> str | None:
    status = getattr(exc, "status", None)
    return status() if callable(status) else None


def _timed_out(exc: BaseException) -> bool:
    return isinstance(exc, asyncio.TimeoutError) or _status(exc) == "StatusCode.DEADLINE_EXCEEDED"


def _region_lost(exc: BaseException) -> bool:
    """Triton does not know a region this client registered: it restarted since."""
    return _status(exc) == "StatusCode.NOT_FOUND" and "shared memory region" in _message(exc)


def _retryable(exc: BaseException) -> bool:
    """Only what a retry can fix: the server unavailable (restarting, model reloading) or a timeout."""
    return _status(exc) in RETRYABLE_STATUSES or _timed_out(exc)


def _message(exc: Exception) -> str:
    message = getattr(exc, "message", None)
    return (message() if callable(message) else None) or str(exc)


class RiskClient:
    """Async gRPC client of the hfrisk model on Triton.

    One client per event loop: the gRPC channel is opened on first use inside the running loop.
    ``card`` is the served model's card: its input name and outputs name the request's tensors.
    ``max_in_flight`` bounds how many requests of one :meth:`infer` call are outstanding at once.
    """

    def __init__(
        self,
        url: str = "127.0.0.1:8001",
        model_name: str = "hfrisk",
        *,
        card: ModelCard,
        max_batch: int = 64,
        timeout_s: float = 10.0,
        retries: int = 3,
        backoff_s: float = 0.1,
        max_backoff_s: float = 2.0,
        max_in_flight: int = 8,
        model_version: str = "",
        shared_memory: SharedMemory = "off",
    ):
        if max_batch < 1 or retries < 0 or timeout_s <= 0 or max_in_flight < 1:
            raise ValueError("max_batch and max_in_flight must be >= 1, retries >= 0, timeout_s > 0")
        if shared_memory not in ("off", "system"):
            raise ValueError(f"shared_memory must be 'off' or 'system', got {shared_memory!r}")
        self.url = url
        self.model_name = model_name
        self.card = card
        self.output_names = [o.name for o in self.card.outputs]
        self.max_batch = max_batch
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_in_flight = max_in_flight
        self.model_version = model_version
        self.shared_memory = shared_memory
        self._regions = RegionPool() if shared_memory == "system" else None
        self._regions_failing = False  # the last region could not be made: requests carry the tensors
        self._client = None

    @classmethod
    def from_settings(cls, settings=None, *, card: ModelCard, **overrides) -> "RiskClient":
        """A client of the model ``card`` describes, configured from :class:`hfrisk.core.config.Settings`
        (``HFRISK_TRITON__*``)."""
        from hfrisk.core.config import get_settings

        settings = settings or get_settings()
        kwargs = dict(
            card=card,
            url=settings.triton.grpc_url,
            model_name=settings.paths.model_name,
            max_batch=settings.triton.max_batch,
            timeout_s=settings.triton.timeout_s,
            retries=settings.triton.retries,
            shared_memory=settings.triton.shared_memory,
        )
        kwargs.update(overrides)
        return cls(**kwargs)

    def _grpc(self):
        if self._client is None:
            import tritonclient.grpc.aio as grpcclient
            from tritonclient.grpc._client import MAX_GRPC_MESSAGE_SIZE, KeepAliveOptions

            keepalive = KeepAliveOptions()
            self._client = grpcclient.InferenceServerClient(self.url, channel_args=[
                # tritonclient's own defaults (channel_args replaces them all) ...
                ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
                ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
                ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
                ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
                ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
                ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
                # ... and a short reconnect backoff: gRPC's own grows to 120 s, and while it runs
                # every call fails at once, so a restarted Triton went unused for seconds after it
                # was ready (docs/reliability.md).
                ("grpc.initial_reconnect_backoff_ms", 250),
                ("grpc.min_reconnect_backoff_ms", 250),
                ("grpc.max_reconnect_backoff_ms", 2000),
            ])
        return self._client

    # --- readiness ---------------------------------------------------------------------------
    async def server_ready(self) -> bool:
        try:
            return bool(await self._grpc().is_server_ready(client_timeout=self.timeout_s))
        except Exception:  # refused connection, deadline: not ready
            return False

    async def model_ready(self) -> bool:
        try:
            return bool(
                await self._grpc().is_model_ready(self.model_name, self.model_version, client_timeout=self.timeout_s)
            )
        except Exception:
            return False

    async def wait_ready(self, timeout_s: float = 30.0, poll_s: float = 0.2) -> None:
        """Return once server and model are ready (and, with shared memory on, Triton maps a region of
        this host); raise :class:`ServerNotReady` / :class:`ModelNotReady` / :class:`SharedMemoryUnavailable`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        server_up = False
        while True:
            server_up = server_up or await self.server_ready()
            if server_up and await self.model_ready():
                await self.check_shared_memory()
                return
            if loop.time() >= deadline:
                break
            await asyncio.sleep(poll_s)
        if not server_up:
            raise ServerNotReady(f"Triton at {self.url} not ready after {timeout_s:g} s")
        raise ModelNotReady(f"Triton at {self.url} is up but model {self.model_name!r} is not ready after {timeout_s:g} s")

    # --- inference ---------------------------------------------------------------------------
    async def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Score ``batch`` (N, leads, samples); returns each card output with N rows, in input order."""
        batch = np.asarray(batch)
        if batch.ndim < 1 or len(batch) == 0:
            raise ValueError(f"need a batch of at least one window, got shape {batch.shape}")
        return await self._in_chunks(len(batch), lambda s: self._infer_chunk(batch[s]), self.output_names)

    async def _in_chunks(self, n: int, send, output_names: Sequence[str]) -> dict[str, np.ndarray]:
        """``send(slice)`` for each slice of at most ``max_batch`` of ``n`` rows, at most
        ``max_in_flight`` at once; the outputs concatenated in order."""
        slices = [slice(i, min(i + self.max_batch, n)) for i in range(0, n, self.max_batch)]
        if len(slices) == 1:
            return await send(slices[0])
        limit = asyncio.Semaphore(self.max_in_flight)

        async def bounded(part):
            async with limit:
                return await send(part)

        tasks = [asyncio.ensure_future(bounded(part)) for part in slices]
        try:
            parts = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:  # one chunk failed: do not leave the rest running
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return {name: np.concatenate([p[name] for p in parts]) for name in output_names}

    async def _infer_chunk(self, chunk: np.ndarray) -> dict[str, np.ndarray]:
        return await self._infer_tensors({self.card.input.name: chunk}, self.output_names)

    async def _infer_tensors(self, inputs: dict[str, np.ndarray], output_names: Sequence[str]) -> dict[str, np.ndarray]:
        """One request of named input tensors (one batch dim); the named outputs, retried as :meth:`infer` says."""
        import tritonclient.grpc.aio as grpcclient
        from tritonclient.utils import np_to_triton_dtype

        arrays = {name: np.ascontiguousarray(array) for name, array in inputs.items()}
        requests = {name: grpcclient.InferInput(name, list(a.shape), np_to_triton_dtype(a.dtype))
                    for name, a in arrays.items()}
        shared = {name: a for name, a in arrays.items() if self._regions is not None and a.nbytes >= MIN_SHARED_BYTES}
        region = self._region_for(needed_bytes(list(shared.values()))) if shared else None
        if region is None:
            shared = {}
        try:
            if region is not None:
                for name, (offset, nbytes) in zip(shared, region.write(list(shared.values()))):
                    requests[name].set_shared_memory(region.name, nbytes, offset=offset)
            for name, array in arrays.items():
                if name not in shared:
                    requests[name].set_data_from_numpy(array)
        except BaseException:
            if region is not None:
                self._regions.give_back(region)
            raise
        outputs = [grpcclient.InferRequestedOutput(name) for name in output_names]

        async def send():
            return await self._grpc().infer(
                self.model_name,
                list(requests.values()),
                model_version=self.model_version,
                outputs=outputs,
                client_timeout=self.timeout_s,
            )

        async def once() -> dict[str, np.ndarray]:
            if region is None:
                result = await send()
            else:
                await self._register(region)
                try:
                    result = await send()
                except Exception as exc:
                    if not _region_lost(exc):
                        raise
                    # Triton restarted between our registration and this request: it forgot them all.
                    log.warning("triton lost the shared-memory regions; registering them again", model=self.model_name)
                    self._regions.forget_registrations()
                    await self._register(region)
                    result = await send()
            return {name: result.as_numpy(name) for name in output_names}

        def on_retry(exc: BaseException, attempt: int, delay_s: float) -> None:
            log.warning("triton retry", model=self.model_name, status=_status(exc), attempt=attempt,
                        delay_s=round(delay_s, 3))

        try:
            return await retrying(
                retry_on=_retryable, backoff=Backoff(self.backoff_s, self.max_backoff_s, jitter=True),
                attempts=self.retries, on_retry=on_retry,
            )(once)
        except asyncio.CancelledError:
            raise
        except SharedMemoryUnavailable:
            raise
        except Exception as exc:
            raise self._translate(exc, _status(exc), _timed_out(exc)) from None
        finally:
            if region is not None:
                # Only now: Triton may read the region until the request is answered or abandoned.
                self._regions.give_back(region)

    # --- shared memory -------------------------------------------------------------------------
    def _region_for(self, nbytes: int):
        """A region of at least ``nbytes``, or None when none can be made (``/dev/shm`` full or too
        small for a Compose default of 64 MB): the request then carries the tensors, which costs the
        caller CPU but scores the batch. Logged when it starts and when regions can be made again."""
        try:
            region = self._regions.take(nbytes)
        except OSError as exc:
            if not self._regions_failing:
                log.warning("no shared-memory region could be made; sending tensors in the request",
                            model=self.model_name, error=str(exc), bytes=nbytes)
            self._regions_failing = True
            return None
        if self._regions_failing:
            log.info("shared-memory regions can be made again", model=self.model_name)
            self._regions_failing = False
        return region

    async def _register(self, region) -> None:
        """Have Triton map ``region`` (once; again after it restarted), and unregister what Triton
        still holds of this pool's retired regions and, once, of clients that are gone."""
        if region.registered:
            return
        client = self._grpc()
        for name in self._regions.retired():
            await self._unregister(client, name)
        try:
            await client.register_system_shared_memory(region.name, region.key, region.size,
                                                       client_timeout=self.timeout_s)
        except Exception as exc:
            status = _status(exc)
            if status != "StatusCode.ALREADY_EXISTS":  # that: a registration whose answer was lost
                if status == "StatusCode.INTERNAL" and "shared memory" in _message(exc):
                    raise SharedMemoryUnavailable(
                        f"Triton at {self.url} cannot open this host's shared memory ({_message(exc)}): it must "
                        "run on the same host and see the same /dev/shm (a container: share the IPC namespace); "
                        "or set HFRISK_TRITON__SHARED_MEMORY=off", status) from None
                raise
        region.registered = True
        # Only once Triton has mapped a region of ours, so that this /dev/shm is Triton's: a client on
        # another host would find every other client's files "gone" and unregister them all.
        if not self._regions.swept:
            await self._sweep(client)

    async def _sweep(self, client) -> None:
        """Unregister regions of hfrisk clients whose ``/dev/shm`` file is gone (killed workers)."""
        try:
            status = await client.get_system_shared_memory_status(as_json=True, client_timeout=self.timeout_s)
        except Exception as exc:
            if _retryable(exc):
                raise
            log.warning("could not list triton's shared-memory regions", error=_message(exc))
            return
        for entry in (status.get("regions") or {}).values():
            if is_stale(entry.get("name", ""), entry.get("key", "")):
                log.info("unregistering a stale shared-memory region", region=entry["name"])
                await self._unregister(client, entry["name"])
        self._regions.swept = True

    async def _unregister(self, client, name: str) -> None:
        try:
            await client.unregister_system_shared_memory(name, client_timeout=self.timeout_s)
        except Exception as exc:  # gone already (Triton restarted, another client swept it)
            log.debug("unregistering a shared-memory region failed", region=name, error=_message(exc))

    async def check_shared_memory(self) -> None:
        """With shared memory on, that Triton can map a region of this host; raises
        :class:`SharedMemoryUnavailable` if not, at start-up rather than at the first batch. With
        no room in ``/dev/shm`` for a region there is nothing to check yet (the warning says so)."""
        if self._regions is None:
            return
        region = self._region_for(1)
        if region is None:
            return
        try:
            await self._register(region)
        finally:
            self._regions.give_back(region)

    def _translate(self, exc: Exception, status: str | None, timed_out: bool) -> TritonClientError:
        message = _message(exc)
        if status == "StatusCode.NOT_FOUND":
            return ModelNotReady(f"Triton at {self.url} does not serve model {self.model_name!r}: {message}")
        if status == "StatusCode.UNAVAILABLE":
            return ServerNotReady(f"Triton at {self.url} unavailable after {self.retries} retries: {message}")
        if timed_out:
            return InferenceError(f"no answer within {self.timeout_s:g} s after {self.retries} retries: {message}", status)
        return InferenceError(message, status)

    async def close(self) -> None:
        registered = self._regions.close() if self._regions is not None else []
        if self._client is not None:
            client, self._client = self._client, None
            for name in registered:
                await self._unregister(client, name)
            await client.close()

    async def __aenter__(self) -> "RiskClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


class RawRiskClient(RiskClient):
    """Async client of the raw-window model ``<model>_raw`` (:mod:`hfrisk.serving.raw_windows`):
    raw windows, lead presence and rates in; the card's outputs and the front end's verdict out.

    ``card`` is the base model's card (the raw model serves its network); ``model_name`` the raw
    model's name. Windows of one call must share their sample count (the caller groups them).
    """

    def __init__(self, url: str = "127.0.0.1:8001", model_name: str = "hfrisk_raw", *, card: ModelCard, **kwargs):
        super().__init__(url, model_name, card=card, **kwargs)
        from hfrisk.serving.raw_windows import raw_outputs

        self.output_names = [o.name for o in raw_outputs(card)]

    @classmethod
    def from_settings(cls, settings=None, *, card: ModelCard, **overrides) -> "RawRiskClient":
        """Like :meth:`RiskClient.from_settings`, for ``<HFRISK_PATHS__MODEL_NAME>_raw``."""
        from hfrisk.core.config import get_settings
        from hfrisk.serving.raw_windows import raw_model_name

        settings = settings or get_settings()
        overrides.setdefault("model_name", raw_model_name(settings.paths.model_name))
        return super().from_settings(settings, card=card, **overrides)

    async def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        raise TypeError("the raw-window model takes raw windows: call infer_raw(samples, present, fs_hz)")

    async def infer_raw(self, samples: np.ndarray, present: np.ndarray, fs_hz: np.ndarray) -> dict[str, np.ndarray]:
        """Score ``samples`` (N, leads, samples) float32 in mV, ``present`` (N, leads) bool,
        ``fs_hz`` (N,) Hz; every output with N rows, in input order."""
        samples = np.asarray(samples, dtype=np.float32)
        present = np.asarray(present, dtype=bool)
        fs_hz = np.asarray(fs_hz, dtype=np.float32).reshape(-1, 1)
        if samples.ndim != 3 or len(samples) == 0 or len(present) != len(samples) or len(fs_hz) != len(samples):
            raise ValueError(f"need N >= 1 windows with N presence rows and rates, got {samples.shape}, "
                             f"{present.shape}, {fs_hz.shape}")

        def send(part: slice):
            return self._infer_tensors({"ecg_raw": samples[part], "lead_present": present[part], "fs_hz": fs_hz[part]},
                                       self.output_names)

        return await self._in_chunks(len(samples), send, self.output_names)


class SyncRiskClient:
    """Blocking wrapper of :class:`RiskClient` for scripts and notebooks without an event loop.

    It runs its own event loop; do not call it from inside a running one (use RiskClient there).
    """

    def __init__(self, *args, **kwargs):
        """:class:`RiskClient`'s arguments (``card`` among them)."""
        self.client = RiskClient(*args, **kwargs)  # first: bad arguments must not leave a loop open
        self._loop = asyncio.new_event_loop()

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return self._loop.run_until_complete(self.client.infer(batch))

    def wait_ready(self, timeout_s: float = 30.0) -> None:
        self._loop.run_until_complete(self.client.wait_ready(timeout_s))

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.run_until_complete(self.client.close())
            self._loop.close()

    def __enter__(self) -> "SyncRiskClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def output_names(self) -> Sequence[str]:
        return self.client.output_names
