"""The shared representation (snagkg.core.representation): both tasks hold the same class, and the noise
is applied in one method only, ``MultiModalEntityRepresentation.inputs`` (a guard that reads the source),
where the noised frozen tables are built once per draw."""
from __future__ import annotations

import ast
import functools
import re
import shutil
from pathlib import Path

import pytest
import torch

import snagkg
from snagkg.core.representation import MultiModalEntityRepresentation
from snagkg.data.datasets import read_openke
from snagkg.tasks.completion.task import CompletionTask

from _helpers import legacy_run


def test_both_tasks_hold_the_same_representation_class(tmp_path):
    from snagkg.tasks.alignment.model import AlignmentModel
    from snagkg.tasks.completion.model import CompletionModel

    comp = snagkg.load_run(legacy_run("completion", tmp_path), device="cpu").model
    align = snagkg.load_run(legacy_run("alignment", tmp_path), device="cpu").model
    assert isinstance(comp, CompletionModel) and isinstance(align, AlignmentModel)
    assert type(comp.entities) is type(align.entities) is MultiModalEntityRepresentation


# -- the noise is applied in one method only ------------------------------------------------
#: the callables of snagkg.core.noise that apply the noise, and those that do not (every public
#: name must be in one of the two: a new one fails test_noise_api_is_classified until it is sorted)
NOISE_FUNCTIONS = {"gauss_modality_noise", "blend"}
NOT_NOISE_FUNCTIONS = {"modality_noises"}
#: methods of ModalityNoise / NoisedTables that apply the noise ("__call__" is forward)
NOISE_METHODS = {"__call__", "forward", "gather", "gather_rows", "_blend_rows", "get"}
NOT_NOISE_METHODS = {"refresh", "active", "extra_repr", "clear", "_statistics"}
#: callables whose name ends in "noise" but that only draw it (MultiModalEntityRepresentation and the models)
NOT_NOISE_CALLEES = {"refresh_noise"}
#: where every application of the noise lives
NOISE_PLACE = {("core/representation.py", "MultiModalEntityRepresentation.inputs")}


def _noise_like_text(node) -> bool:
    return "noise" in ast.unparse(node).lower()


def _noise_name(name: str) -> bool:
    """``noise``, ``structure_noise``, ``gauss_modality_noise``: a name that calls a noise (not ``refresh_noise``)."""
    return bool(re.search(r"(^|_)noise$", name)) and name not in NOT_NOISE_CALLEES


