"""Standalone source: the numpy backend's printed plan as a Python module that imports numpy
and math (and scipy for the few ops that need it), never symdiff.

The module holds the same straight-line function ``sd.compile`` runs (``f.source``), the
forwards of the ops it calls, copied from symdiff with what they use, the array constants,
and the input checks and the IEEE fallback of the numpy backend: for the same inputs it
returns the same bits as ``sd.compile(outputs, inputs)``.
"""

from __future__ import annotations

import ast
import dis
import functools
import inspect
import math
import re
import sys
import textwrap
import types
from collections.abc import Sequence
from typing import Any

import numpy as np

import symdiff.scalar as sx
from symdiff._version import __version__
from symdiff.backends.base import Compiled, as_outputs, resolve_inputs, sparse_outputs
from symdiff.backends.numpy import LOOPS, _call, arguments, body_names, function, generate, loop_lines
from symdiff.backends.numpy import _literal as _scalar_literal
from symdiff.errors import DTypeError, GraphError, ShapeError
from symdiff.graph import Node, Region, ancestors, format_shape
from symdiff.ops import REGISTRY
from symdiff.plan import Plan, wanted_outputs

_BUILTINS = frozenset(dir(__import__("builtins")))
_LITERALS = (int, float, bool, str, bytes, type(None))


def _is_symdiff(obj: Any) -> bool:
    return (getattr(obj, "__module__", "") or "").split(".")[0] == "symdiff"


class Emitter:
    """Definitions copied from symdiff (functions, classes, constants) and the imports they need."""

    def __init__(self) -> None:
        self.imports: dict[str, str] = {"np": "import numpy as np", "_math": "import math as _math"}
        self.defs: dict[str, str] = {}
        self._origin: dict[str, Any] = {}

    def name(self, obj: Any, name: str | None = None) -> str:
        """The name under which ``obj`` (a function, class, module or literal) exists in the module."""
        if isinstance(obj, types.ModuleType):
            return self._module(obj, name or obj.__name__.split(".")[-1])
        if isinstance(obj, (types.FunctionType, type)) and _is_symdiff(obj):
            return self._copy(obj, name or obj.__name__)
        label = getattr(obj, "__name__", None)
        if label and getattr(np, label, None) is obj:
            return f"np.{label}"  # numpy's own function (a ufunc, an array-function dispatcher)
        if isinstance(obj, (types.FunctionType, types.BuiltinFunctionType, type, np.ufunc, functools.cached_property)):
            module = getattr(obj, "__module__", None) or "numpy"
            label = name or obj.__name__
            if module.split(".")[0] in ("numpy", "scipy", "math", "functools", "builtins"):
                self.imports.setdefault(label, f"from {module} import {obj.__name__} as {label}")
                return label
        raise GraphError(f"to_source: cannot write {obj!r} into a standalone module")

    def _module(self, module: types.ModuleType, name: str) -> str:
        if _is_symdiff(module) or module.__name__.startswith("symdiff"):
            raise GraphError(f"to_source: a forward uses the symdiff module {module.__name__}")
        self.imports.setdefault(name, f"import {module.__name__} as {name}")
        return name

    def _claim(self, name: str, obj: Any) -> bool:
        """True if ``name`` is free for ``obj`` (or already holds it)."""
        if name in self._origin:
            if self._origin[name] is not obj:
                raise GraphError(f"to_source: two different definitions named {name!r}")
            return False
        self._origin[name] = obj
        return True

    def _copy(self, obj: Any, name: str) -> str:
        if not self._claim(name, obj):
            return name
        code_objects = []
        if isinstance(obj, type):
            source = textwrap.dedent(inspect.getsource(obj))
            module_globals = vars(sys.modules[obj.__module__])
            for value in vars(obj).values():
                fn = getattr(value, "func", value)  # cached_property keeps the function in .func
                if isinstance(fn, types.FunctionType):
                    code_objects.append((fn.__code__, fn.__globals__))
            # the class body's own names (decorators, bases): read from its source
            body = {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name)}
            code_objects.append((None, {k: module_globals[k] for k in body if k in module_globals}))
        else:
            source = _function_source(obj, name)
            code_objects.append((obj.__code__, obj.__globals__))
            if obj.__closure__:
                raise GraphError(f"to_source: {obj.__qualname__} closes over local values")
        for code, globals_ in code_objects:  # a name taken (_claim) ends a cycle
            for ref in sorted(_global_names(code) if code is not None else globals_):
                if ref in globals_ and ref not in _BUILTINS:
                    self._dependency(ref, globals_[ref])
        self.defs[name] = source  # after its dependencies: a class's bases must exist first
        return name

    def _dependency(self, ref: str, value: Any) -> None:
        if isinstance(value, _LITERALS) or (isinstance(value, (tuple, frozenset)) and _plain(value)):
            if self._claim(ref, value):
                self.defs[ref] = f"{ref} = {value!r}\n"
            return
        try:
            self.name(value, ref)
        except GraphError:
            if not _is_symdiff(value):  # a name the code uses as an attribute only (x.shape)
                return
            raise


