"""The real tritonserver (pytriton wheel, python backend + ONNX Runtime) serving HFRiskNet on loopback.

One server for the module, from a repository written to a temporary folder with max_batch_size 8,
so that "more windows than one request may carry" is cheap to test. Scores are compared with
ONNX Runtime run in this process on the same ONNX file.
"""

from __future__ import annotations

import asyncio
import os
import urllib.request
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc.aio as grpcclient

from hfrisk.model.contract.card import default_card
from hfrisk.serving.client import InferenceError, ModelNotReady, RiskClient, SyncRiskClient
from hfrisk.serving.model_repository import write_model_repository
from hfrisk.stack.triton_server import TritonServer, server_environment
from hfrisk.stack.process import ServiceNotInstalled
from tests.integration.service_required import serve, service_unavailable
from tests.serving import ecg_windows, exported_model

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CARD = default_card()
NAMES = [o.name for o in CARD.outputs]
MAX_BATCH = 8


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("triton_models")
    # intra_op_threads=1: the test machine has two cores and the client needs one.
    write_model_repository(exported_model(CARD), CARD, repo, max_batch_size=MAX_BATCH, intra_op_threads=1)
    (repo / "half_written_export").mkdir()  # explicit model control must not trip over it
    return repo


def start_server(repository: Path, work_dir: Path) -> TritonServer:
    """Skip (locally) when no tritonserver is installed; a server that fails to start is an error."""
    try:
        server = TritonServer(repository, "hfrisk", work_dir=work_dir, ready_timeout_s=120)
    except ServiceNotInstalled as exc:
        service_unavailable(f"tritonserver ({exc})")
    return server.start()


@pytest.fixture(scope="module")
def server(repository, tmp_path_factory):
    work_dir = tmp_path_factory.mktemp("triton_work")
    yield from serve("tritonserver", lambda: TritonServer(repository, "hfrisk", work_dir=work_dir, ready_timeout_s=120))


@pytest.fixture(scope="module")
def reference():
    """In-process ONNX Runtime on the very file Triton serves."""
    session = ort.InferenceSession(str(exported_model(CARD)), providers=["CPUExecutionProvider"])
    return lambda x: dict(zip(NAMES, session.run(NAMES, {CARD.input.name: x})))


def http_get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.status, response.read().decode()


def score(server: TritonServer, x: np.ndarray, **kwargs) -> dict[str, np.ndarray]:
    with SyncRiskClient(server.grpc_url, card=CARD, max_batch=MAX_BATCH, **kwargs) as client:
        return client.infer(x)


def assert_close(served: dict, expected: dict) -> None:
    assert set(served) == set(NAMES)
    for name in NAMES:
        assert served[name].shape == expected[name].shape, name
        assert served[name].dtype == np.float32, name
        np.testing.assert_allclose(served[name], expected[name], atol=1e-4, rtol=0, err_msg=name)


def test_launcher_command_line_and_environment(repository, tmp_path):
    """What runtime-notes.md says the wheel's binary needs, without starting it."""
    import sys
    import sysconfig

    try:
        server = TritonServer(repository, "hfrisk", work_dir=tmp_path, grpc_port=18001)
    except ServiceNotInstalled as exc:
        service_unavailable(f"tritonserver ({exc})")
    server._choose_ports()
    argv = server.argv()
    assert server.grpc_port == 18001 and len({server.http_port, server.grpc_port, server.metrics_port}) == 3
    for flag in ("--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--metrics-address=127.0.0.1",
                 "--model-control-mode=explicit", "--load-model=hfrisk", f"--model-repository={repository}"):
        assert flag in argv, flag
    if server.install.from_wheel:
        python_dir = tmp_path / "backends" / "python"
        assert f"--backend-directory={python_dir.parent}" in argv
        stub = python_dir / "triton_python_backend_stub"
        assert stub.is_symlink() and f"/{sys.version_info.major}.{sys.version_info.minor}/" in str(stub.resolve())
        assert (python_dir / "libtriton_python.so").exists()
        assert (python_dir / "triton_python_backend_utils.py").exists()
        env = server_environment(server.install)
        assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
        assert env["LD_LIBRARY_PATH"].split(os.pathsep)[0] == sysconfig.get_config_var("LIBDIR")