def _last_name(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


class _NoiseCalls(ast.NodeVisitor):
    """Every call in one module that applies the noise: a call of a noise object (``self.noise[m](x)``,
    ``noise(x)``, a local alias ``n = self.noise[m]; n(x)``), a call of one of its noise-applying methods
    (``.gather``, ``.gather_rows``, ``.forward``, ``NoisedTables.get`` ...) or of the functional GMNM
    (``gauss_modality_noise``, ``blend``, under any import alias), each with the qualified name of the
    function it is in (``<module>`` outside any)."""

    def __init__(self):
        self.scope, self.found = [], []
        self.functions = set(NOISE_FUNCTIONS)  # names bound to the functional GMNM in this module
        self.modules = set()                   # names bound to the module snagkg.core.noise
        self.aliases = [set()]                 # per function: local names bound to noise objects

    # imports: from snagkg.core.noise import blend as b / import snagkg.core.noise as n
    def visit_ImportFrom(self, node):
        if node.module == "snagkg.core.noise":
            self.functions |= {a.asname or a.name for a in node.names if a.name in NOISE_FUNCTIONS}
        elif node.module == "snagkg.core":
            self.modules |= {a.asname or a.name for a in node.names if a.name == "noise"}

    def visit_Import(self, node):
        self.modules |= {a.asname for a in node.names if a.name == "snagkg.core.noise" and a.asname}

    def _scoped(self, node):
        self.scope.append(node.name)
        if not isinstance(node, ast.ClassDef):
            self.aliases.append(set(self.aliases[-1]))
        self.generic_visit(node)
        if not isinstance(node, ast.ClassDef):
            self.aliases.pop()
        self.scope.pop()

    visit_ClassDef = visit_FunctionDef = visit_AsyncFunctionDef = _scoped

    def _noisy(self, node) -> bool:
        """Whether ``node`` evaluates to a noise object (by name, or by a local alias)."""
        names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        return _noise_like_text(node) or bool(names & self.aliases[-1])

    def _bind(self, target, value):
        makes = isinstance(value, ast.Call) and _last_name(value.func) in {"ModalityNoise", "NoisedTables",
                                                                            "modality_noises"}
        if makes or (isinstance(value, (ast.Name, ast.Attribute, ast.Subscript)) and self._noisy(value)) or (
                isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute)
                and value.func.attr in {"items", "values"} and self._noisy(value.func.value)):
            self.aliases[-1] |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}

    def visit_Assign(self, node):
        for t in node.targets:
            self._bind(t, node.value)
        self.generic_visit(node)

    def visit_AnnAssign(self, node):
        if node.value is not None:
            self._bind(node.target, node.value)
        self.generic_visit(node)

    def visit_NamedExpr(self, node):
        self._bind(node.target, node.value)
        self.generic_visit(node)

    def visit_For(self, node):
        self._bind(node.target, node.iter)
        self.generic_visit(node)

    def visit_comprehension(self, node):
        self._bind(node.target, node.iter)
        self.generic_visit(node)

    def visit_withitem(self, node):
        if node.optional_vars is not None:
            self._bind(node.optional_vars, node.context_expr)
        self.generic_visit(node)

    def visit_Call(self, node):
        f = node.func
        hit = False
        if isinstance(f, ast.Name):  # noise(x), n(x), gauss_modality_noise(x), blend(...)
            hit = f.id in self.functions or f.id in self.aliases[-1] or _noise_name(f.id)
        elif isinstance(f, ast.Subscript):  # self.noise[m](x)
            hit = self._noisy(f.value)
        elif isinstance(f, ast.Attribute):
            owner = f.value
            if isinstance(owner, ast.Name) and owner.id in self.modules:  # noise_module.blend(...)
                hit = f.attr in NOISE_FUNCTIONS
            elif f.attr == "apply" and _last_name(owner) == "_Blend":
                hit = True
            elif f.attr in NOISE_METHODS:  # self.noise[m].gather(...), self._noised.get(...)
                hit = self._noisy(owner)
            else:  # self.noise(x), self.structure_noise(x)
                hit = _noise_name(f.attr)
        if hit:
            self.found.append(".".join(self.scope) or "<module>")
        self.generic_visit(node)


def noise_calls(root: Path) -> set:
    """``(path relative to root, qualified function name)`` of every call that applies the noise in the
    package at ``root``, outside snagkg/core/noise.py itself (where the noise is defined)."""
    out = set()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel != "core/noise.py":
            out |= {(rel, where) for where in _noise_calls_in(path.read_text())}
    return out


@functools.lru_cache(maxsize=None)
def _noise_calls_in(source: str) -> tuple:
    """The functions of one module's ``source`` that apply the noise (cached: the copies in the tests
    below differ from the package in one file)."""
    visitor = _NoiseCalls()
    visitor.visit(ast.parse(source))
    return tuple(visitor.found)


def test_noise_api_is_classified():
    """Every public callable of snagkg.core.noise is known to apply the noise or not."""
    import inspect

    from snagkg.core import noise

    public = {n for n, v in vars(noise).items() if not n.startswith("_") and inspect.isfunction(v)
              and v.__module__ == noise.__name__}
    assert public == NOISE_FUNCTIONS | NOT_NOISE_FUNCTIONS
    for cls in (noise.ModalityNoise, noise.NoisedTables):
        own = {n for n, v in vars(cls).items() if not n.startswith("__") and (callable(v) or isinstance(v, property))}
        assert own <= NOISE_METHODS | NOT_NOISE_METHODS, (cls.__name__, own - NOISE_METHODS - NOT_NOISE_METHODS)


def test_noise_is_applied_in_one_method_only():
    """Every call of a ModalityNoise (or NoisedTables) that applies the noise, and of the functional
    GMNM, in the package is in ``MultiModalEntityRepresentation.inputs``."""
    assert noise_calls(Path(snagkg.__file__).parent) == NOISE_PLACE


