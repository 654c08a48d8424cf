"""Gateways into Kafka for hospital feeds, and scores back out as FHIR: an HL7 v2 MLLP listener
(:mod:`.hl7_mllp`), a FHIR R4 HTTP endpoint (:mod:`.fhir_app`), what both share (:mod:`.intake`,
:mod:`.chunks`, :mod:`.publisher`, :mod:`.settings`), the RiskAssessment of a scored window
(:mod:`.risk_assessment`) and the relay that publishes them on a topic (:mod:`.relay`). Formats and fields: docs/interop.md.

The names below are imported on first use, so ``import hfrisk.gateway`` loads no server or Kafka client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hfrisk.core.lazy import lazy_exports

if TYPE_CHECKING:
    from hfrisk.gateway.chunks import Sequencer, ecg_to_chunks
    from hfrisk.gateway.fhir_app import fhir_app, operation_outcome
    from hfrisk.gateway.hl7_mllp import MLLPGateway, ack_code, start_hl7_gateway
    from hfrisk.gateway.intake import Accepted, Intake
    from hfrisk.gateway.publisher import KafkaPublisher, Publisher, PublishError
    from hfrisk.gateway.relay import relay_risk_assessments, risk_assessment_value
    from hfrisk.gateway.risk_assessment import absolute_risk, risk_assessment
    from hfrisk.gateway.settings import GatewaySettings

_EXPORTS = {
    "Sequencer": "hfrisk.gateway.chunks",
    "ecg_to_chunks": "hfrisk.gateway.chunks",
    "fhir_app": "hfrisk.gateway.fhir_app",
    "operation_outcome": "hfrisk.gateway.fhir_app",
    "MLLPGateway": "hfrisk.gateway.hl7_mllp",
    "ack_code": "hfrisk.gateway.hl7_mllp",
    "start_hl7_gateway": "hfrisk.gateway.hl7_mllp",
    "Accepted": "hfrisk.gateway.intake",
    "Intake": "hfrisk.gateway.intake",
    "KafkaPublisher": "hfrisk.gateway.publisher",
    "Publisher": "hfrisk.gateway.publisher",
    "PublishError": "hfrisk.gateway.publisher",
    "relay_risk_assessments": "hfrisk.gateway.relay",
    "risk_assessment_value": "hfrisk.gateway.relay",
    "absolute_risk": "hfrisk.gateway.risk_assessment",
    "risk_assessment": "hfrisk.gateway.risk_assessment",
    "GatewaySettings": "hfrisk.gateway.settings",
}

__all__ = list(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
