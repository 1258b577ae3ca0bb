"""Running: the command line, sweeps, the launcher, the planner."""
