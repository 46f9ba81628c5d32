"""Frozen face-animation backbones: the interface, one module per family (FOMM, the latent
family, the landmark family, flowwarp, external adapters), their training data and trainer, and the
competence check that admits them to the tables."""
