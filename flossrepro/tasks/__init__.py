"""Tasks: the flossing paper's (paper) and the low-rank study's (lowrank)."""
