from pathlib import Path

import numpy as np
import pytest
import wfdb

from hfrisk.model.contract.card import CANONICAL_LEADS
from hfrisk.model.contract.ecg import ECG
from hfrisk.model.contract.errors import ECGInputError, InputErrorReason
from hfrisk.model.contract.leads import conform_leads, normalise_lead_name

DATA = Path(__file__).resolve().parents[1] / "data" / "ecg"


def _record(rel: str) -> ECG:
    rec = wfdb.rdrecord(str(DATA / rel))
    return ECG(samples=rec.p_signal.T, fs_hz=rec.fs, lead_names=tuple(rec.sig_name), units="mV")


@pytest.fixture(scope="module")
def ptbxl() -> ECG:
    return _record("ptbxl/records500/00000/00001_hr")


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("I", ("I", False)), ("DI", ("I", False)), ("Lead I (Einthoven)", ("I", False)),
        ("MLII", ("II", False)), ("DIII", ("III", False)), ("AVR", ("aVR", False)),
        ("avr", ("aVR", False)), ("-aVR", ("aVR", True)), ("aVL", ("aVL", False)),
        ("AVF", ("aVF", False)), ("v1", ("V1", False)), ("C4", ("V4", False)),
        ("ECG V6", ("V6", False)), ("lead_v2", ("V2", False)), ("vx", (None, False)),
    ],
)
def test_aliases(raw, expected):
    assert normalise_lead_name(raw) == expected


@pytest.mark.parametrize("raw", ["V7", "foo", "aVX", "", "II-bis"])
def test_unknown_lead_names_are_refused(raw):
    for _ in range(2):  # every time: the names it knows are cached, a refusal is not
        with pytest.raises(ECGInputError) as err:
            normalise_lead_name(raw)
        assert err.value.reason is InputErrorReason.UNKNOWN_LEAD
        assert repr(raw) in str(err.value)


def test_ptbxl_names_map_to_canonical_order(ptbxl):
    assert ptbxl.lead_names[3] == "AVR"  # PTB-XL's own spelling
    conformed = conform_leads(ptbxl)
    assert conformed.leads == CANONICAL_LEADS
    assert conformed.mask.all() and conformed.derived == ()
    np.testing.assert_array_equal(conformed.samples, ptbxl.samples)


def test_source_order_does_not_matter(ptbxl):
    rng = np.random.default_rng(0)
    order = rng.permutation(ptbxl.n_leads)
    shuffled = ECG(
        samples=ptbxl.samples[order], fs_hz=ptbxl.fs_hz,
        lead_names=tuple(ptbxl.lead_names[i] for i in order),
    )
    np.testing.assert_array_equal(conform_leads(shuffled).samples, conform_leads(ptbxl).samples)


def test_leads_already_in_the_cards_order_are_the_recordings_own_samples_read_only(ptbxl):
    conformed = conform_leads(ptbxl)
    assert np.shares_memory(conformed.samples, ptbxl.samples)  # not copied
    assert not conformed.samples.flags.writeable and ptbxl.samples.flags.writeable
    with pytest.raises(ValueError):
        conformed.samples[0, 0] = 1.0  # nothing writes through the window into the recording
    assert conformed.mask.all() and conformed.derived == () and conformed.dropped == ()
    # Any other order, an inverted lead or an extra channel: a copy of the card's order.
    names = list(ptbxl.lead_names)
    for samples, lead_names in (
        (ptbxl.samples[::-1], names[::-1]),
        (ptbxl.samples * np.array([-1] + [1] * 11, np.float32)[:, None], ["-I", *names[1:]]),
        (np.vstack([ptbxl.samples, ptbxl.samples[:1]]), [*names, "RESP"]),
    ):
        other = conform_leads(ECG(samples=samples, fs_hz=ptbxl.fs_hz, lead_names=tuple(lead_names)))
        assert not np.shares_memory(other.samples, samples) and other.samples.flags.writeable
        np.testing.assert_array_equal(other.samples, conformed.samples)


def test_a_recording_of_twelve_leads_derives_none_and_keeps_its_own(ptbxl):
    conformed = conform_leads(ptbxl)
    assert conformed.derived == ()
    for i, name in enumerate(CANONICAL_LEADS[:6]):  # the recorded limb leads, not a derivation
        np.testing.assert_array_equal(conformed.samples[i], ptbxl.samples[i], err_msg=name)


@pytest.mark.parametrize("pair", [("I", "II"), ("I", "III"), ("II", "III")])
def test_derived_limb_leads_match_recorded_ones(ptbxl, pair):
    keep = [i for i, n in enumerate(ptbxl.lead_names) if n in pair or n.startswith("V")]
    partial = ECG(
        samples=ptbxl.samples[keep], fs_hz=ptbxl.fs_hz,
        lead_names=tuple(ptbxl.lead_names[i] for i in keep),
    )
    conformed = conform_leads(partial)
    full = conform_leads(ptbxl)
    assert conformed.mask.all()
    assert set(conformed.derived) == set(("I", "II", "III", "aVR", "aVL", "aVF")) - set(pair)
    # The device computes III and the augmented leads from I and II; ours must agree to within
    # the 1 µV quantisation of PTB-XL's 16-bit samples (x1.5 for the Goldberger averages).
    np.testing.assert_allclose(conformed.samples, full.samples, atol=2e-3)


def test_missing_leads_are_masked_and_zero():
    ecg = _record("wfdb-samples/100")  # MIT-BIH: MLII and V5 only
    short = ECG(samples=ecg.samples[:, :3600], fs_hz=ecg.fs_hz, lead_names=ecg.lead_names)
    conformed = conform_leads(short)
    assert conformed.present == ("II", "V5")
    assert conformed.derived == ()
    absent = ~conformed.mask
    assert absent.sum() == 10
    assert not conformed.samples[absent].any()
    np.testing.assert_array_equal(conformed.samples[CANONICAL_LEADS.index("II")], short.samples[0])


def test_frank_leads_are_dropped_and_reported():
    ecg = _record("wfdb-samples/s0010_re")
    conformed = conform_leads(ecg)
    assert conformed.mask.all()
    assert {d.lower() for d in conformed.dropped} == {"vx", "vy", "vz"}


def test_inverted_lead_is_flipped(ptbxl):
    names = list(ptbxl.lead_names)
    samples = ptbxl.samples.copy()
    samples[3] *= -1
    names[3] = "-aVR"
    conformed = conform_leads(ECG(samples=samples, fs_hz=ptbxl.fs_hz, lead_names=tuple(names)))
    np.testing.assert_array_equal(conformed.samples[3], ptbxl.samples[3])


def test_microvolts_are_converted(ptbxl):
    in_uv = ECG(samples=ptbxl.samples * 1000, fs_hz=ptbxl.fs_hz, lead_names=ptbxl.lead_names, units="uV")
    np.testing.assert_allclose(conform_leads(in_uv).samples, conform_leads(ptbxl).samples, rtol=1e-6)


def test_duplicate_and_no_lead_inputs_are_refused(ptbxl):
    dup = ECG(samples=ptbxl.samples[:2], fs_hz=500, lead_names=("II", "MLII"))
    with pytest.raises(ECGInputError) as err:
        conform_leads(dup)
    assert err.value.reason is InputErrorReason.DUPLICATE_LEAD
    none = ECG(samples=ptbxl.samples[:2], fs_hz=500, lead_names=("ABP", "RESP"))
    with pytest.raises(ECGInputError) as err:
        conform_leads(none)
    assert err.value.reason is InputErrorReason.MISSING_LEADS
