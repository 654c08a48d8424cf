"""Alert policy: hysteresis over a patient's scores that raises and clears high-risk flags."""
