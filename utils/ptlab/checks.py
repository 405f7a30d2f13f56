"""Test helpers for notebooks: a wrong answer becomes a message a student can act on.

Every helper checks the *type* first and exactly (`type(x) is torch.Tensor`, `type(x) is int`), so an
object whose `__eq__` always answers yes, or a tensor subclass that overrides comparisons, fails with a
clear message instead of passing. Values are compared from the expected side, with torch's own kernels.
Tolerances default to `torch.testing.assert_close`'s per-dtype values.
"""

from __future__ import annotations

import dis
import math
import types
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves

# torch.testing.assert_close's defaults (rtol, atol) per dtype.
_DEFAULT_TOL = {
    torch.float16: (1e-3, 1e-5),
    torch.bfloat16: (1.6e-2, 1e-5),
    torch.float32: (1.3e-6, 1e-5),
    torch.float64: (1e-7, 1e-7),
}


class CheckFailed(AssertionError):
    """A test found a wrong answer. Jupyter shows it as the failing line of the test cell and the message,
    without the frames inside this module (IPython calls `_render_traceback_` when an exception has one)."""

    def _render_traceback_(self) -> list[str]:
        import traceback

        # The frames of this module are not the student's business; the line that called it is.
        frames = [f for f in traceback.extract_tb(self.__traceback__) if f.filename != __file__]
        where = [f"line {f.lineno}: {f.line}" for f in frames[-1:] if f.line]
        return [*where, f"\x1b[0;31m{type(self).__name__}\x1b[0m: {self}"]


def _fail(name: str, message: str) -> None:
    raise CheckFailed(f"{name}: {message}")


def check_tensor(actual: Any, name: str = "result") -> torch.Tensor:
    """Fail unless `actual` is a plain `torch.Tensor` (not a subclass, not a NumPy array, not None)."""
    if type(actual) is not torch.Tensor:
        hint = " Did you forget a `return`?" if actual is None else ""
        if isinstance(actual, torch.Tensor):
            hint = " Return a plain tensor (a subclass is not accepted); try `.as_subclass(torch.Tensor)`."
        _fail(name, f"expected a torch.Tensor, got {type(actual).__name__}.{hint}")
    return actual


def assert_shape(actual: Any, shape: Sequence[int], name: str = "result") -> None:
    """Fail unless `actual` is a tensor of exactly `shape`."""
    t = check_tensor(actual, name)
    if tuple(t.shape) != tuple(shape):
        _fail(name, f"expected shape {tuple(shape)}, got {tuple(t.shape)}.")


def assert_dtype(actual: Any, dtype: torch.dtype, name: str = "result") -> None:
    """Fail unless `actual` is a tensor of `dtype`."""
    t = check_tensor(actual, name)
    if t.dtype != dtype:
        _fail(name, f"expected dtype {dtype}, got {t.dtype}.")


