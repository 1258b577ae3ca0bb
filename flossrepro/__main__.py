"""``python -m flossrepro [overrides]``: the ``flossrepro`` command (flossrepro.cli)."""
from flossrepro.cli import entry

if __name__ == "__main__":
    entry()
