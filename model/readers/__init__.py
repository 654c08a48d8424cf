"""Readers that turn recordings (WFDB, DICOM) into the canonical ECG type."""
