"""The reference datasets the front-end benchmark is validated against, one loader module per source
(all under ``../shared/data/ecg``, see its README):

- :mod:`bench.references.ludb` — LUDB, cardiologists' P/QRS/T onsets, peaks and offsets per lead;
- :mod:`bench.references.mitdb` — MIT-BIH Arrhythmia DS1, reference beat annotations;
- :mod:`bench.references.nstdb` — MIT-BIH Noise Stress Test noise records (``ma``, ``bw``);
- :mod:`bench.references.challenge2011` — Challenge 2011 acceptable / unacceptable quality labels;
- :mod:`bench.references.ptbxl`, :mod:`bench.references.cinc2021` — unlabelled 12-lead sources for
  the share of ECGs the quality gate refuses.
"""

from bench.references import challenge2011, cinc2021, ludb, mitdb, nstdb, ptbxl
from bench.references.root import data_root

__all__ = ["challenge2011", "cinc2021", "ludb", "mitdb", "nstdb", "ptbxl", "data_root"]
