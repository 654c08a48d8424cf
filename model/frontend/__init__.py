"""The signal front end: filters, R-peak detection, beats and the median beat, the quality gate, and `prepare`, which turns an ECG into model inputs."""
