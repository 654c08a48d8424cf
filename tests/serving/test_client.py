"""RiskClient against a scripted stand-in of tritonclient's aio gRPC client (no server)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from hfrisk.model.contract.card import default_card
from hfrisk.serving.client import (
    InferenceError,
    ModelNotReady,
    RiskClient,
    ServerNotReady,
    SyncRiskClient,
)

CARD = default_card()
NAMES = [o.name for o in CARD.outputs]


class _Result:
    def __init__(self, outputs):
        self.outputs = outputs

    def as_numpy(self, name):
        return self.outputs[name]


class FakeTriton:
    """Answers infer() with rows derived from the input, after raising the scripted errors in turn."""

    def __init__(self, errors=(), model_ready=True, server_ready=True, delay_s=0.0):
        self.errors = list(errors)
        self.calls = []
        self.model_ready = model_ready
        self.server_ready = server_ready
        self.delay_s = delay_s
        self.closed = False
        self.in_flight = self.max_in_flight = 0

    async def infer(self, model_name, inputs, model_version="", outputs=None, client_timeout=None):
        (ecg,) = inputs
        # The raw bytes a real client would send; reading them back lets the fake answer per row.
        x = np.frombuffer(ecg._raw_content, dtype=np.float32).reshape(ecg.shape())
        self.calls.append((model_name, x.shape, client_timeout, [o.name() for o in outputs]))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
            if self.errors:
                raise self.errors.pop(0)
        finally:
            self.in_flight -= 1
        n = len(x)
        return _Result({
            "log_risk": x[:, 0, :1].copy(),
            "lead_attention": np.full((n, 12), 1 / 12, np.float32),
            "lead_attention_map": np.full((n, 12, 12), 1 / 12, np.float32),
            "temporal_attention": np.full((n, 12, 19), 1 / 19, np.float32),
        })

    async def is_server_ready(self, client_timeout=None):
        if self.server_ready is None:
            raise InferenceServerException("connection refused", "StatusCode.UNAVAILABLE")
        return self.server_ready

    async def is_model_ready(self, model_name, model_version="", client_timeout=None):
        return self.model_ready

    async def close(self):
        self.closed = True


def client_with(fake: FakeTriton, **kwargs) -> RiskClient:
    client = RiskClient("127.0.0.1:1", card=CARD, backoff_s=0.001, **kwargs)
    client._client = fake
    return client


def windows(n: int) -> np.ndarray:
    x = np.zeros((n, 12, 608), np.float32)
    x[:, 0, 0] = np.arange(n)  # row i scores i with the fake
    return x


def unavailable(msg="Socket closed"):
    return InferenceServerException(msg, "StatusCode.UNAVAILABLE")


def run(coro):
    return asyncio.run(coro)


def test_splits_into_max_batch_requests_and_keeps_order():
    fake = FakeTriton(delay_s=0.001)
    client = client_with(fake, max_batch=4, max_in_flight=2, timeout_s=3.0)
    out = run(client.infer(windows(10)))
    assert [shape[0] for _, shape, _, _ in fake.calls] == [4, 4, 2]
    assert all(timeout == 3.0 and names == NAMES for _, _, timeout, names in fake.calls)
    np.testing.assert_array_equal(out["log_risk"].ravel(), np.arange(10))
    assert set(out) == set(NAMES) and out["temporal_attention"].shape == (10, 12, 19)
    assert fake.max_in_flight <= 2


def test_retries_unavailable_and_timeouts_then_succeeds():
    fake = FakeTriton(errors=[unavailable(), InferenceServerException("Deadline Exceeded", "StatusCode.DEADLINE_EXCEEDED")])
    client = client_with(fake, retries=2)
    out = run(client.infer(windows(3)))
    assert len(fake.calls) == 3
    np.testing.assert_array_equal(out["log_risk"].ravel(), [0, 1, 2])


def test_gives_up_after_the_retries_with_server_not_ready():
    fake = FakeTriton(errors=[unavailable()] * 5)
    with pytest.raises(ServerNotReady, match="Socket closed"):
        run(client_with(fake, retries=2).infer(windows(1)))
    assert len(fake.calls) == 3


def test_invalid_argument_is_not_retried_and_keeps_tritons_message():
    message = "input 'ecg' contains NaN or infinite values (in 1 of 1 windows)"
    fake = FakeTriton(errors=[InferenceServerException(message, "StatusCode.INVALID_ARGUMENT")])
    with pytest.raises(InferenceError) as caught:
        run(client_with(fake, retries=3).infer(windows(1)))
    assert len(fake.calls) == 1
    assert caught.value.message == message and caught.value.status == "StatusCode.INVALID_ARGUMENT"


def test_unknown_model_is_model_not_ready():
    fake = FakeTriton(errors=[InferenceServerException("Request for unknown model: 'x' is not found", "StatusCode.NOT_FOUND")])
    with pytest.raises(ModelNotReady, match="unknown model"):
        run(client_with(fake).infer(windows(1)))
    assert len(fake.calls) == 1


def test_a_failing_chunk_fails_the_call():
    fake = FakeTriton(errors=[InferenceServerException("boom", "StatusCode.INTERNAL")])
    with pytest.raises(InferenceError, match="boom"):
        run(client_with(fake, max_batch=2).infer(windows(6)))


def test_wait_ready_tells_server_from_model():
    with pytest.raises(ServerNotReady):
        run(client_with(FakeTriton(server_ready=None)).wait_ready(timeout_s=0.05, poll_s=0.01))
    with pytest.raises(ModelNotReady, match="'hfrisk'"):
        run(client_with(FakeTriton(model_ready=False)).wait_ready(timeout_s=0.05, poll_s=0.01))
    run(client_with(FakeTriton()).wait_ready(timeout_s=0.05))


def test_empty_batch_is_refused_locally():
    with pytest.raises(ValueError, match="at least one window"):
        run(client_with(FakeTriton()).infer(np.zeros((0, 12, 608), np.float32)))


def test_sync_wrapper_and_close():
    fake = FakeTriton()
    with SyncRiskClient("127.0.0.1:1", card=CARD, max_batch=8) as client:
        client.client._client = fake
        client.wait_ready(timeout_s=0.1)
        out = client.infer(windows(9))
    np.testing.assert_array_equal(out["log_risk"].ravel(), np.arange(9))
    assert fake.closed


def test_from_settings_reads_triton_settings():
    from hfrisk.core.config import Settings

    settings = Settings()
    settings.triton.grpc_url = "127.0.0.1:9999"
    settings.triton.max_batch = 16
    client = RiskClient.from_settings(settings, card=CARD, retries=0)
    assert (client.url, client.max_batch, client.retries, client.model_name) == ("127.0.0.1:9999", 16, 0, "hfrisk")
    assert client.card is CARD


def test_a_client_needs_the_served_models_card():
    with pytest.raises(TypeError, match="card"):
        RiskClient("127.0.0.1:1")
    with pytest.raises(TypeError, match="card"):
        SyncRiskClient("127.0.0.1:1")
    with pytest.raises(TypeError, match="card"):
        RiskClient.from_settings()
