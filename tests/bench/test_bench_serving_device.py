"""The GPU measurement of bench/bench_serving.py (``--device cuda``), run here on torch's CPU: the
same code a GPU host runs, so that a lent GPU's few minutes are not spent finding its bugs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.bench_serving import BUNDLED, _device_lines, device_rows, windows
from hfrisk.model.contract.card import CARD_FILENAME, load_card
from hfrisk.model.frontend.arrays import ArrayBackend
from hfrisk.model.frontend.preprocessing import ModelInput, prepare_windows
from hfrisk.model.network.hfrisk_net import HFRiskNet, ServingModule


@pytest.fixture(scope="module")
def served():
    card = load_card(BUNDLED.parent.parent / CARD_FILENAME)
    ecgs, raw = windows(card)
    return card, ecgs, raw


def test_the_device_rows_measure_every_stage_at_each_batch_on_torch_cpu(served):
    card, ecgs, raw = served
    rows = device_rows(card, BUNDLED, ecgs, raw, [2, 3], 0.05, "cpu")
    assert [r["batch"] for r in rows] == [2, 3]
    for r in rows:
        for key in ("frontend_windows_per_s", "network_windows_per_s", "frontend_and_network_windows_per_s"):
            assert r[key] > 0
        assert "raw_model_windows_per_s" not in r  # no onnxruntime-gpu here


def test_the_network_they_time_is_the_served_graph_on_the_front_ends_inputs(served):
    """What ``device_rows`` times is the network the card serves: the same four outputs, of the
    card's shapes, for the model inputs the torch front end makes."""
    card, ecgs, _ = served
    prepared = prepare_windows([(e, 0.0) for e in ecgs[:4]], card, backend=ArrayBackend("torch", "cpu"), batch_size=4)
    assert all(isinstance(item, ModelInput) for item in prepared)
    torch.manual_seed(0)
    network = ServingModule(HFRiskNet.from_card(card).eval())
    with torch.inference_mode():
        outputs = network(torch.from_numpy(np.stack([item.x for item in prepared])))
    assert [tuple(o.shape[1:]) for o in outputs] == [tuple(int(d) for d in o.shape[1:]) for o in card.outputs]
    assert all(torch.isfinite(o).all() for o in outputs)


def test_the_page_names_each_stage_and_the_served_model_only_where_it_was_measured():
    rows = [{"batch": 256, "frontend_windows_per_s": 3000.4, "network_windows_per_s": 90000.0,
             "frontend_and_network_windows_per_s": 2900.0, "network": "torch eager fp32"}]
    lines = _device_lines(rows)
    assert "| 256 | 3000 | 90000 | 2900 |" in lines
    assert any("not installed here" in line for line in lines)
    rows.append(rows[0] | {"batch": 1024, "raw_model_windows_per_s": 2500.0,
                           "raw_model_providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]})
    lines = _device_lines(rows)
    assert "| 256 | 3000 | 90000 | 2900 | – |" in lines
    assert "| 1024 | 3000 | 90000 | 2900 | 2500 (CUDAExecutionProvider, CPUExecutionProvider) |" in lines
