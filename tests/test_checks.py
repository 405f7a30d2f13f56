"""ptlab.checks: right answers pass, wrong ones fail with a message that says where, fakes cannot pass."""

import json
from json import dumps as json_dumps

import pytest
import torch

from ptlab import checks


class AlwaysEqual:
    def __eq__(self, other):
        return True

    def __bool__(self):
        return True


class LyingTensor(torch.Tensor):
    def __eq__(self, other):
        return torch.ones_like(torch.Tensor(self), dtype=torch.bool)


def test_assert_close_accepts_values_within_float32_tolerance():
    x = torch.randn(4, 5)
    checks.assert_close(x + 1e-7, x)


def test_assert_close_reports_count_largest_error_and_index():
    expected = torch.zeros(2, 3)
    actual = expected.clone()
    actual[1, 2] = 0.5
    with pytest.raises(AssertionError, match=r"1 of 6 values differ.*largest error 0.5 at index \(1, 2\)"):
        checks.assert_close(actual, expected, "probs")


def test_assert_close_names_shape_and_dtype_mismatches():
    with pytest.raises(AssertionError, match=r"expected shape \(2, 3\), got \(3, 2\)"):
        checks.assert_close(torch.zeros(3, 2), torch.zeros(2, 3))
    with pytest.raises(AssertionError, match="expected dtype torch.float32, got torch.float64"):
        checks.assert_close(torch.zeros(2, dtype=torch.float64), torch.zeros(2))


def test_assert_close_rejects_none_with_a_hint_about_return():
    with pytest.raises(AssertionError, match="forget a `return`"):
        checks.assert_close(None, torch.zeros(2))


def test_a_tensor_subclass_with_a_lying_eq_cannot_pass():
    fake = torch.zeros(3).as_subclass(LyingTensor)
    with pytest.raises(AssertionError, match="subclass"):
        checks.assert_close(fake, torch.ones(3))
    with pytest.raises(AssertionError, match="subclass"):
        checks.assert_equal(fake, torch.ones(3))


def test_an_object_whose_eq_always_says_yes_cannot_pass():
    for expected in (3, "abc", [1, 2], (1,), {"a": 1}):
        with pytest.raises(AssertionError, match="expected"):
            checks.assert_equal(AlwaysEqual(), expected)
    with pytest.raises(AssertionError, match="expected a number"):
        checks.assert_close(AlwaysEqual(), 1.0)
    with pytest.raises(AssertionError):
        checks.assert_true(AlwaysEqual(), "a truthy object is not True")


def test_nan_where_a_number_is_expected_fails_and_matching_nans_pass():
    with pytest.raises(AssertionError, match="NaN"):
        checks.assert_close(torch.tensor([1.0, float("nan")]), torch.tensor([1.0, 2.0]))
    checks.assert_close(torch.tensor([float("nan"), float("inf")]), torch.tensor([float("nan"), float("inf")]))


def test_python_numbers_compare_with_numbers_and_zero_dim_tensors():
    checks.assert_close(0.5, 0.5)
    checks.assert_close(torch.tensor(0.5), 0.5)
    with pytest.raises(AssertionError, match="got 0.6"):
        checks.assert_close(0.6, 0.5)


def test_assert_equal_points_into_nested_containers():
    with pytest.raises(AssertionError, match=r"counts\['b'\]\[1\]: expected 3, got 4"):
        checks.assert_equal({"a": [1], "b": [2, 4]}, {"a": [1], "b": [2, 3]}, "counts")


def test_assert_equal_accepts_numpy_integers_for_ints_but_not_strings():
    np = pytest.importorskip("numpy")
    checks.assert_equal(np.int64(3), 3)
    with pytest.raises(AssertionError, match="expected int, got str"):
        checks.assert_equal("3", 3)


def test_assert_raises_passes_on_the_right_error_and_explains_the_others():
    def bad(x):
        if x < 0:
            raise ValueError("x should be >= 0, got -1")
        if x == 0:
            raise TypeError("zero")
        return x

    assert checks.assert_raises(ValueError, bad, -1, match="should be") is None  # no value: see docstring
    with pytest.raises(AssertionError, match="returned normally"):
        checks.assert_raises(ValueError, bad, 1)
    with pytest.raises(AssertionError, match="raised TypeError"):
        checks.assert_raises(ValueError, bad, 0)
    with pytest.raises(AssertionError, match="does not mention"):
        checks.assert_raises(ValueError, bad, -1, match="shape")


