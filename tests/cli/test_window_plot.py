"""``hfrisk inspect --plot``: the picture of one window, with what the front end made of it."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from hfrisk.cli import app
from hfrisk.cli.window_plot import lead_notes, plot_window
from hfrisk.model.contract.card import default_card
from hfrisk.model.contract.ecg import ECG
from hfrisk.model.frontend.preprocessing import prepare
from hfrisk.model.readers.dispatch import read_ecg
from hfrisk.model.readers.wfdb_io import write_wfdb

CARD = default_card()


@pytest.fixture(scope="module")
def eight_leads_one_flat(tmp_path_factory, ecg_data_dir):
    """PTB-XL 00001 as an 8-lead machine records it (I, II, V1-V6: four limb leads derived), V3 flat."""
    ecg = read_ecg(ecg_data_dir / "ptbxl" / "records500" / "00000" / "00001_hr.hea")
    names = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
    samples = np.stack([ecg.samples[ecg.lead_names.index(n)] for n in names]).astype(np.float64)
    samples[names.index("V3")] = 0.0
    folder = tmp_path_factory.mktemp("eight")
    return write_wfdb(ECG(samples=samples, fs_hz=ecg.fs_hz, lead_names=names), folder, "eight")


def _png_pixels(path):
    from matplotlib.image import imread

    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return imread(path)


def test_the_notes_say_which_leads_are_derived_absent_or_masked(eight_leads_one_flat, ecg_data_dir):
    item = prepare(read_ecg(eight_leads_one_flat), CARD)
    notes = dict(zip(CARD.input.leads, lead_notes(item, np.ones(12, bool))))
    assert notes["III"] == notes["aVR"] == notes["aVL"] == notes["aVF"] == "derived"
    assert notes["V3"] == "masked: flat" and notes["I"] == notes["V4"] == ""
    two_leads = prepare(read_ecg(ecg_data_dir / "wfdb-samples" / "100.hea"), CARD)
    present = np.isin(CARD.input.leads, ("II", "V5"))
    notes = dict(zip(CARD.input.leads, lead_notes(two_leads, present)))
    assert notes["II"] == notes["V5"] == "" and notes["I"] == notes["V1"] == "absent"


def test_plot_draws_a_non_trivial_png(eight_leads_one_flat, tmp_path):
    ecg = read_ecg(eight_leads_one_flat)
    item = prepare(ecg, CARD)
    assert item.n_beats_detected > item.n_beats_used  # the picture has both kinds of marks
    path = plot_window(ecg, item, CARD, tmp_path / "window.png", record="eight")
    pixels = _png_pixels(path)
    assert pixels.shape[0] > 800 and pixels.shape[1] > 1200
    rgb = pixels[..., :3]
    assert rgb.std() > 0.05  # not a blank page
    red = (rgb[..., 0] > 0.7) & (rgb[..., 1] < 0.35) & (rgb[..., 2] < 0.35)
    green = (rgb[..., 1] > 0.5) & (rgb[..., 0] < 0.3) & (rgb[..., 2] < 0.4)
    assert red.sum() > 50 and green.sum() > 50  # dropped and used beats are both marked


def test_cli_inspect_plot_of_a_refused_window(tmp_path, ecg_data_dir):
    """MIT-BIH 100 is refused today for too few leads: the picture still shows what there was."""
    runner = CliRunner()
    picture = tmp_path / "mit.png"
    result = runner.invoke(app, ["inspect", str(ecg_data_dir / "wfdb-samples" / "100"), "--window-start-s", "20",
                                 "--plot", str(picture)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "beats detected" in text and "used for the median beat" in text and f"written to {picture}" in text
    assert _png_pixels(picture).std() > 0.02
