"""e2llm.processing: recordings, public emotion datasets, features, splits, synthetic EEG, instruction data."""