def assert_close(
    actual: Any,
    expected: torch.Tensor | float | int,
    name: str = "result",
    rtol: float | None = None,
    atol: float | None = None,
    check_dtype: bool = True,
) -> None:
    """Fail unless `actual` matches `expected` in type, shape, dtype and values (within rtol, atol).

    A Python number `expected` asks for a Python number (or a 0-d tensor) back. On a mismatch the
    message names the number of wrong elements, the largest error and where it is.
    """
    if isinstance(expected, (int, float)) and not isinstance(expected, bool):
        if type(actual) in (int, float):
            actual = torch.tensor(float(actual), dtype=torch.float64)
        elif type(actual) is torch.Tensor and actual.numel() == 1:
            actual = actual.detach().reshape(()).to(torch.float64)
        else:
            _fail(name, f"expected a number, got {type(actual).__name__}.")
        expected = torch.tensor(float(expected), dtype=torch.float64)
        check_dtype = False
    t = check_tensor(actual, name)
    expected = expected.detach()
    if tuple(t.shape) != tuple(expected.shape):
        _fail(name, f"expected shape {tuple(expected.shape)}, got {tuple(t.shape)}.")
    if check_dtype and t.dtype != expected.dtype:
        _fail(name, f"expected dtype {expected.dtype}, got {t.dtype}.")
    a = t.detach().to("cpu", torch.float64)
    e = expected.to("cpu", torch.float64)
    default_rtol, default_atol = _DEFAULT_TOL.get(expected.dtype, (0.0, 0.0))
    rtol = default_rtol if rtol is None else rtol
    atol = default_atol if atol is None else atol
    nan_mismatch = torch.isnan(a) != torch.isnan(e)
    if bool(nan_mismatch.any()):
        where = tuple(int(i) for i in nan_mismatch.nonzero()[0])
        _fail(name, f"NaN where none was expected (or the reverse), first at index {where}.")
    both = torch.isnan(a) & torch.isnan(e)
    err = (a - e).abs().masked_fill(both, 0.0)
    err = torch.where(a == e, torch.zeros_like(err), err)  # equal infinities are a match
    bad = err > atol + rtol * e.abs()
    if bool(bad.any()):
        flat = int(err.reshape(-1).argmax()) if err.numel() else 0
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), err.shape)) if err.dim() else ()
        _fail(
            name,
            f"{int(bad.sum())} of {bad.numel()} values differ (rtol={rtol:g}, atol={atol:g}); "
            f"largest error {float(err.reshape(-1)[flat]):.4g} at index {index}: "
            f"got {float(a.reshape(-1)[flat]):.6g}, expected {float(e.reshape(-1)[flat]):.6g}.",
        )


def assert_equal(actual: Any, expected: Any, name: str = "result") -> None:
    """Exact equality for Python values (int, float, str, bool, None, tuples, lists, dicts) and tensors.

    The type must match exactly; containers are compared element by element so the message says where.
    """
    if isinstance(expected, torch.Tensor):
        t = check_tensor(actual, name)
        if tuple(t.shape) != tuple(expected.shape):
            _fail(name, f"expected shape {tuple(expected.shape)}, got {tuple(t.shape)}.")
        if t.dtype != expected.dtype:
            _fail(name, f"expected dtype {expected.dtype}, got {t.dtype}.")
        diff = t.detach().cpu() != expected.detach().cpu()
        if bool(diff.any()):
            where = tuple(int(i) for i in diff.nonzero()[0])
            _fail(
                name,
                f"{int(diff.sum())} of {diff.numel()} elements differ; first at index {where}: "
                f"got {t.detach().cpu()[where].item()}, expected {expected.detach().cpu()[where].item()}.",
            )
        return
    # bool is a subclass of int and numpy ints are not ints: accept those, reject everything else.
    number_types = (int, float)
    if type(expected) in number_types and type(actual) is not type(expected):
        if not (type(actual) in number_types or type(actual).__module__ == "numpy"):
            _fail(name, f"expected {type(expected).__name__}, got {type(actual).__name__}.")
        actual = type(expected)(actual)
    elif type(actual) is not type(expected):
        _fail(name, f"expected {type(expected).__name__}, got {type(actual).__name__}.")
    if isinstance(expected, Mapping):
        if set(actual.keys()) != set(expected.keys()):
            _fail(name, f"expected keys {sorted(map(str, expected))}, got {sorted(map(str, actual))}.")
        for key in expected:
            assert_equal(actual[key], expected[key], f"{name}[{key!r}]")
        return
    if isinstance(expected, (list, tuple)):
        if len(actual) != len(expected):
            _fail(name, f"expected length {len(expected)}, got {len(actual)}.")
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_equal(a, e, f"{name}[{i}]")
        return
    if isinstance(expected, float) and math.isnan(expected) and math.isnan(actual):
        return
    if not (expected == actual):
        _fail(name, f"expected {expected!r}, got {actual!r}.")