def test_replacing_binds_names_for_a_block_and_restores_them_even_after_an_error():
    namespace = {"collate": "yours"}
    with checks.replacing(namespace, collate="reference", extra=1):
        assert namespace == {"collate": "reference", "extra": 1}
    assert namespace == {"collate": "yours"}
    with pytest.raises(AssertionError), checks.replacing(namespace, collate="reference"):
        raise AssertionError("a failing test inside the block")
    assert namespace == {"collate": "yours"}


# assert_written_in_torch: a function that reaches the library its test compares with fails, whatever the route.
# The import forms are read from the compiled code only (never run), so "bitsandbytes" need not be importable;
# the routes through bound objects use a module every Python has (json).


def _imports_a_dotted_name_in_its_body():
    from bitsandbytes.functional import get_4bit_type

    return get_4bit_type("nf4")


def _imports_a_submodule_as_an_alias():
    import bitsandbytes.functional as F

    return F.get_4bit_type("nf4")


def _imports_inside_a_nested_function():
    def inner():
        from bitsandbytes import functional

        return functional

    return [inner() for _ in range(1)]


def _imports_by_name_at_run_time():
    import importlib

    return importlib.import_module("bitsandbytes").functional


def _calls_a_global_bound_to_the_library(x):
    return json_dumps(x)


def _reaches_it_through_a_helper(x):
    return _calls_a_global_bound_to_the_library(x)


def _takes_it_as_a_default_argument(x, encode=json.dumps):
    return encode(x)


def _closure_over_the_library():
    encode = json.dumps
    return lambda x: encode(x)


def _written_in_torch(x):
    """Quantizes like bitsandbytes does, without it (a docstring may name the library)."""
    import math

    note = "bitsandbytes-free"  # a string that only starts like the library's name
    return torch.round(x * math.pi), note


@pytest.mark.parametrize(
    "fn, route",
    [
        (_imports_a_dotted_name_in_its_body, "import bitsandbytes.functional"),
        (_imports_a_submodule_as_an_alias, "import bitsandbytes.functional"),
        (_imports_inside_a_nested_function, "import bitsandbytes"),
        (_imports_by_name_at_run_time, "import_module"),
    ],
)
def test_library_uses_sees_imports_in_the_body_dotted_nested_and_dynamic(fn, route):
    assert route in checks.library_uses(fn, "bitsandbytes")
    with pytest.raises(AssertionError, match=f"{fn.__name__} uses bitsandbytes .*{route}"):
        checks.assert_written_in_torch(fn, library="bitsandbytes")


def test_library_uses_sees_globals_helpers_defaults_and_closures_bound_to_the_library():
    assert checks.library_uses(_calls_a_global_bound_to_the_library, "json") == ["json_dumps"]
    assert checks.library_uses(_reaches_it_through_a_helper, "json") == ["json_dumps"]
    assert checks.library_uses(_takes_it_as_a_default_argument, "json") == ["default argument #0"]
    assert checks.library_uses(_closure_over_the_library(), "json") == ["encode"]
    # a helper named in `skip` (an exercise with its own test) is not followed
    assert checks.library_uses(_reaches_it_through_a_helper, "json",
                               skip={"_calls_a_global_bound_to_the_library"}) == []


def test_a_function_written_in_torch_passes_even_with_local_imports_and_the_name_in_a_string():
    for library in ("bitsandbytes", "json", "bits"):
        assert checks.library_uses(_written_in_torch, library) == []
    checks.assert_written_in_torch(_written_in_torch, torch.round, library="bitsandbytes")


def test_fake_accelerator_fails_a_cpu_tensor_mixed_with_the_inputs_as_cuda_would():
    hidden = torch.randn(2, 5, 3)
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 1, 1, 1, 1]])

    def last_index(on_device: bool) -> torch.Tensor:
        positions = torch.arange(5, device=mask.device) if on_device else torch.arange(5)
        return torch.where(mask.bool(), positions, -1).max(-1).values

    with checks.FakeAccelerator():
        with pytest.raises(RuntimeError, match="same device"):
            last_index(on_device=False)
        last = last_index(on_device=True)
        picked = hidden[torch.arange(2), last]  # a CPU index tensor into a GPU tensor: allowed on CUDA
        moved = torch.arange(5).to(mask.device) + mask  # moved with .to: on the inputs' device
        scaled = hidden * torch.tensor(2.0)  # a 0-d CPU tensor: allowed on CUDA
    assert last.tolist() == [2, 4] and picked.shape == (2, 3) and moved.shape == (2, 5) and scaled.shape == hidden.shape
