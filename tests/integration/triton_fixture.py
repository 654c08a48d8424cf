"""Session fixture ``triton_server``: the real tritonserver serving ``exported_model_dir``.

The repository is written with :func:`hfrisk.serving.model_repository.write_model_repository`
(one ONNX Runtime thread: the test machine has two cores and the clients need the other) into a
temporary folder; the server listens on free loopback ports and stops when the session ends.
``triton_server.model_repository`` is that folder (its ``hfrisk/model_card.json`` is the card the
stream worker reads). The card gets a risk scale (:data:`STAND_IN_RISK_SCALE`) if it has none, so
that what the worker derives from the served card (percentile, absolute risk) is exercised; the
untrained network's scale would mean nothing anyway. Import it into ``tests/integration/conftest.py`` to share it::

    from .triton_fixture import triton_server  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import numpy as np

from hfrisk.model.contract.card import CARD_FILENAME, default_card, load_card
from hfrisk.model.contract.risk_scale import AbsoluteRisk, ReferenceDistribution, RiskScale
from hfrisk.serving.model_repository import write_model_repository
from hfrisk.stack.triton_server import TritonServer

from tests.integration.service_required import serve

__all__ = ["triton_server", "STAND_IN_RISK_SCALE"]

_GRID = np.linspace(0.0, 100.0, 201)
# A reference cohort of log-risks spread like a standard normal, 5 % five-year risk at log-risk 0.
STAND_IN_RISK_SCALE = RiskScale(
    reference=ReferenceDistribution(
        cohort="stand-in for the integration tests", n=10_000, percentiles=tuple(float(p) for p in _GRID),
        log_risk=tuple(float(q) for q in np.percentile(np.random.default_rng(0).normal(size=10_000), _GRID,
                                                       method="hazen"))),
    absolute_risk=AbsoluteRisk(cohort="stand-in for the integration tests", n=10_000, n_events=500,
                               horizon_days=1826.25, baseline_survival=0.95),
)


@pytest.fixture(scope="session")
def triton_server(exported_model_dir, tmp_path_factory) -> Iterator[TritonServer]:
    card_path = exported_model_dir / CARD_FILENAME
    card = load_card(card_path) if card_path.is_file() else default_card()
    if card.risk_scale is None:
        card = card.model_copy(update={"risk_scale": STAND_IN_RISK_SCALE})
    repository = tmp_path_factory.mktemp("triton_repository")
    write_model_repository(exported_model_dir / "model.onnx", card, repository, intra_op_threads=1)
    work_dir = tmp_path_factory.mktemp("triton_work")
    yield from serve("tritonserver", lambda: TritonServer(repository, "hfrisk", work_dir=work_dir, ready_timeout_s=120))