def _plain(value: Any) -> bool:
    return all(isinstance(v, _LITERALS) or (isinstance(v, tuple) and _plain(v)) for v in value)


def _global_names(code: types.CodeType) -> set[str]:
    """Names the code reads as globals (not attributes: ``xp.exp`` is no use of a global exp)."""
    names = {i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _global_names(const)
    return names


def _function_source(fn: types.FunctionType, name: str) -> str:
    if fn.__name__ != "<lambda>":
        source = textwrap.dedent(inspect.getsource(fn))
        if fn.__name__ != name:
            source += f"\n{name} = {fn.__name__}\n"
        return source
    # a lambda inside a define_op call: its own text, found by its line and parameters
    lines, start = inspect.findsource(fn)
    tree = ast.parse("".join(lines))
    params = fn.__code__.co_varnames[: fn.__code__.co_argcount]
    found = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Lambda)
        and node.lineno == fn.__code__.co_firstlineno
        and tuple(a.arg for a in node.args.args) == params
    ]
    if len(found) != 1:
        raise GraphError(f"to_source: cannot find the source of a lambda at line {fn.__code__.co_firstlineno}")
    return f"{name} = {ast.get_source_segment(''.join(lines), found[0])}\n"


def _literal(value: Any, emitter: Emitter) -> str:
    """Python source that makes ``value`` (an attribute or a constant) in the emitted module."""
    if isinstance(value, types.ModuleType):
        return emitter.name(value, "np" if value is np else None)
    if isinstance(value, _LITERALS):
        return repr(value) if not isinstance(value, float) or math.isfinite(value) else f"float({str(value)!r})"
    if isinstance(value, tuple):
        inner = ", ".join(_literal(v, emitter) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v, emitter) for v in value) + "]"
    if isinstance(value, slice):
        return (
            f"slice({_literal(value.start, emitter)}, {_literal(value.stop, emitter)}, {_literal(value.step, emitter)})"
        )
    if value is Ellipsis:
        return "Ellipsis"
    if isinstance(value, np.dtype):
        return f"np.dtype({value.str!r})"
    if isinstance(value, (np.ndarray, np.generic)):
        return _array_literal(np.asarray(value), emitter)
    if _is_symdiff(type(value)) and hasattr(value, "key"):  # a static Index
        return f"{emitter.name(type(value))}({_literal(value.key, emitter)})"
    raise GraphError(f"to_source: cannot write the value {value!r} into a standalone module")


def _array_literal(arr: np.ndarray, emitter: Emitter) -> str:
    """Source making exactly ``arr``: its shape (0-d, zero-length axes), dtype and every bit
    (-0.0, nan payloads): a fill of one repeated bit pattern, a short list of finite
    numbers, or else its bytes."""
    dtype, shape = arr.dtype.str, arr.shape
    flat = np.ascontiguousarray(arr).reshape(-1)  # a 0-d array becomes (1,) here, never in the module
    cells = flat.view(np.uint8).reshape(flat.size, arr.dtype.itemsize)
    finite = arr.dtype.kind != "f" or bool(np.isfinite(flat).all())
    if arr.ndim == 1 and arr.size > 2 and arr.dtype.kind in "iu" and (np.diff(arr) == 1).all():
        # a loop's index (fori_loop's): as long as the loop, made by its bounds
        return f"np.arange({int(arr[0])}, {int(arr[-1]) + 1}, dtype={dtype!r})"
    if flat.size > 1 and finite and (cells == cells[:1]).all():
        return f"np.full({shape!r}, {_literal(flat[0].item(), emitter)}, dtype={dtype!r})"
    if flat.size <= 64 and finite and arr.dtype.kind in "biuf":
        return f"np.array({flat.tolist()!r}, dtype={dtype!r}).reshape({shape!r})"
    return f"np.frombuffer({flat.tobytes()!r}, dtype={dtype!r}).reshape({shape!r})"


