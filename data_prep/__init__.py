"""Turn official raw downloads (VQA-RAD, SLAKE, ROCO) and the built-in synthetic set into prepared data."""
