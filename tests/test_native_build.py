"""Where a C compiler exists, the native kernels must build and load: a broken build would
otherwise only show as skipped native tests and a slower engine."""
import pytest

from flossrepro.engine import native


def test_native_kernels_build_where_a_compiler_exists():
    if native._compiler() is None:
        pytest.skip("no C compiler here: the PyTorch path is used")
    assert native.enabled(), native.status()
