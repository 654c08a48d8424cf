"""The client's shared-memory regions (hfrisk.serving.shared_memory), without Triton; with a real
Triton in tests/integration/test_server_side_preprocessing.py."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from hfrisk.model.contract.card import default_card
from hfrisk.serving import shared_memory
from hfrisk.serving.client import RawRiskClient, RiskClient, SharedMemoryUnavailable
from hfrisk.serving.shared_memory import MIN_SHARED_BYTES, RegionPool, is_stale, needed_bytes
from hfrisk.stream.scoring.batch import AsyncTritonScorer
from tests.serving.test_client import _Result

SHM = Path("/dev/shm")
pytestmark = pytest.mark.skipif(not SHM.is_dir(), reason="POSIX shared memory in /dev/shm (Linux)")


@pytest.fixture
def pool():
    pool = RegionPool()
    yield pool
    pool.close()


def test_tensors_are_written_one_after_another_on_cache_lines(pool):
    a = np.arange(10, dtype=np.float32)
    b = np.array([[True, False, True]])
    c = np.arange(6, dtype=np.int64).reshape(2, 3)
    region = pool.take(needed_bytes([a, b, c]))
    placed = region.write([a, b, c])
    assert placed == [(0, 40), (64, 3), (128, 48)]
    assert needed_bytes([a, b, c]) == 128 + 48
    np.testing.assert_array_equal(region.read(0, 10, np.float32), a)
    np.testing.assert_array_equal(region.read(64, 3, np.bool_), b.ravel())
    np.testing.assert_array_equal(region.read(128, 6, np.int64), c.ravel())
    with pytest.raises(ValueError, match="do not fit"):
        region.write([np.zeros(region.size // 4 + 1, np.float32)])


def test_a_region_serves_one_request_at_a_time_and_is_reused(pool):
    first = pool.take(1000)
    second = pool.take(1000)
    assert first is not second and first.name != second.name
    assert first.size == second.size == 1 << 20  # at least 1 MiB
    pool.give_back(first)
    assert pool.take(10) is first  # a free region that fits
    pool.give_back(first)
    pool.give_back(second)
    assert len(pool.regions) == 2
    assert (SHM / first.name).exists()


def test_a_free_region_too_small_is_retired_and_its_registration_handed_back(pool):
    small = pool.take(10)
    small.registered = True
    pool.give_back(small)
    big = pool.take(3 << 20)
    assert big.size == 4 << 20  # the next power of two
    assert pool.regions == [big]
    assert not (SHM / small.name).exists()
    assert pool.retired() == [small.name]
    assert pool.retired() == []  # handed back once


def test_a_restart_forgets_registrations_and_close_unlinks_every_region():
    pool = RegionPool()
    regions = [pool.take(10), pool.take(10)]
    for region in regions:
        region.registered = True
    pool.give_back(regions[0])  # one free, one still busy
    pool.forget_registrations()
    assert not any(r.registered for r in regions)
    regions[1].registered = True
    assert pool.close() == [regions[1].name]
    assert not any((SHM / r.name).exists() for r in regions)
    assert pool.regions == []


def test_names_are_unique_per_client_and_say_whose_they_are():
    a, b = RegionPool(), RegionPool()
    try:
        ra, rb = a.take(1), b.take(1)
        assert ra.name != rb.name
        assert ra.name.startswith(f"hfrisk_{__import__('os').getpid()}_")
        assert ra.key == "/" + ra.name
    finally:
        a.close()
        b.close()


def test_a_region_is_stale_when_its_file_is_gone(pool):
    region = pool.take(1)
    assert not is_stale(region.name, region.key)
    assert is_stale("hfrisk_1_dead_0", "/hfrisk_1_dead_0")
    assert not is_stale("someone_else", "/someone_else_gone")  # not ours to unregister


# -- the client's side, against a stand-in of tritonclient's aio client -------------------------------


class _Error(Exception):
    def __init__(self, status: str, message: str):
        super().__init__(message)
        self._status, self._message = status, message

    def status(self):
        return self._status

    def message(self):
        return self._message


class FakeTriton:
    """Reads inputs from the regions it has registered (or the request), as Triton does, and
    answers the first input's sums.

    It attaches in this process, where the client created the regions, so the resource tracker
    already knows them and the client's unlink is the only one."""

    def __init__(self, open_fails: bool = False, registered=None):
        self.regions: dict[str, tuple[str, int]] = dict(registered or {})
        self.open_fails = open_fails
        self.seen: list[dict] = []  # the inputs of each request answered
        self.requests = 0
        self.unregistered: list[str] = []

    async def register_system_shared_memory(self, name, key, byte_size, client_timeout=None):
        if self.open_fails:
            raise _Error("StatusCode.INTERNAL", f"Unable to open shared memory region: '{key}'")
        if name in self.regions:
            raise _Error("StatusCode.ALREADY_EXISTS", f"shared memory region '{name}' already in manager")
        self.regions[name] = (key, byte_size)

    async def unregister_system_shared_memory(self, name, client_timeout=None):
        assert name, "an empty name unregisters every client's regions"
        self.unregistered.append(name)
        self.regions.pop(name, None)

    async def get_system_shared_memory_status(self, as_json=False, client_timeout=None):
        return {"regions": {n: {"name": n, "key": k, "byte_size": str(s)} for n, (k, s) in self.regions.items()}}

    async def infer(self, model_name, inputs, model_version="", outputs=(), client_timeout=None):
        from multiprocessing import shared_memory as mp_shm

        self.requests += 1
        seen = {}
        for i in inputs:
            params = i._get_tensor().parameters
            if "shared_memory_region" in params:
                name = params["shared_memory_region"].string_param
                if name not in self.regions:
                    raise _Error("StatusCode.NOT_FOUND", f"Unable to find shared memory region: '{name}'")
                offset = params["shared_memory_offset"].int64_param if "shared_memory_offset" in params else 0
                shm = mp_shm.SharedMemory(self.regions[name][0].lstrip("/"))
                try:
                    data = np.frombuffer(shm.buf, np.float32, count=int(np.prod(i.shape())), offset=offset).copy()
                finally:
                    shm.close()
                seen[i.name()] = ("shm", data.reshape(i.shape()))
            else:
                from tritonclient.utils import triton_to_np_dtype

                data = np.frombuffer(i._get_content(), triton_to_np_dtype(i.datatype()))
                seen[i.name()] = ("wire", data.reshape(i.shape()))
        self.seen.append(seen)
        x = next(iter(seen.values()))[1]
        return _Result({"log_risk": x.reshape(len(x), -1).sum(axis=1, keepdims=True)})

    async def close(self):
        pass


