"""e2llm.processing: recordings, public emotion datasets, features, splits, synthetic EEG, instruction data.

| module | what |
|---|---|
| `recording` | any MNE-readable file -> `Recording` (EEG channels in 10-05 spelling, units explicit) |
| `montage` | 10-05 template positions plus SEED's CB1/CB2 |
| `preprocess` | band-pass, notch, re-reference, resample, windows; parameters kept as provenance |
| `features` | band power, differential entropy (incl. the SEED-exact mode), frontal alpha asymmetry, LDS |
| `splits` | by trial, leave-one-subject-out, SEED-VII's official folds; leakage check |
| `readers` | SEED-VII, SEED, SEED-IV, SEED-V, DEAP, DREAMER, folder + label table, synthetic |
| `synthetic` | synthetic 62-channel EEG with emotion effects; SEED-VII on-disk layout writer |
| `dataset_io` | the prepared-dataset schema, `save_prepared` / `load_prepared` |
| `prepare` | `prepare_dataset` and the ``e2llm prepare`` command |
| `instructions` | chat examples and checkable rationales for the training stages |
"""
