"""hfrisk: streaming 12-lead ECG heart-failure risk monitoring. The packages and what each may import are in
docs/architecture.md."""

__version__ = "0.1.0"
