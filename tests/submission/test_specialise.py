"""Source specialisation (golf/specialise.py) on a small kernel written for the test: what is folded,
what is dropped, what is refused, and that the specialised program computes what the original does."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from enum import Enum

import pytest

from golf.specialise import SpecialiseError, config_types, load_kernel, specialise
from golf.submission import minify, unwrap, wrap


class Act(str, Enum):
    relu = "relu"
    gelu = "gelu"


@dataclass
class GateCfg:
    width: int = 4


@dataclass
class BlockCfg:
    dim: int = 8
    act: Act = Act.relu
    gate: GateCfg | None = None
    layers: list[int] = field(default_factory=lambda: [0, 2])


@dataclass
class SchemeCfg:
    bits: int = 8
    kind: str = "int"

    def live_fields(self):
        return ("bits", "kind") if self.kind == "int" else ("kind",)


@dataclass
class RootCfg:
    block: BlockCfg = field(default_factory=BlockCfg)
    schemes: dict[str, SchemeCfg] = field(default_factory=lambda: {"a": SchemeCfg(8), "b": SchemeCfg(6)})
    seed: int = 3


MODEL = '''
"""A model module (docstrings are stripped)."""
from __future__ import annotations
import math
from typing import TYPE_CHECKING
import itertools
from pkgk.ops import double, never_called, triple
if TYPE_CHECKING:
    from tests.submission.test_specialise import BlockCfg


class Gate:
    PARAM_ROLES = {"w": ("control", "gate")}

    def __init__(self, width):
        self.width = width

    def forward(self, x):
        return x * self.width

    def unused_method(self):
        return itertools.count()


class Plain:
    def forward(self, x):
        return x


def build(cfg: BlockCfg):
    """Folds to one branch."""
    a = cfg.gate
    part = Gate(a.width) if a is not None else Plain()
    if cfg.act == "gelu":
        act = triple
    else:
        act = double
    return part, act, cfg.dim * 2, list(cfg.layers)


def reassigned(cfg: BlockCfg, flag):
    if flag:
        cfg = None
    return cfg.dim if cfg is not None else 0


def flagged(n):
    """A list local changed through a closure: never folded to its first value."""
    on = [False]
    seen = []

    def hook(x):
        if on[0]:
            seen.append(x)
    for i in range(n):
        on[0] = i % 2 == 1
        hook(i)
    on[0] = False
    return seen


def early(cfg: BlockCfg):
    """With relu the code after the decided branch's return never runs."""
    if cfg.act == "relu":
        return 1
    return never_called()


def announce(cfg: BlockCfg, seen):
    if cfg.gate is not None:
        seen.append("gated")


def width_of(s: SchemeCfg):
    if s.kind != "int":
        return 16
    return s.bits * 2 if s.bits > 4 else 0


def main(cfg: RootCfg, n):
    part, act, width, layers = build(cfg.block)
    bits = sum(width_of(s) for s in cfg.schemes.values())
    seen = []
    announce(cfg.block, seen)
    return [act(part.forward(n)), width, layers, bits, math.floor(cfg.seed / 2), flagged(n), early(cfg.block), seen]
'''

OPS = '''
def double(x):
    return 2 * x


def triple(x):
    return 3 * x


def never_called():
    return 0