PLANTED = {
    "subscript-call": "return self.entities.noise['image'](x)",
    "gather": "return self.entities.noise['image'].gather(x, idx)",
    "gather_rows": "return self.entities.noise['image'].gather_rows(x, idx, 10, x.mean(0), x.std(0))",
    "forward": "return self.entities.noise['image'].forward(x)",
    "alias": "n = self.entities.noise['image']\n    return n.gather(x, idx)",
    "loop": "for _, n in self.entities.noise.items():\n        x = n(x)\n    return x",
    "noised-tables": "return self.entities._noised.get('image', None, x, None, None)",
    "functional": "from snagkg.core.noise import gauss_modality_noise as g\n    return g(x)",
    "blend": "from snagkg.core import noise as N\n    return N.blend(x, idx, x, 0.5, x, x)",
}


@pytest.mark.parametrize("kind", sorted(PLANTED))
def test_noise_guard_catches_a_call_planted_elsewhere(kind, tmp_path):
    """A copy of the package with one noise call planted outside ``inputs`` fails the guard, at that place."""
    root = tmp_path / "snagkg"
    shutil.copytree(Path(snagkg.__file__).parent, root, ignore=shutil.ignore_patterns("__pycache__"))
    assert noise_calls(root) == NOISE_PLACE  # the copy itself passes
    target = root / "tasks" / "completion" / "model.py"
    target.write_text(target.read_text() + f"\n\ndef planted(self, x, idx):\n    {PLANTED[kind]}\n")
    assert noise_calls(root) == NOISE_PLACE | {("tasks/completion/model.py", "planted")}


def test_noise_guard_ignores_calls_that_do_not_apply_the_noise(tmp_path):
    """Drawing the noise, reading its settings and torch's own ``gather`` are not applications."""
    root = tmp_path / "snagkg"
    shutil.copytree(Path(snagkg.__file__).parent, root, ignore=shutil.ignore_patterns("__pycache__"))
    target = root / "tasks" / "completion" / "model.py"
    target.write_text(target.read_text() + "\n\ndef harmless(self, x, idx, g):\n"
                      "    self.entities.noise['image'].refresh(10, 4, g)\n"
                      "    ratio = self.entities.noise['image'].extra_repr()\n"
                      "    return x.gather(0, idx), ratio\n")
    assert noise_calls(root) == NOISE_PLACE


# -- the noised frozen tables ------------------------------------------------------------------
def test_noised_frozen_tables_are_built_once_per_noise_draw(tiny_dataset):
    """The frozen feature tables are blended once per draw and reused; a new draw, eval
    mode or another dtype gives the matching table, never a stale one."""
    cfg = snagkg.resolve_config(overrides={"dataset": str(tiny_dataset), "encoder.hidden": 16,
                                           "noise.ratio": 0.5, "noise.mask": 0.7})
    task = CompletionTask(read_openke(tiny_dataset), cfg)
    model = task.model.entities
    frozen = [m for m in model.modalities if m != "structure"]
    assert frozen
    model.train()
    model.refresh_noise(torch.Generator().manual_seed(1))
    first = model.inputs()
    again = model.inputs()
    for m in frozen:
        assert again[m] is first[m]  # reused, not re-blended
        noise = model.noise[m]
        expect = noise(model.table(m), mean=getattr(model, f"mean_{m}"), std=getattr(model, f"std_{m}"))
        assert torch.equal(first[m], expect)
        assert not torch.equal(first[m], model.table(m))  # the noise is on
        assert torch.equal(model.inputs(torch.bfloat16)[m], expect.to(torch.bfloat16))
    model.refresh_noise(torch.Generator().manual_seed(2))
    second = model.inputs()
    for m in frozen:
        assert not torch.equal(second[m], first[m])  # a new draw, a new table
    model.eval()
    for m, x in model.inputs().items():
        assert torch.equal(x, model.table(m))  # no noise in eval mode
    cast = model.inputs(torch.bfloat16)
    for m in frozen:
        assert torch.equal(cast[m], model.table(m).to(torch.bfloat16))
        assert model.inputs(torch.bfloat16)[m] is cast[m]  # the cast is made once, not per step
    model.train()
    assert all(torch.equal(model.inputs()[m], second[m]) for m in frozen)
