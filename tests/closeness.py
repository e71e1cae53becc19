"""One comparison of two gradient dictionaries, for the tests of the closed-form paths."""


def assert_close(got: dict, want: dict, rtol: float) -> None:
    """Same keys, and each entry within ``rtol`` of the largest magnitude of the wanted one."""
    assert got.keys() == want.keys()
    for name in want:
        scale = float(want[name].abs().max())
        error = float((got[name] - want[name]).abs().max())
        assert error <= rtol * max(scale, 1e-300), (name, error, scale)
