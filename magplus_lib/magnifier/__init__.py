"""MagPlus / DeMagPlus: the alpha-conditioned U-Net, its flow estimators, its training and
inference, and the checks of its accuracy (synthetic ground truth, real frames with a known motion)."""