'''


def write_kernel(tmp_path, files: dict[str, str]):
    pkg = tmp_path / "pkgk"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name, text in files.items():
        (pkg / f"{name}.py").write_text(textwrap.dedent(text))
    return pkg


def program(tmp_path, cfg, files=None, roots=("main",)) -> str:
    pkg = write_kernel(tmp_path, files or {"model": MODEL, "ops": OPS})
    return specialise(cfg, set(roots), pkg, "pkgk")


def run_main(source: str, cfg, n: int):
    ns: dict = {}
    exec(compile(source, "<specialised>", "exec"), ns)
    return ns["main"](cfg, n)


def test_config_types_are_those_that_occur_once_or_the_fields_all_instances_agree_on():
    types = config_types(RootCfg())
    assert set(types) == {"RootCfg", "BlockCfg", "SchemeCfg"}  # GateCfg occurs nowhere (None)
    assert types["BlockCfg"] == {"dim": 8, "act": "relu", "gate": None, "layers": [0, 2]}
    assert types["SchemeCfg"] == {"kind": "int"}  # two instances, 8 and 6 bits: only their kind is known
    agree = RootCfg(schemes={"a": SchemeCfg(6), "b": SchemeCfg(6), "f": SchemeCfg(3, kind="float")})
    assert config_types(agree)["SchemeCfg"] == {"bits": 6}  # a float scheme's bits are not live


def test_the_branches_a_config_decides_are_folded_and_their_code_dropped(tmp_path):
    src = program(tmp_path, RootCfg())
    assert "class Gate" not in src and "class Plain" in src  # gate None: Gate unreachable
    assert "def triple" not in src and "def double" in src   # act == relu
    assert "8 * 2" in src and "cfg.dim" not in src and "[0, 2]" in src  # dim as a literal (the minifier folds 8 * 2)
    assert "never_called" not in src and "reassigned" not in src  # unreachable from main (or after a return)
    assert "announce" not in src  # folded to an empty body: its call goes, then the function
    assert '"""' not in src and "PARAM_ROLES" not in src and "TYPE_CHECKING" not in src
    assert "import itertools" not in src and "import math" in src  # imports kept only where used

    gated = RootCfg(block=BlockCfg(act=Act.gelu, gate=GateCfg(5)))
    src = program(tmp_path / "g", gated) if (tmp_path / "g").mkdir() is None else ""
    assert "class Gate" in src and "class Plain" not in src and "def triple" in src
    assert "unused_method" not in src and "def forward" in src  # unmentioned methods go; forward stays


@pytest.mark.parametrize("cfg", [RootCfg(), RootCfg(block=BlockCfg(dim=3, act=Act.gelu, gate=GateCfg(7)), seed=9),
                                 RootCfg(schemes={"a": SchemeCfg(6), "b": SchemeCfg(6), "f": SchemeCfg(kind="f")})])
def test_the_specialised_program_computes_what_the_kernel_computes(tmp_path, cfg):
    pkg = write_kernel(tmp_path, {"model": MODEL, "ops": OPS})
    sys.path.insert(0, str(tmp_path))
    try:
        from pkgk.model import main as original
        want = original(cfg, 5)
    finally:
        sys.path.remove(str(tmp_path))
        for m in [m for m in sys.modules if m.startswith("pkgk")]:
            del sys.modules[m]
    src = specialise(cfg, {"main"}, pkg, "pkgk")
    assert want[5] == [1, 3] and "if on[0]:" in src
    if len(cfg.schemes) == 3:  # the int schemes agree on 6 bits: the width folds, the float one stays apart
        assert want[3] == 12 + 12 + 16 and "return 6 * 2" in src and "s.bits" not in src
    assert run_main(src, cfg, 5) == want
    assert run_main(minify(src, keep=("main",)), cfg, 5) == want  # minified too (locals and globals renamed)


def test_a_reassigned_parameter_is_not_folded(tmp_path):
    src = program(tmp_path, RootCfg(), roots=("reassigned",))
    assert "cfg = None" in src and "return cfg.dim if cfg is not None else 0" in src


def test_a_name_defined_in_two_kernel_modules_is_refused(tmp_path):
    with pytest.raises(SpecialiseError, match="'double' is also defined"):
        program(tmp_path, RootCfg(), {"model": MODEL, "ops": OPS, "more": "def double(x):\n    return x\n"})


@pytest.mark.parametrize("line, match", [
    ("from golf.config.errors import ConfigError", "lab modules only under TYPE_CHECKING"),
    ("from pkgk.ops import double as twice", "under their own name"),
    ("import pkgk.ops", "'from pkgk.x import name'"),
])
def test_imports_that_break_the_contract_are_refused(tmp_path, line, match):
    with pytest.raises(SpecialiseError, match=match):
        program(tmp_path, RootCfg(), {"model": MODEL, "ops": OPS, "bad": line + "\n"})


def test_a_name_blind_builtin_is_refused(tmp_path):
    """``vars(self)`` anywhere in a script makes python-minifier rename nothing at all."""
    source = "def f(x):\n    long_name = x + 1\n    return long_name\n"
    assert "long_name" not in minify(source)
    assert "long_name" in minify(source + "def g(r):\n    return dict(vars(r))\n")
    with pytest.raises(SpecialiseError, match=r"pkgk.bad, line 2: vars\(\) makes the minifier keep every name"):
        program(tmp_path, RootCfg(), {"model": MODEL, "ops": OPS, "bad": "def f(x):\n    return vars(x)\n"})


def test_a_cycle_between_kernel_modules_is_refused(tmp_path):
    files = {"a": "from pkgk.b import g\ndef f():\n    return g()\n", "b": "from pkgk.a import f\ndef g():\n    return f()\n"}
    with pytest.raises(SpecialiseError, match="cycle"):
        program(tmp_path, None, files, roots=("f",))


def test_a_wrapped_program_runs_as_a_script_and_unwraps_to_itself(tmp_path):
    source = "import sys\nprint(sum(range(int(sys.argv[1]))), __name__)\n"
    script = wrap(minify(source))
    assert unwrap(script) == minify(source)
    (tmp_path / "s.py").write_text(script)
    out = subprocess.run([sys.executable, str(tmp_path / "s.py"), "10"], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["45", "__main__"]


def test_the_golf_kernel_keeps_its_contract():
    kernel, _ = load_kernel()  # unique names, allowed imports, no cycles: raises otherwise
    assert "main" in kernel.defs and kernel.defs["main"].module == "golf.kernel.run"
