"""snagkg.runtime.compilation.CompiledFunction: a compiler failure for one input signature falls back to the
eager function for that signature only; one before any success switches compilation off; the inputs' own
errors are raised as they are."""
import pytest
import torch

from snagkg.runtime import compilation


class _FlakyCompiled:
    """Stands in for torch.compile's output: fails for inputs of one row, counts its calls."""

    def __init__(self, fail_always=False):
        self.calls, self.fail_always = 0, fail_always

    def __call__(self, x):
        self.calls += 1
        if self.fail_always or x.shape[0] == 1:
            raise RuntimeError("codegen failed\nsecond line")
        return x * 2 + 1  # not fn's result: shows which path answered


def test_compiled_failure_for_one_signature_keeps_the_others_compiled(caplog):
    cf = compilation.CompiledFunction(lambda x: x * 2, "flaky")
    cf.compiled = fake = _FlakyCompiled()
    assert torch.equal(cf(torch.ones(4)), torch.full((4,), 3.0))  # compiled
    with caplog.at_level("WARNING", logger="snagkg"):
        assert torch.equal(cf(torch.ones(1)), torch.full((1,), 2.0))  # failed: the eager result
    assert "failed for inputs" in caplog.text and "codegen failed" in caplog.text and "second line" not in caplog.text
    calls = fake.calls
    assert torch.equal(cf(torch.ones(1)), torch.full((1,), 2.0)) and fake.calls == calls  # not retried
    assert torch.equal(cf(torch.ones(7)), torch.full((7,), 3.0)) and fake.calls == calls + 1  # still compiled
    assert cf.available() and not cf.failed


def test_compiled_failure_before_any_success_switches_compilation_off():
    cf = compilation.CompiledFunction(lambda x: x * 2, "broken")
    cf.compiled = fake = _FlakyCompiled(fail_always=True)
    assert torch.equal(cf(torch.ones(3)), torch.full((3,), 2.0))
    assert cf.failed and not cf.available()
    assert torch.equal(cf(torch.ones(5)), torch.full((5,), 2.0)) and fake.calls == 1


def test_compiled_function_raises_the_inputs_own_errors():
    """An error the eager function raises too (bad inputs) is the caller's, not a compiler failure."""
    cf = compilation.CompiledFunction(lambda x: x.view(3, 3), "shape")
    cf.compiled = lambda x: x.view(3, 3)
    with pytest.raises(RuntimeError):
        cf(torch.ones(4))
    assert not cf.failed and not cf.failed_signatures
