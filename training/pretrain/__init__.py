"""LLM-informed pretraining: report texts embedded by a language model, ECG-report alignment and reconstruction."""
