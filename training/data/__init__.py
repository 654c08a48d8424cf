"""Training data: PTB-XL and cohort loaders, report texts, model inputs cached on disk, ECG measurements, simulated outcomes, augmentation and sampling."""