def _callable(value: Any, emitter: Emitter, name: str) -> str:
    """Source defining ``name`` as the callable the generated code calls under it."""
    if isinstance(value, functools.partial):
        fn, args = value.func, value.args
        inner = getattr(fn, "__closure__", None)
        if inner and fn.__code__.co_freevars == ("forward",) and args and args[0] is np:
            fn, args = inner[0].cell_contents, args[1:]  # a numpy-only forward: called without xp
        parts = [emitter.name(fn, f"_fwd{name}" if fn.__name__ == "<lambda>" else None)]
        parts += [_literal(a, emitter) for a in args]
        parts += [f"{k}={_literal(v, emitter)}" for k, v in value.keywords.items()]
        emitter.imports.setdefault("functools", "import functools")
        return f"{name} = functools.partial({', '.join(parts)})\n"
    return f"{name} = {emitter.name(value)}\n"


_CHECK = '''
def _check(value, *inputs, op, declared, declared_inputs, variables, shape_rule=None, attrs=None):
    """A None dimension must not be broadcast (as symdiff's compiled code checks)."""
    shape = np.shape(value)
    if len(shape) != len(declared) or any(d is not None and d != s for d, s in zip(declared, shape)):
        raise ShapeError(f"{op} produced shape {shape}, but its static shape is {declared}{variables}")
    shapes = [np.shape(u) for u in inputs]
    if shape_rule is None:  # an elementwise op
        for k, (ushape, d) in enumerate(zip(shapes, declared_inputs)):
            for axis in range(-len(ushape), 0):
                if d[axis] is None and ushape[axis] != shape[axis]:
                    raise ShapeError(
                        f"{op}: input {k} has shape {ushape} and was broadcast to {shape}, but its declared "
                        f"dimension {axis} is None; a None dimension never broadcasts: declare it as 1 to "
                        f"broadcast it{variables}"
                    )
        return
    # another op (matmul's stack): its shape rule accepts the shapes with the declared 1s made
    # a size no value has, and refuses them once the 1s bound to None dimensions are too
    marks = [[(1_000_003 if n == 1 and d == 1 else n) for n, d in zip(s, ds)] for s, ds in zip(shapes, declared_inputs)]
    probed = [[(1_000_003 if n == 1 and d is None else m) for n, m, d in zip(s, ms, ds)]
              for s, ms, ds in zip(shapes, marks, declared_inputs)]
    if probed == marks:
        return
    try:
        shape_rule(*map(tuple, marks), **attrs)
    except Exception:
        return
    try:
        shape_rule(*map(tuple, probed), **attrs)
    except ShapeError:
        listed = ", ".join(str(s) for s in shapes)
        raise ShapeError(
            f"{op}: the values reaching it have shapes {listed}, and a dimension declared None, bound to 1, was "
            f"broadcast against another size; a None dimension never broadcasts: declare it as 1 to broadcast "
            f"it{variables}"
        ) from None
    except Exception:
        return


def _unfit(exc, op, variables, *values):
    """The error of a step that failed: a ShapeError if the values' shapes do not fit together."""
    if isinstance(exc, (ShapeError, np.linalg.LinAlgError)) or not isinstance(exc, ValueError):
        return exc
    listed = ", ".join(str(np.shape(v)) for v in values)
    return ShapeError(
        f"{op}: the values reaching it have shapes {listed}, which do not fit together ({exc}); check the sizes "
        f"bound to dimensions declared None{variables}"
    )
'''

_INPUT = '''
def _input(value, name, dtype, shape):
    """The value as an array of the variable's dtype, or an error naming the variable."""
    arr = np.asarray(value)
    if arr.dtype != dtype:
        if arr.dtype.kind not in "biuf" or not np.can_cast(arr.dtype, dtype, casting="same_kind"):
            raise DTypeError(f"variable {name!r} has dtype {dtype} but was bound to a {arr.dtype} value")
        arr = arr.astype(dtype)
    if arr.ndim != len(shape) or any(d is not None and d != s for d, s in zip(shape, arr.shape)):
        raise ShapeError(f"variable {name!r} has shape {shape} but was bound to a value of shape {arr.shape}")
    return arr


def _finish(value):
    if type(value) is float:
        return np.float64(value)
    arr = np.asarray(value)
    if arr.ndim == 0:
        return arr[()]
    return arr if arr.flags.writeable else arr.copy()
'''