def assert_raises(
    exception: type[BaseException], fn: Callable[..., Any], *args: Any, match: str | None = None, **kwargs: Any
) -> None:
    """Fail unless `fn(*args, **kwargs)` raises `exception` (whose message contains `match`, if given).

    Returns None on purpose: a test cell whose last line is this call must show no value, since nbgrader
    reads a test cell's displayed value as partial credit.
    """
    call = f"{getattr(fn, '__name__', 'function')}(...)"
    try:
        fn(*args, **kwargs)
    except exception as err:
        if match is not None and match.lower() not in str(err).lower():
            _fail(call, f"raised {exception.__name__} as expected, but its message {str(err)!r} does not mention {match!r}.")
        return
    except Exception as err:  # noqa: BLE001 - the student's wrong exception is the message
        _fail(call, f"expected {exception.__name__}, but it raised {type(err).__name__}: {err}")
    _fail(call, f"expected it to raise {exception.__name__} for this input, but it returned normally.")


def assert_true(condition: Any, message: str) -> None:
    """Fail with `message` unless `condition` is exactly True (a truthy object is not enough)."""
    if isinstance(condition, torch.Tensor) and type(condition) is torch.Tensor and condition.numel() == 1:
        condition = bool(condition.item())
    if condition is not True:
        raise CheckFailed(message)


@contextmanager
def replacing(namespace: dict[str, Any], **names: Any) -> Iterator[None]:
    """Bind `names` in `namespace` (a notebook's `globals()`) for the duration of a block, then restore them.

    A test of one exercise uses it to run the student's function with reference versions of the other
    exercises' functions it calls, so that one mistake costs one exercise. A name that was unbound before is
    removed again afterwards.
    """
    missing = object()
    saved = {name: namespace.get(name, missing) for name in names}
    namespace.update(names)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is missing:
                namespace.pop(name, None)
            else:
                namespace[name] = value


# Names through which code imports a module whose name it holds as a string.
_DYNAMIC_IMPORTS = frozenset({"__import__", "import_module"})


def _from_library(obj: Any, library: str) -> bool:
    """True if `obj` is module `library` (or a submodule), or a function or class defined in one."""
    name = obj.__name__ if isinstance(obj, types.ModuleType) else getattr(obj, "__module__", None)
    return isinstance(name, str) and name.split(".")[0] == library


def _code_objects(code: types.CodeType) -> Iterator[types.CodeType]:
    """`code` and every code object nested in it (inner functions, lambdas, comprehensions)."""
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def library_uses(fn: Callable, library: str, skip: Collection[str] = (), _seen: set | None = None) -> list[str]:
    """The ways `fn` reaches module `library` (a top-level name such as "bitsandbytes"); [] if none.

    A static check: making the library raise while a test runs is not enough (a name bound before the test
    keeps the real function), so this reads the compiled code of `fn` and of every function nested in it:
    each `import` / `from ... import` statement (dotted names and imports inside the body included, read
    from the IMPORT_NAME instructions), `__import__` / `import_module` calls and string constants naming the
    library, and what each global name, closure variable and default argument is bound to. Helpers defined
    in `fn`'s module are followed recursively, except those named in `skip` (exercises with their own test).
    """
    seen = set() if _seen is None else _seen
    if fn in seen or not isinstance(fn, types.FunctionType):
        return []
    seen.add(fn)
    used, names = set(), set()
    for code in _code_objects(fn.__code__):
        names.update(code.co_names)
        for ins in dis.get_instructions(code):
            if ins.opname == "IMPORT_NAME" and ins.argval.split(".")[0] == library:
                used.add(f"import {ins.argval}")
        used.update(repr(c) for c in code.co_consts
                    if isinstance(c, str) and (c == library or c.startswith(library + ".")))
    used.update(names & _DYNAMIC_IMPORTS)
    bound = {name: fn.__globals__[name] for name in names if name in fn.__globals__}
    for i, cell in enumerate(fn.__closure__ or ()):
        try:
            bound[fn.__code__.co_freevars[i]] = cell.cell_contents
        except ValueError:  # an empty cell: a name not bound yet
            pass
    defaults = list(fn.__defaults__ or ()) + list((fn.__kwdefaults__ or {}).values())
    bound.update((f"default argument #{i}", value) for i, value in enumerate(defaults))
    for name, value in sorted(bound.items(), key=lambda item: item[0]):
        if _from_library(value, library):
            used.add(name)
        elif isinstance(value, types.FunctionType) and value.__module__ == fn.__module__ and name not in skip:
            used.update(library_uses(value, library, skip, seen))
    return sorted(used)


