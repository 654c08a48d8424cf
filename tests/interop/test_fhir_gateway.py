"""The FHIR endpoint through Starlette's test client (real HTTP semantics, in process): Observations
and Bundles in, OperationOutcomes for what is refused, RiskAssessments out of a Redis-shaped read."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone

import numpy as np
import pytest
from starlette.testclient import TestClient

from hfrisk.core.config import KafkaSettings
from hfrisk.core.pseudonym import Pseudonymiser
from hfrisk.gateway.fhir_app import fhir_app
from hfrisk.gateway.intake import Intake
from hfrisk.model.contract.card import default_card
from hfrisk.model.readers.fhir_io import ecg_to_observation
from hfrisk.model.readers.wfdb_io import read_wfdb
from tests.interop.gateway_fakes import RecordingPublisher

START = datetime(2024, 5, 6, 7, 8, 9, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def observation(ptbxl_record_hr) -> dict:
    ecg = replace(read_wfdb(ptbxl_record_hr), acquired_at=START, patient_id="MRN-1", device_id="cart-2")
    return json.loads(ecg_to_observation(ecg, observation_id="ecg-1").model_dump_json())


def _client(publisher, **kwargs) -> TestClient:
    intake = Intake(publisher, KafkaSettings(), chunk_s=1.0, source="fhir-http")
    return TestClient(fhir_app(intake, max_message_bytes=kwargs.pop("max_message_bytes", 4_000_000), **kwargs))


def test_observation_is_accepted_as_chunks(observation, ptbxl_record_hr):
    publisher = RecordingPublisher()
    response = _client(publisher).post("/Observation", json=observation)
    assert response.status_code == 202 and response.headers["content-type"].startswith("application/fhir+json")
    assert response.json()["resourceType"] == "OperationOutcome"
    chunks = publisher.decoded()
    assert len(chunks) == 10 and {c.patient_id for c in chunks} == {"MRN-1"}
    rebuilt = np.concatenate([c.to_ecg().samples for c in chunks], axis=1)
    assert np.abs(rebuilt - read_wfdb(ptbxl_record_hr).samples).max() <= 0.0005 + 1e-6


def test_bundle_entries_are_taken_or_refused_one_by_one(observation):
    bad = json.loads(json.dumps(observation))
    bad["id"] = "ecg-bad"
    bad["component"][1]["valueSampledData"]["period"] = 4
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [{"resource": bad}, {"resource": observation}]}
    publisher = RecordingPublisher()
    response = _client(publisher).post("/", json=bundle)
    assert response.status_code == 200
    entries = response.json()["entry"]
    assert [e["response"]["status"].split()[0] for e in entries] == ["422", "202"]
    assert entries[0]["response"]["outcome"]["issue"][0]["details"]["coding"][0]["code"] == "bad_sampling_rate"
    assert len(publisher.decoded()) == 10  # the good one, whole
    assert [(d.reason, d.kind, d.key) for d in publisher.dead_letters] == [("bad_sampling_rate", "fhir", b"MRN-1")]
    assert json.loads(publisher.dead_letters[0].value)["id"] == "ecg-bad"


@pytest.mark.parametrize(
    "body, status, reason",
    [(b"{not json", 400, "bad_message"),
     (json.dumps({"resourceType": "Patient", "id": "p"}).encode(), 400, "bad_message"),
     (json.dumps({"resourceType": "Observation", "status": "final"}).encode(), 400, "bad_message")],
)
def test_unusable_bodies_get_an_operation_outcome_and_a_dead_letter(body, status, reason):
    publisher = RecordingPublisher()
    response = _client(publisher).post("/Observation", content=body, headers={"content-type": "application/fhir+json"})
    assert response.status_code == status
    issue = response.json()["issue"][0]
    assert issue["severity"] == "error" and issue["details"]["coding"][0]["code"] == reason
    assert [d.reason for d in publisher.dead_letters] == [reason] and publisher.dead_letters[0].value == body


def test_no_subject_is_refused(observation):
    anonymous = {k: v for k, v in observation.items() if k != "subject"}
    response = _client(RecordingPublisher()).post("/Observation", json=anonymous)
    assert response.status_code == 422 and "subject" in response.json()["issue"][0]["diagnostics"]


def test_token_size_and_kafka_outage(observation):
    client = _client(RecordingPublisher(), token=lambda: "s3cret-token", max_message_bytes=1000)
    assert client.post("/Observation", json=observation).status_code == 401
    assert client.post("/Observation", json=observation, headers={"authorization": "Bearer wrong"}).status_code == 401
    ok = client.post("/Observation", json=observation, headers={"authorization": "Bearer s3cret-token"})
    assert ok.status_code == 413
    down = _client(RecordingPublisher(down=True)).post("/Observation", json=observation)
    assert down.status_code == 503 and down.json()["issue"][0]["code"] == "transient"


def test_risk_assessment_search_reads_the_pseudonymised_latest_window(observation):
    pseudonymiser = Pseudonymiser(b"0123456789abcdef-key")
    stored = {pseudonymiser("MRN-1"): {"patient_id": pseudonymiser("MRN-1"), "window_id": "w-17",
                                       "window_end_us": int(START.timestamp() * 1e6), "fit_to_score": True,
                                       "log_risk": 0.25, "model_version": "3"}}
    client = _client(RecordingPublisher(), read_latest=stored.get, pseudonymise=pseudonymiser, card=default_card())
    client.post("/Observation", json=observation)
    found = client.get("/RiskAssessment", params={"subject": "Patient/MRN-1"}).json()
    assert found["type"] == "searchset" and found["total"] == 1
    resource = found["entry"][0]["resource"]
    assert resource["subject"]["reference"] == "Patient/MRN-1"  # the hospital's id, not the pseudonym
    assert resource["basis"] == [{"reference": "Observation/ecg-1"}]
    assert resource["method"]["coding"][0]["version"] == "3"
    assert float(resource["prediction"][0]["relativeRisk"]) == pytest.approx(np.exp(0.25), rel=1e-5)
    assert client.get("/RiskAssessment", params={"subject": "Patient/other"}).json()["total"] == 0


def test_a_chunked_body_over_the_limit_is_refused_without_reading_it_all(observation):
    body = json.dumps(observation).encode()

    def pieces():
        for start in range(0, len(body), 10_000):
            yield body[start:start + 10_000]

    publisher = RecordingPublisher()
    response = _client(publisher, max_message_bytes=50_000).post(
        "/Observation", content=pieces(), headers={"content-type": "application/fhir+json"})
    assert response.status_code == 413 and publisher.chunks == []


def test_https_with_client_certificates_and_token_on_a_real_uvicorn(tmp_path, observation):
    """The FHIR endpoint as `hfrisk gateway fhir` serves it off loopback: TLS, client certificates,
    bearer token (uvicorn on a real socket; Kafka replaced by the recording publisher)."""
    import socket
    import ssl
    import threading
    import time

    import httpx
    import uvicorn

    from hfrisk.gateway.settings import GatewaySettings
    from tests.security.certs import make_pki

    pki = make_pki(tmp_path / "pki")
    token = tmp_path / "token"
    token.write_text("fhir-token-123\n")
    settings = GatewaySettings(fhir_host="0.0.0.0", tls_certfile=pki.certfile, tls_keyfile=pki.keyfile,
                               tls_client_cafile=pki.cafile, fhir_token_file=token)
    publisher = RecordingPublisher()
    app = fhir_app(Intake(publisher, KafkaSettings(), chunk_s=1.0, source="fhir-http"), max_message_bytes=4_000_000,
                   token=settings.bearer_token)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           **settings.uvicorn_ssl_options()))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started
        url = f"https://127.0.0.1:{port}/Observation"
        auth = {"authorization": "Bearer fhir-token-123"}
        with_cert = ssl.create_default_context(cafile=str(pki.cafile))
        with_cert.load_cert_chain(pki.client_certfile, pki.client_keyfile)
        with httpx.Client(verify=with_cert) as client:
            assert client.post(url, json=observation, headers=auth).status_code == 202
            assert client.post(url, json=observation).status_code == 401
        without_cert = ssl.create_default_context(cafile=str(pki.cafile))
        with pytest.raises(httpx.HTTPError), httpx.Client(verify=without_cert) as anonymous:
            anonymous.post(url, json=observation, headers=auth)  # no client certificate: handshake refused
        with pytest.raises(httpx.TransportError):  # plain HTTP: the TLS server hangs up
            httpx.post(f"http://127.0.0.1:{port}/Observation", json=observation, headers=auth)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    assert len(publisher.decoded()) == 10  # the one authenticated, encrypted request