_CSR = '''
def _csr(values, indices, indptr, shape):
    """A new scipy.sparse CSR matrix of the values on the pattern, with arrays of its own."""
    return scipy.sparse.csr_matrix((values, indices.copy(), indptr.copy()), shape=shape)

'''


def _sparse_positions(outputs: Any) -> dict[int, Any]:
    """The sparse derivatives among ``outputs`` (``sd.sparse_hessian``), by position."""
    from symdiff.sparse import SparseDerivative

    listed = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return {k: o for k, o in enumerate(listed) if isinstance(o, SparseDerivative)}


def _careful(
    plan: Plan, names: dict[Node, str], checks: set[Node], emitter: Emitter, defs: list[str], bodies: dict[Region, str]
) -> str:
    """The function again with each scalar step computed as ``sd.evaluate`` does: the op's scalar
    expression printed for ``math``, or numpy's IEEE result where it raises (log(0), 1/0,
    overflow); a body is run by its careful function (``bodies``), a loop's as the fast function
    runs it."""
    namespace: dict[str, Any] = {}
    lines = []
    wanted = wanted_outputs(plan.computed, plan.outputs)
    for step in plan.steps:
        n = step.node
        op = REGISTRY[n.op]
        args = arguments(n, names, step.strong)
        if step.scalar:
            helper = f"_scalar_{op.name}"
            params = [f"a{k}" for k in range(len(args))]
            if op.numpy is not None and "forward" in op.derived:
                slow = f"_np_{op.name} = np.{op.numpy}\n"
            else:
                slow = _callable(functools.partial(op.forward, np), emitter, f"_np_{op.name}")
            floats = ", ".join(f"np.float64({a})" for a in params)
            defs.append(slow)
            defs.append(
                f"\n\ndef {helper}({', '.join(params)}):\n"
                f"    try:\n        return {sx.to_python(op.scalar, params)}\n"
                "    except (ValueError, ZeroDivisionError, OverflowError):\n"
                f"        return _np_{op.name}({floats})[()]\n"
            )
            expr = f"{helper}({', '.join(args)})"
        elif n.op in LOOPS:
            called = [bodies[r] for r in n.regions]
            lines += loop_lines(n, f"t{n.index}", args, called, wanted.get(n), namespace)
            continue
        elif n.regions:
            expr = f"{bodies[n.regions[0]]}({', '.join(args)})"
        else:
            expr = _call(op, n, args, namespace)
        if not step.scalar and any(u.shape is not None and None in u.shape for u in n.inputs):
            # numpy's own refusal of sizes that do not fit, raised as the ShapeError symdiff raises
            lines.append(f"    try:\n        t{n.index} = {expr}\n    except Exception as exc:")
            lines.append(f"        raise _unfit(exc, {n.op!r}, {_variables(n)!r}, {', '.join(args)}) from exc")
        else:
            lines.append(f"    t{n.index} = {expr}")
        if n in checks:
            lines.append(f"    _check{n.index}(t{n.index}, {', '.join(args)})")
    result = ", ".join(names[n] for n in plan.outputs)
    body = "\n".join(lines) or "    pass"
    params = ", ".join(names[n] for n in plan.inputs)
    return f"def _compiled_careful({params}):\n{body}\n    return ({result},)\n"


def _variables(node: Node) -> str:
    """The end of an emitted shape error: the variables with None dimensions behind ``node``."""
    found = [v for v in ancestors([node]) if v.op == "variable" and None in v.shape]
    listed = ", ".join(f"{v.name or f'#{v.index}'!r} of shape {format_shape(v.shape)}" for v in found)
    return f"; it depends on the variable{'s' if len(found) > 1 else ''} {listed}" if found else ""


def _rename(source: str, names: dict[str, str], calls: bool = True) -> str:
    """``source`` with the names called (``calls``), or all names, renamed as ``names`` says."""
    if not names:
        return source
    end = r"(?=\()" if calls else r"(?!\w)"
    pattern = re.compile(r"(?<![\w.])(" + "|".join(map(re.escape, sorted(names, key=len, reverse=True))) + ")" + end)
    return pattern.sub(lambda m: names[m.group(1)], source)


