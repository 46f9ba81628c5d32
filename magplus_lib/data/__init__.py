"""Face-clip data: the clip model, the SAMM / CAS(ME)^3 / CASME II loaders, face crops, subject
splits, training pairs, and SynthME, the synthetic corpus in the real datasets' formats."""
