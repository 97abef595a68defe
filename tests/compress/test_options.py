"""Options are declared once (compress/options.py): every field has a flag and a recipe key,
the parser and the recipe reader are generated from the fields, no default is stated a second
time, and neither the parser nor the device commands need torch."""

import ast
import subprocess
import sys
from dataclasses import fields

import pytest
from tiny_models import ROOT

from edgepress import cli
from edgepress import options
from edgepress.compress import recipe


def _compress_flags() -> set:
    parser = cli.build_parser()
    compress = parser._subparsers._group_actions[0].choices["compress"]
    return {opt for a in compress._actions for opt in a.option_strings}


def _option_fields():
    for table, cls in options.TABLES.items():
        for f in fields(cls):
            yield table, f


def test_every_field_has_a_flag_and_a_recipe_key():
    flags = _compress_flags()
    declared = set()
    for table, f in _option_fields():
        flag = f.metadata["flag"]
        assert flag == "SOURCE" or flag in flags, (table, f.name, flag)
        declared.add(flag)
        value = options.default(f)
        sample = {"[": ["x"], "b": True, "i": 3, "f": 0.5}.get(f.metadata["kind"][0], "x")
        if f.metadata["kind"].startswith("[") and "int" in f.metadata["kind"]:
            sample = [2, 2]
        elif f.metadata["kind"].startswith("[") and "float" in f.metadata["kind"]:
            sample = [0.5]
        got = recipe.parse({table: {options.recipe_key(f): sample}})
        assert f.name in got[table], (table, f.name, value)
    assert flags - declared - {"-h", "--help", "--recipe"} == set()


def test_flat_names_are_unique_and_round_trip():
    names = [options.flat_name(f) for _t, f in _option_fields()]
    assert len(names) == len(set(names))
    r = options.Recipe.from_flat(prune="channels:0.5", prune_round_to=4, formats=("onnx",))
    assert r.prune.method == "channels:0.5" and r.prune.round_to == 4
    assert r.export.formats == ("onnx",)
    assert options.Recipe.from_flat(**r.flat()).flat() == r.flat()


def test_help_does_not_restate_a_default():
    """The parser appends "(default X)" from the field; the help text itself never says it
    (a listing of choices may name the default among them)."""
    for table, f in _option_fields():
        value, words = options.default(f), f.metadata["help"].replace(",", " ").split()
        assert "default" not in f.metadata["help"], (table, f.name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            assert f"{value:g}" not in words and str(value) not in words, (table, f.name)


def _literal_defaults() -> list:
    """(file, class, field, value) for every dataclass-style `name: T = <literal>` in edgepress/."""
    out = []
    for path in (ROOT / "edgepress").rglob("*.py"):
        for cls in ast.walk(ast.parse(path.read_text())):
            if not isinstance(cls, ast.ClassDef):
                continue
            for node in cls.body:
                if isinstance(node, ast.AnnAssign) and isinstance(node.value, ast.Constant):
                    out.append((path.name, cls.name, node.target.id, node.value.value))
    return out


def test_no_default_is_stated_twice():
    """An option's default is written only in options.py; other dataclasses that share the
    field refer to it (`round_to: int = Prune.round_to`)."""
    defaults = {f.name: options.default(f) for _t, f in _option_fields()
                if options.default(f) not in (None, (), False, True)}
    twice = [d for d in _literal_defaults() if d[0] != "options.py" and d[2] in defaults
             and d[3] == defaults[d[2]]]
    assert not twice, twice


def test_the_default_check_sees_literals():
    found = _literal_defaults()
    assert ("job.py", "QuantizeConfig", "activations", "auto") in found


@pytest.mark.parametrize("argv", [["bench", "--help"], ["compress", "--help"],
                                  ["inspect", "--help"], ["devices", "list"],
                                  ["devices", "show", "rpi4"], ["verify", "--help"]])
def test_parser_and_device_commands_without_torch(argv):
    code = ("import sys; sys.modules['torch'] = None\n"
            "from edgepress.cli import main\n"
            f"rc = main({argv!r}) if {argv!r}[-1] != '--help' else None\n")
    if argv[-1] == "--help":
        code += f"try:\n    main({argv!r})\nexcept SystemExit as e:\n    rc = e.code\n"
    code += ("assert not [m for m in sys.modules if m.startswith('torch') and sys.modules[m]]\n"
             "sys.exit(rc)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip()