def assert_written_in_torch(*functions: Callable, library: str, skip: Collection[str] = ()) -> None:
    """Fail unless no function here reaches `library`, the library the tests compare it with.

    `skip`: names of helpers not to follow (exercises that have their own test); see `library_uses`.
    """
    for fn in functions:
        used = library_uses(fn, library, skip)
        if used:
            raise AssertionError(
                f"{fn.__name__} uses {library} (through {', '.join(used)}): the exercise is to write it in torch; "
                f"{library} is only the reference the tests compare with"
            )


class FakeAccelerator(TorchFunctionMode):
    """Run code on the CPU as if its tensor inputs were on a GPU, to find tensors made on the wrong device.

    Inside `with FakeAccelerator():` a tensor made by a factory (torch.arange, torch.zeros, torch.tensor, ...)
    without `device=`, or by `.cpu()`, is a "CPU" tensor, and so is any result computed from CPU tensors alone.
    Every other tensor (the inputs, a module's weights, one made with `device=x.device`, moved with `.to(...)`
    or computed from those) is on the "GPU". As on CUDA, an op that mixes the two raises, except with 0-d CPU
    tensors and with CPU index tensors (`gpu_tensor[cpu_index]` works on CUDA).
    """

    FACTORIES = {torch.arange, torch.zeros, torch.ones, torch.full, torch.empty, torch.tensor, torch.as_tensor,
                 torch.linspace, torch.eye, torch.rand, torch.randn, torch.randint, torch.randperm,
                 torch.tril_indices, torch.triu_indices, torch.scalar_tensor}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        on_cpu = [getattr(t, "_fake_cpu", False) for t in tensors]
        if func is torch.Tensor.__getitem__ and not on_cpu[0]:
            on_cpu = [False] * len(tensors)  # CUDA lets CPU index tensors index a GPU tensor
        if not all(on_cpu) and any(c and t.dim() > 0 for c, t in zip(on_cpu, tensors)):
            raise RuntimeError(f"{getattr(func, '__name__', func)}: expected all tensors to be on the same device, "
                               "but found a CPU tensor beside the inputs' GPU tensors (FakeAccelerator); create "
                               "tensors on the input's device, e.g. torch.arange(T, device=hidden_states.device)")
        out = func(*args, **kwargs)
        if func in self.FACTORIES:
            cpu = all(on_cpu) if tensors else "device" not in kwargs
        elif func is torch.Tensor.to:  # .to(device) or .to(other tensor) moves it to the GPU; .to(dtype) does not
            cpu = on_cpu[0] and not ("device" in kwargs or any(
                isinstance(a, (torch.device, str, torch.Tensor)) for a in args[1:]))
        elif func in (torch.Tensor.cuda, torch.Tensor.cpu):
            cpu = func is torch.Tensor.cpu
        else:
            cpu = bool(tensors) and all(on_cpu)
        if isinstance(out, torch.Tensor) and any(out is t for t in tensors) and getattr(out, "_fake_cpu", False) != cpu:
            out = out.view_as(out)  # .to and .cpu return their input when nothing moves: a new tensor for the new tag
        if cpu:
            for t in tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    t._fake_cpu = True
        return out