def _client(fake: FakeTriton, cls=RiskClient, **kwargs):
    client = cls("127.0.0.1:1", card=default_card(), shared_memory="system", retries=0, **kwargs)
    client._client = fake
    client.output_names = ["log_risk"]
    return client


def test_large_inputs_go_through_a_region_and_small_ones_in_the_request():
    fake = FakeTriton()
    client = _client(fake, RawRiskClient)
    samples = np.random.default_rng(0).normal(size=(3, 12, 5000)).astype(np.float32)
    assert samples.nbytes >= MIN_SHARED_BYTES

    async def go():
        out = await client.infer_raw(samples, np.ones((3, 12), bool), np.full(3, 500.0))
        regions = [r.name for r in client._regions.regions]
        await client.close()
        return out, regions

    out, regions = asyncio.run(go())
    (seen,) = fake.seen
    assert seen["ecg_raw"][0] == "shm" and seen["lead_present"][0] == "wire" and seen["fs_hz"][0] == "wire"
    np.testing.assert_array_equal(seen["ecg_raw"][1], samples)
    np.testing.assert_allclose(out["log_risk"][:, 0], samples.reshape(3, -1).sum(axis=1), rtol=1e-5)
    assert fake.unregistered == regions and fake.regions == {}  # close unregisters what it registered
    assert not any((SHM / name).exists() for name in regions)


def test_a_lost_registration_is_made_again_and_the_request_answered():
    fake = FakeTriton()
    client = _client(fake)
    x = np.ones((4, 12, 1000), np.float32)

    async def go():
        await client.infer(x)
        fake.regions.clear()  # Triton restarted
        out = await client.infer(x)
        await client.close()
        return out

    out = asyncio.run(go())
    assert fake.requests == 3 and len(fake.seen) == 2  # refused, then the same again after registering
    np.testing.assert_allclose(out["log_risk"][:, 0], 12_000.0)


