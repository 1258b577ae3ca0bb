"""``python -m flossrepro [overrides]``: the ``flossrepro`` command (flossrepro.run.cli)."""
from flossrepro.run.cli import entry

if __name__ == "__main__":
    entry()
