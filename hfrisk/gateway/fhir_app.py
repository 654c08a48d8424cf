"""``hfrisk gateway fhir``: a small FHIR R4 endpoint (ASGI, Starlette) for ECG Observations in and
RiskAssessments out.

* ``POST /Observation``: one ECG Observation (``component.valueSampledData``): ``202`` with an
  OperationOutcome once its chunks are on the raw topic;
* ``POST /`` (or ``/Bundle``): a ``batch``/``transaction``/``collection`` Bundle of Observations:
  each entry is taken or refused on its own (``batch-response`` Bundle, one status per entry):
  one bad entry never loses the good ones;
* ``GET /RiskAssessment?subject=Patient/<id>``: a ``searchset`` Bundle with the patient's latest
  scored window as a RiskAssessment (read from Redis, under the patient's pseudonym when
  pseudonymisation is on: the id is pseudonymised on the way in, the same way the worker did).

Errors are OperationOutcomes: ``400`` (not JSON, not an R4 Observation/Bundle), ``401`` (token
missing or wrong), ``413`` (too big), ``422`` (an Observation whose content cannot be used, with
the input error's reason code in ``issue.details``), ``503`` (Kafka did not take it: send again).
Every refused Observation is also dead-lettered with its reason.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from fhir.resources.R4B.operationoutcome import OperationOutcome
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hfrisk.core.logs import get_logger
from hfrisk.model.contract.card import ModelCard
from hfrisk.model.contract.errors import ECGInputError, InputErrorReason
from hfrisk.model.readers.fhir_io import fhir_observations, observation_patient_id, observation_to_ecg

from hfrisk.gateway.intake import Intake
from hfrisk.gateway.publisher import PublishError
from hfrisk.gateway.risk_assessment import risk_assessment

__all__ = ["fhir_app", "operation_outcome", "FHIR_JSON"]

log = get_logger(__name__)

FHIR_JSON = "application/fhir+json"
_OUTCOME_SYSTEM = "urn:hfrisk:input-error"
# Patients whose source Observations are remembered as a RiskAssessment's basis (bounded).
_BASIS_PATIENTS = 10_000


def operation_outcome(severity: str, code: str, text: str, reason: str | None = None) -> dict:
    """An R4 OperationOutcome with one issue; ``reason`` (an input error code) goes in ``details``."""
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": text}
    if reason is not None:
        issue["details"] = {"coding": [{"system": _OUTCOME_SYSTEM, "code": reason}], "text": reason}
    outcome = OperationOutcome.model_validate({"resourceType": "OperationOutcome", "issue": [issue]})
    return json.loads(outcome.model_dump_json())


def _fhir_response(body: dict, status: int) -> Response:
    return Response(json.dumps(body), status_code=status, media_type=FHIR_JSON)


def _error(status: int, code: str, text: str, reason: str | None = None) -> Response:
    return _fhir_response(operation_outcome("error", code, text, reason), status)


def fhir_app(
    intake: Intake,
    *,
    max_message_bytes: int,
    token: Callable[[], str | None] = lambda: None,
    default_units: str | None = None,
    read_latest: Callable[[str], dict | None] | None = None,
    pseudonymise: Callable[[str], str] | None = None,
    card: ModelCard | None = None,
) -> Starlette:
    """The ASGI app. ``token`` gives the bearer token clients must send (``None``: no auth, loopback
    only); ``read_latest(patient_key)`` reads a patient's latest window (``None`` disables the
    RiskAssessment search); ``pseudonymise`` turns a Patient id into the key the worker stored."""
    basis: OrderedDict[str, list[str]] = OrderedDict()

    def remember(patient_id: str, reference: str) -> None:
        if not reference:
            return
        refs = basis.pop(patient_id, [])
        basis[patient_id] = (refs + [reference])[-3:]
        while len(basis) > _BASIS_PATIENTS:
            basis.popitem(last=False)

    def authorised(request: Request) -> bool:
        expected = token()
        if expected is None:
            return True
        sent = request.headers.get("authorization", "")
        return hmac.compare_digest(sent.encode(), f"Bearer {expected}".encode())

    async def body_of(request: Request) -> bytes | Response:
        if not authorised(request):
            return _error(401, "security", "missing or wrong bearer token")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_message_bytes:
            return _error(413, "too-costly", f"body over {max_message_bytes} bytes")
        # Read in pieces: a chunked body declares no length, and must not be held whole before it
        # is known to be too big.
        parts, size = [], 0
        async for part in request.stream():
            size += len(part)
            if size > max_message_bytes:
                return _error(413, "too-costly", f"body over {max_message_bytes} bytes")
            parts.append(part)
        return b"".join(parts)

    async def take(observation, raw: bytes) -> tuple[int, dict]:
        """Status and OperationOutcome of one Observation."""
        patient = observation_patient_id(observation)
        try:
            ecg = observation_to_ecg(observation, units=default_units,
                                     source=f"fhir:Observation/{observation.id or ''}")
            if not patient:
                raise ECGInputError(InputErrorReason.BAD_MESSAGE, "no subject: Observation.subject names no Patient")
            accepted = await intake.accept(ecg, source=ecg.source)
        except ECGInputError as exc:
            await intake.refuse(raw, exc, kind="fhir", patient_id=patient)
            return 422, operation_outcome("error", "processing", exc.detail, exc.reason.value)
        remember(patient, ecg.metadata.get("observation_reference", ""))
        text = f"{accepted.chunks} chunks of {accepted.duration_s:.3g} s queued from sequence {accepted.first_sequence}"
        return 202, operation_outcome("information", "informational", text)

    async def post(request: Request) -> Response:
        raw = await body_of(request)
        if isinstance(raw, Response):
            return raw
        try:
            data = json.loads(raw)
            kind = data.get("resourceType") if isinstance(data, dict) else None
            observations = list(fhir_observations(data))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            error = ECGInputError(InputErrorReason.BAD_MESSAGE, f"not JSON: {exc}")
            return await refused(raw, error)
        except ECGInputError as exc:
            return await refused(raw, exc)
        try:
            if kind != "Bundle":
                status, outcome = await take(observations[0], raw)
                return _fhir_response(outcome, status)
            entries = []
            for observation in observations:
                one = observation.model_dump_json().encode()
                status, outcome = await take(observation, one)
                entries.append({"response": {"status": f"{status} {'Accepted' if status == 202 else 'Unprocessable Entity'}",
                                             "outcome": outcome}})
            return _fhir_response({"resourceType": "Bundle", "type": "batch-response", "entry": entries}, 200)
        except PublishError as exc:
            log.error("Kafka did not take an Observation", error=str(exc))
            return _error(503, "transient", "Kafka unavailable; send again")

    async def refused(raw: bytes, error: ECGInputError) -> Response:
        try:
            await intake.refuse(raw, error, kind="fhir")
        except PublishError:
            return _error(503, "transient", "Kafka unavailable; send again")
        return _error(400, "structure", error.detail, error.reason.value)

    async def post_observation(request: Request) -> Response:
        return await post(request)

    async def search_risk(request: Request) -> Response:
        if not authorised(request):
            return _error(401, "security", "missing or wrong bearer token")
        if read_latest is None or card is None:
            return _error(404, "not-supported", "RiskAssessment search is not configured (no Redis)")
        subject = request.query_params.get("subject") or request.query_params.get("patient") or ""
        patient_id = subject.rsplit("/", 1)[-1]
        if not patient_id:
            return _error(400, "required", "search by subject=Patient/<id>")
        key = pseudonymise(patient_id) if pseudonymise is not None else patient_id
        latest = await asyncio.to_thread(read_latest, key)  # a blocking Redis read
        entries = []
        if latest is not None:
            resource = risk_assessment(latest, card=card, subject_id=patient_id, basis=basis.get(patient_id, []))
            if resource is not None:
                entries.append({"resource": json.loads(resource.model_dump_json()), "search": {"mode": "match"}})
        return _fhir_response({"resourceType": "Bundle", "type": "searchset", "total": len(entries),
                               "entry": entries}, 200)

    return Starlette(routes=[
        Route("/", post, methods=["POST"]),
        Route("/Bundle", post, methods=["POST"]),
        Route("/Observation", post_observation, methods=["POST"]),
        Route("/RiskAssessment", search_risk, methods=["GET"]),
    ])
