"""The Hydra config tree (a package so that ``pkg://flossrepro.conf`` finds it when installed)."""
