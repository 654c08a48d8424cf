"""Session fixture ``triton_server``: the real tritonserver serving ``exported_model_dir``.

The repository is written with :func:`hfrisk.serving.model_repository.write_model_repository`
(one ONNX Runtime thread: the test machine has two cores and the clients need the other) into a
temporary folder; the server listens on free loopback ports and stops when the session ends.
``triton_server.model_repository`` is that folder (its ``hfrisk/model_card.json`` is the card the
stream worker reads). Import it into ``tests/integration/conftest.py`` to share it::

    from .triton_fixture import triton_server  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hfrisk.model.contract.card import CARD_FILENAME, default_card, load_card
from hfrisk.serving.model_repository import write_model_repository
from hfrisk.stack.triton_server import TritonServer

from tests.integration.service_required import serve

__all__ = ["triton_server"]


@pytest.fixture(scope="session")
def triton_server(exported_model_dir, tmp_path_factory) -> Iterator[TritonServer]:
    card_path = exported_model_dir / CARD_FILENAME
    card = load_card(card_path) if card_path.is_file() else default_card()
    repository = tmp_path_factory.mktemp("triton_repository")
    write_model_repository(exported_model_dir / "model.onnx", card, repository, intra_op_threads=1)
    work_dir = tmp_path_factory.mktemp("triton_work")
    yield from serve("tritonserver", lambda: TritonServer(repository, "hfrisk", work_dir=work_dir, ready_timeout_s=120))
