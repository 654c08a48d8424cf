"""The model and everything that turns a recording into its input: ``contract`` (model card, ECG type, leads,
errors), ``readers`` (WFDB, DICOM), ``frontend`` (filters, beats, quality, ``prepare``) and ``network`` (the
dual-attention network and its ONNX export)."""