def test_health_endpoints_on_loopback(server):
    assert server.host == "127.0.0.1"
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/hfrisk/ready"):
        assert http_get(f"http://{server.http_url}{path}")[0] == 200, path
    status, text = http_get(server.metrics_url)
    assert status == 200 and "nv_inference_count" in text


def test_batch_of_one_matches_onnx_runtime(server, reference):
    x = ecg_windows(CARD, 1)
    assert_close(score(server, x), reference(x))


def test_batch_larger_than_max_batch_is_split_and_matches(server, reference):
    x = ecg_windows(CARD, 2 * MAX_BATCH + 3)
    served = score(server, x)
    assert len(served["log_risk"]) == len(x)
    assert_close(served, reference(x))
    # The scores differ between recordings: the split really returned each window's own rows.
    assert np.unique(served["log_risk"].round(5)).size > 10


def test_server_itself_refuses_more_than_max_batch_per_request(server):
    async def send():
        client = grpcclient.InferenceServerClient(server.grpc_url)
        try:
            x = ecg_windows(CARD, MAX_BATCH + 1)
            tensor = grpcclient.InferInput(CARD.input.name, list(x.shape), "FP32")
            tensor.set_data_from_numpy(x)
            await client.infer("hfrisk", [tensor])
        finally:
            await client.close()

    with pytest.raises(Exception, match="batch"):
        asyncio.run(send())


def test_metrics_count_successful_requests(server):
    score(server, ecg_windows(CARD, 2))
    _, text = http_get(server.metrics_url)
    success = [line for line in text.splitlines() if line.startswith("nv_inference_request_success") and 'model="hfrisk"' in line]
    assert success and float(success[0].rsplit(" ", 1)[1]) >= 1


def test_malformed_requests_fail_clearly_while_a_good_one_succeeds(server, reference):
    good = ecg_windows(CARD, 3)
    nan = good.copy()
    nan[1, 4, 100] = np.nan
    inf = good[:1].copy()
    inf[0, 0, 0] = np.inf

    async def all_at_once():
        async with RiskClient(server.grpc_url, card=CARD, max_batch=MAX_BATCH, retries=0) as client:
            return await asyncio.gather(
                client.infer(good),
                client.infer(nan),
                client.infer(good[:, :, :600].copy()),
                client.infer(good.astype(np.float64)),
                client.infer(inf),
                client.infer(good[:1]),
                return_exceptions=True,
            )

    ok, with_nan, short, float64, with_inf, ok_single = asyncio.run(all_at_once())
    assert_close(ok, reference(good))
    assert_close(ok_single, reference(good[:1]))
    for error, fragment in (
        (with_nan, "NaN or infinite values (in 1 of 3 windows)"),
        (with_inf, "NaN or infinite values"),
        (short, "unexpected shape for input 'ecg'"),
        (float64, "FP64"),
    ):
        assert isinstance(error, InferenceError), error
        assert error.status == "StatusCode.INVALID_ARGUMENT"
        assert fragment in error.message, error.message


def test_unknown_model_is_model_not_ready(server):
    async def ask():
        async with RiskClient(server.grpc_url, "no_such_model", card=CARD, retries=0) as client:
            with pytest.raises(ModelNotReady, match="no_such_model"):
                await client.wait_ready(timeout_s=0.5)
            with pytest.raises(ModelNotReady, match="no_such_model"):
                await client.infer(ecg_windows(CARD, 1))

    asyncio.run(ask())


def _processes_mentioning(text: str) -> list[int]:
    """PIDs of live (non-zombie) processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next(line for line in (entry / "status").read_text().splitlines() if line.startswith("State:"))
        except (OSError, StopIteration):
            continue
        if text in cmdline and "Z" not in state.split()[1]:
            found.append(int(entry.name))
    return found


def test_restart_keeps_the_address_and_stop_leaves_no_process(repository, tmp_path, reference):
    # A server of its own: it is the one being stopped. Its work dir is in every child's argv.
    server = start_server(repository, tmp_path)
    try:
        grpc_url = server.grpc_url
        children = _processes_mentioning(str(tmp_path))
        assert server.pid in children and len(children) >= 2, "expected tritonserver and a backend stub"
        server.restart()
        assert server.grpc_url == grpc_url
        x = ecg_windows(CARD, 2)
        assert_close(score(server, x), reference(x))
    finally:
        server.stop()
    assert not server.running()
    assert _processes_mentioning(str(tmp_path)) == []
    assert os.path.exists(server.log_path) and "hfrisk" in Path(server.log_path).read_text()
