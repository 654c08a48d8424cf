"""The front end on a GPU: every array it makes must be on the device of the arrays it meets.

torch makes an array on the CPU unless told otherwise, and an operation between a CPU array and a
GPU array (other than a 0-d scalar, which torch moves itself) stops the batch. No GPU here, so the
front end runs on torch's CPU under a mode that records every non-scalar array a torch factory
(``zeros``, ``arange``, ``full``, ``asarray``, ...) made without being given a device: on a GPU
each of those would have been on the CPU. Before ``device_of`` there were 21 such places on
these windows; the first of them to meet a GPU array would have stopped every batch.
"""

from __future__ import annotations

import traceback
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch.overrides import TorchFunctionMode  # noqa: E402
from torch.utils._device import _device_constructors  # noqa: E402

from hfrisk.model.contract.card import default_card  # noqa: E402
from hfrisk.model.contract.ecg import ECG  # noqa: E402
from hfrisk.model.frontend.arrays import ArrayBackend  # noqa: E402
from hfrisk.model.frontend.preprocessing import ModelInput, prepare_windows  # noqa: E402
from hfrisk.model.readers.dispatch import read_ecg, record_paths  # noqa: E402

RECORDS = Path(__file__).resolve().parents[1] / "data" / "ecg" / "ptbxl" / "records500"


class DevicelessArrays(TorchFunctionMode):
    """Counts, by the front end's line that asked, the non-scalar arrays torch's factories made
    without a device."""

    def __init__(self) -> None:
        super().__init__()
        self.found: Counter = Counter()
        self._factories = _device_constructors()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func in self._factories and kwargs.get("device") is None and isinstance(out, torch.Tensor) and out.ndim:
            caller = [f for f in traceback.extract_stack()[:-1] if "frontend" in f.filename][-1]
            self.found[f"{Path(caller.filename).name}:{caller.lineno} {caller.line}"] += 1
        return out


def _windows() -> list[ECG]:
    """The test records, and windows that take the front end's other branches: a flat lead, a lead
    of noise (masked, then the window prepared again), a limb lead missing (derived), no beats."""
    ecgs = [read_ecg(p) for p in record_paths([RECORDS])]
    base = ecgs[0]
    rng = np.random.default_rng(0)
    flat = base.samples.copy()
    flat[4] = 0.0
    noisy = base.samples.copy()
    noisy[7] += rng.normal(0, 1.5, noisy.shape[1]).astype(np.float32)
    quiet = np.zeros_like(base.samples) + rng.normal(0, 0.005, base.samples.shape).astype(np.float32)
    made = [ECG(samples=s, fs_hz=base.fs_hz, lead_names=base.lead_names) for s in (flat, noisy, quiet)]
    keep = [i for i, name in enumerate(base.lead_names) if name != "III"]
    made.append(ECG(samples=base.samples[keep], fs_hz=base.fs_hz, lead_names=tuple(base.lead_names[i] for i in keep)))
    return ecgs + made


@pytest.mark.parametrize("batch_size", [1, 8, 64])
def test_the_front_end_makes_no_array_off_the_device_of_its_batch(batch_size):
    card = default_card()
    requests = [(ecg, 0.0) for ecg in _windows()]
    watch = DevicelessArrays()
    with watch:
        prepared = prepare_windows(requests, card, backend=ArrayBackend("torch", "cpu"), batch_size=batch_size)
    assert not watch.found, "arrays made without a device:\n" + "\n".join(f"{n} x {line}" for line, n in
                                                                        watch.found.most_common())
    # The branches were taken: something refused, something masked or derived, something scored.
    items = [item for item in prepared if isinstance(item, ModelInput)]
    assert any(not item.quality.fit_to_score for item in items)
    assert any(item.quality.fit_to_score for item in items)
    assert any(item.quality.noisy_leads or item.quality.flat_leads for item in items)
    assert any(item.derived_leads for item in items)


def test_the_watch_finds_an_array_made_without_a_device():
    watch = DevicelessArrays()
    xp = ArrayBackend("torch", "cpu").namespace()
    with watch:
        xp.zeros((2, 3))
        xp.zeros((2, 3), device="cpu")
        xp.asarray(1.0)  # a 0-d scalar: torch moves those itself
    assert sum(watch.found.values()) == 1
