"""Hospital formats in and out: EDF, FHIR R4, HL7 v2 readers; RiskAssessments; the gateways."""