def _names(plan: Plan, source: str) -> dict[Node, str]:
    """The names the generated function gives the plan's inputs, constants and steps."""
    signature = source[source.index("(") + 1 : source.index(")")].split(", ")
    names = dict(zip(plan.inputs, signature))
    for n in plan.leaves:
        if n not in names:
            names[n] = _scalar_literal(n.value) or f"_c{n.index}"
    for s in plan.steps:
        names[s.node] = f"t{s.node.index}"
    return names


def _function(
    plan: Plan,
    emitter: Emitter,
    defs: list[str],
    bodies: dict[Region, tuple[str, str, str]],
    name: str,
    careful_name: str,
    prefix: str = "",
) -> tuple[str, str]:
    """The plan printed as ``def <name>`` and its IEEE-careful twin ``def <careful_name>``; what
    they use is added to ``defs`` (and the bodies they call to ``bodies``). ``prefix`` makes a
    body's own names (its constants ``_c5``, checks, bound forwards) its own in the module."""
    checks = {s.node for s in plan.compiled_checks()}
    source, namespace = generate(plan, {n: None for n in checks}, compile_bodies=False)
    called = {local: _body(region, emitter, defs, bodies) for region, local in body_names(plan).items()}
    # the generated function's own names (_sum, _getitem9) are renamed _op_sum, _op_getitem9:
    # copied forwards keep their symdiff names (_logsumexp), which may be the same
    renamed = {k: f"_op{k}" for k, v in namespace.items() if callable(v) and not k.startswith("_check") and k != "np"}
    renamed.update({local: names[0] for local, names in called.items()})
    source = _rename(source, renamed)
    namespace = {renamed.get(k, k): v for k, v in namespace.items() if k not in called}
    # a body's names made of node numbers (_c5, _check5, _op_getitem9) are numbers of its own graph
    own = {k: f"{prefix}{k}" for k in namespace if prefix and k[-1].isdigit()}
    by_check = {own.get(f"_check{n.index}", f"_check{n.index}"): n for n in checks}
    namespace = {own.get(k, k): v for k, v in namespace.items()}
    for key in sorted(namespace):
        value = namespace[key]
        if key in ("np", "_math"):
            continue
        if key in by_check:
            node = by_check[key]
            emitter.imports.setdefault("functools", "import functools")
            rule = ""
            if not REGISTRY[node.op].elementwise:  # its shape rule, for the probe of a broadcast 1
                rule = f", shape_rule={emitter.name(REGISTRY[node.op].shape, f'_shape_{node.op}')}, attrs={{"
                rule += ", ".join(f"{k!r}: {_literal(v, emitter)}" for k, v in node._attrs) + "}"
            defs.append(
                f"{key} = functools.partial(_check, op={node.op!r}, declared={tuple(node.shape)!r}, "
                f"declared_inputs={tuple(tuple(u.shape) for u in node.inputs)!r}, "
                f"variables={_variables(node)!r}{rule})\n"
            )
        elif isinstance(value, (np.ndarray, np.generic)):
            defs.append(f"{key} = {_literal(value, emitter)}\n")
        else:
            defs.append(_callable(value, emitter, key))
    careful_bodies = {region: called[local][1] for region, local in body_names(plan).items()}
    careful = _careful(plan, _names(plan, source), checks, emitter, defs, careful_bodies)
    careful = _rename(_rename(careful, renamed), own, calls=False)
    source = _rename(source, own, calls=False).replace("def compiled(", f"def {name}(", 1)
    return source, careful.replace("def _compiled_careful(", f"def {careful_name}(", 1)


def _body(
    region: Region, emitter: Emitter, defs: list[str], bodies: dict[Region, tuple[str, str, str]]
) -> tuple[str, str]:
    """The names of the two functions (fast, careful) that run ``region`` in the module: printed
    once per body (a body and its derivative bodies each), however many nodes call it."""
    if region not in bodies:
        k = len(bodies)
        label = re.sub(r"\W+", "_", region.name).strip("_")  # scan_every(3): scan_every_3
        name = f"_body{k}_{label}"
        bodies[region] = (name, f"{name}_careful", "")
        plan = Plan(list(region.outputs), list(region.params), function)
        fast, careful = _function(plan, emitter, defs, bodies, name, f"{name}_careful", f"_b{k}")
        if not region.several:  # one output: its value, not a 1-tuple (as plan.body_function)
            fast, careful = (re.sub(r"return \((.*),\)\n$", r"return \1\n", text) for text in (fast, careful))
        bodies[region] = (name, f"{name}_careful", fast + "\n\n" + careful)
    return bodies[region][:2]