def test_a_full_dev_shm_sends_the_tensors_in_the_request_until_regions_can_be_made(monkeypatch):
    import errno

    from structlog.testing import capture_logs

    import hfrisk.serving.shared_memory as shared_memory

    made = shared_memory.reserved

    def full(size, name=None):
        raise OSError(errno.ENOSPC, "No space left on device")

    fake = FakeTriton()
    client = _client(fake)
    x = np.ones((4, 12, 1000), np.float32)

    async def go():
        monkeypatch.setattr(shared_memory, "reserved", full)
        await client.check_shared_memory()  # nothing to check yet: not an error
        first, second = await client.infer(x), await client.infer(x)
        monkeypatch.setattr(shared_memory, "reserved", made)
        third = await client.infer(x)
        regions = [r.name for r in client._regions.regions]
        await client.close()
        return (first, second, third), regions

    with capture_logs() as logs:
        outs, regions = asyncio.run(go())
    assert [seen["ecg"][0] for seen in fake.seen] == ["wire", "wire", "shm"]
    for out in outs:
        np.testing.assert_allclose(out["log_risk"][:, 0], 12_000.0)
    events = [(e["log_level"], e["event"]) for e in logs if "region" in e["event"]]
    assert events == [
        ("warning", "no shared-memory region could be made; sending tensors in the request"),
        ("info", "shared-memory regions can be made again"),
    ]
    assert len(regions) == 1 and not (SHM / regions[0]).exists()


def test_regions_of_gone_clients_are_unregistered_once_others_are_left():
    other = RegionPool()
    live = other.take(1)
    fake = FakeTriton(registered={"hfrisk_1_dead_0": ("/hfrisk_1_dead_0", 1 << 20),
                                  live.name: (live.key, live.size),
                                  "not_ours": ("/not_ours_gone", 10)})
    client = _client(fake)
    try:
        asyncio.run(client.check_shared_memory())
        assert set(fake.regions) == {live.name, "not_ours", *(r.name for r in client._regions.regions)}
        assert fake.unregistered == ["hfrisk_1_dead_0"]
        asyncio.run(client.close())
    finally:
        other.close()


def test_a_triton_that_cannot_open_this_hosts_memory_is_a_clear_error():
    fake = FakeTriton(open_fails=True)
    client = _client(fake)
    fake.regions["hfrisk_1_other_0"] = ("/hfrisk_1_other_0", 1 << 20)  # a file this host does not see
    with pytest.raises(SharedMemoryUnavailable, match="same host.*HFRISK_TRITON__SHARED_MEMORY=off") as err:
        asyncio.run(client.check_shared_memory())
    assert err.value.status == "StatusCode.INTERNAL"
    # Not sharing Triton's /dev/shm, this client cannot tell other clients' regions from gone ones.
    assert fake.unregistered == [] and "hfrisk_1_other_0" in fake.regions
    # A misconfiguration, not an outage: the worker's scorer does not wait it out, the batch fails
    # (unacknowledged, so redelivered once the deployment is mended).
    slept = []

    async def sleep(s):
        slept.append(s)

    scorer = AsyncTritonScorer(client, sleep=sleep)
    with pytest.raises(SharedMemoryUnavailable):
        asyncio.run(scorer.infer(np.ones((4, 12, 1000), np.float32)))
    assert fake.requests == 0 and slept == []
    asyncio.run(client.close())


def test_off_by_default_and_chosen_by_the_setting(monkeypatch):
    from hfrisk.core.config import Settings

    card = default_card()
    assert RiskClient("127.0.0.1:1", card=card)._regions is None
    monkeypatch.setenv("HFRISK_TRITON__SHARED_MEMORY", "system")
    client = RawRiskClient.from_settings(Settings(), card=card)
    assert client.shared_memory == "system" and isinstance(client._regions, RegionPool)
    monkeypatch.setenv("HFRISK_TRITON__SHARED_MEMORY", "cuda")
    with pytest.raises(ValueError, match="shared_memory"):
        Settings()
    with pytest.raises(ValueError, match="'off' or 'system'"):
        RiskClient("127.0.0.1:1", card=card, shared_memory="on")
    assert shared_memory.REGION_PREFIX == "hfrisk_"
