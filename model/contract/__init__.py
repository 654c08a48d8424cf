"""The input contract: the model card, the canonical ECG type, lead names and the input errors every reader and stage raises."""