def to_source(outputs: Node | Sequence[Node], inputs: Sequence[Node | str] | None = None, name: str = "f") -> str:
    """A standalone Python module (as a string) defining ``<name>(<inputs>)``, which computes
    ``outputs`` (one value, or a list for a list of outputs).

    The module imports numpy and math (scipy where an op needs it: erf, triangular and
    Cholesky solves, expm), never symdiff, and returns the same bits as
    ``sd.compile(outputs, inputs)``: the same generated function, the same IEEE fallback.

    >>> g = sd.Graph(); x = g.variable("x")
    >>> src = sd.to_source(sd.grad(sd.sin(x) * x, x), [x], name="dfdx")
    >>> namespace = {}
    >>> exec(src, namespace)
    >>> print(namespace["dfdx"](0.5))
    0.9182168195493894
    """
    if not isinstance(name, str) or not name.isidentifier() or name in ("compiled", "np"):
        raise GraphError(f"to_source: name {name!r} is not a Python identifier free for the function")
    # the outputs and inputs resolved and checked as sd.compile does, and the same plan printed once
    outs, single = as_outputs(sparse_outputs(outputs)[0], "to_source")
    ins = resolve_inputs(outs, inputs, "to_source")
    sparse = _sparse_positions(outputs)
    plan = Plan(outs, ins, function)
    Compiled._check_bound(plan, "to_source")
    emitter = Emitter()
    defs: list[str] = []
    bodies: dict[Region, tuple[str, str, str]] = {}
    source, careful = _function(plan, emitter, defs, bodies, "compiled", "_compiled_careful")
    emitter.name(ShapeError)  # the module's own, a ValueError as symdiff's is (and DTypeError a TypeError)
    emitter.name(DTypeError)
    params = list(_names(plan, source)[n] for n in ins)
    prologue = []
    for node, param in zip(ins, params):
        check = f"_input({param}, {node.name or param!r}, np.dtype({node.dtype.str!r}), {tuple(node.shape)!r})"
        if node.shape == () and node.dtype == np.float64:
            prologue.append(f"    {param} = {param} if type({param}) is float else float({check})")
        else:
            prologue.append(f"    {param} = {check}")
    described = ", ".join(str(o) if len(str(o)) < 60 else f"{o.op}(...)" for o in outs)
    wrapper = (
        f"\n\ndef {name}({', '.join(params)}):\n"
        f'    """{described}"""\n' + "\n".join(prologue) + "\n"
        "    with np.errstate(all='ignore'):\n"
        "        try:\n"
        f"            raw = compiled({', '.join(params)})\n"
        "        except (ValueError, ZeroDivisionError, OverflowError):  # an IEEE edge in a scalar step\n"
        f"            raw = _compiled_careful({', '.join(params)})\n"
        "    results = [_finish(r) for r in raw]\n"
        + "".join(f"    results[{k}] = _sparse{k}(results[{k}])\n" for k in sparse)
        + f"    return {'results[0]' if single else 'results'}\n"
    )
    for k, derivative in sparse.items():  # a CSR matrix of the values on the pattern, as compile returns
        emitter.imports.setdefault("scipy.sparse", "import scipy.sparse")
        emitter.imports.setdefault("functools", "import functools")
        pattern = derivative.pattern
        defs.append(
            f"_sparse{k} = functools.partial(_csr, indices={_array_literal(pattern.indices, emitter)}, "
            f"indptr={_array_literal(pattern.indptr, emitter)}, shape={tuple(pattern.shape)!r})\n"
        )
    if sparse:
        defs.insert(0, _CSR)
    header = f'"""{name}: generated by symdiff {_version()} (sd.to_source); imports no symdiff."""\n\n'
    imports = "\n".join(sorted(set(emitter.imports.values()))) + "\n"
    copied = "\n\n".join(emitter.defs.values())
    unique = list(dict.fromkeys(defs))
    return (
        header
        + "from __future__ import annotations\n\n"
        + imports
        + _INPUT
        + _CHECK
        + "\n\n"
        + copied
        + "\n\n"
        + "".join(unique)
        + "\n\n"
        + "".join(f"{text}\n\n" for _, _, text in bodies.values())
        + source
        + "\n\n"
        + careful
        + wrapper
    )


def _version() -> str:
    return __version__
