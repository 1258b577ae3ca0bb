"""Reports: aggregation of a sweep, the claims report."""
