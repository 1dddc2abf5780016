"""The command line: FLAG_FIELDS covers every config field a flag sets, the parser's defaults are the
dataclasses', every flag is read, presets yield to given flags, and a bad value is one error line."""
from __future__ import annotations

import argparse
import ast
import re
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import CASME2_3
import CASME2_5
from cli import UsageError, au_list, map_list, number_list, phase_list, positive_int, seed_list
from engine import TrainSettings
from main import main
from models import ModelConfig
from options import FLAG_FIELDS, NUMBER_RANGES, PRESETS, build_parser, model_config, resolve_args, train_settings

ROOT = Path(__file__).resolve().parents[1]
# Config fields no flag sets: the dataset's, the device's, and fixed sizes of the network.
NOT_FLAGS = {ModelConfig: {"num_classes", "maps", "sa_depth", "gcn_hidden", "adj_threshold", "adj_reweight",
                           "learn_adj"},
             TrainSettings: {"amp"}}
ENTRY_DEFAULTS = {"5class": CASME2_5.DEFAULTS, "3class": CASME2_3.DEFAULTS}
# Arrays that feed every branch: faces and AU codes, one map per sample.
FULL_ARRAYS = SimpleNamespace(face=object(), aus=object(), motion=None)


def actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions if a.dest != "help"}


@pytest.mark.parametrize("config", [ModelConfig, TrainSettings])
def test_every_config_field_a_flag_sets_has_one_row_and_a_flag(config):
    rows = [row for row in FLAG_FIELDS if row.config is config]
    assert sorted(r.field for r in rows) == sorted({f.name for f in fields(config)} - NOT_FLAGS[config])
    dests = actions(build_parser("5class", CASME2_5.DEFAULTS))
    assert all(row.dest in dests for row in rows)
    assert len({row.dest for row in FLAG_FIELDS}) == len(FLAG_FIELDS)


def test_every_flag_is_read_by_the_run_or_a_config():
    source = "\n".join((ROOT / name).read_text() for name in ("main.py", "options.py", "run_data.py"))
    in_table = {row.dest for row in FLAG_FIELDS}
    unread = [dest for dest in actions(build_parser("5class", CASME2_5.DEFAULTS))
              if dest not in in_table and not re.search(rf'args\.{dest}\b|"{dest}"', source)]
    assert unread == []


@pytest.mark.parametrize("protocol", sorted(ENTRY_DEFAULTS))
def test_defaults_are_the_dataclasses(protocol):
    defaults = ENTRY_DEFAULTS[protocol]
    args = build_parser(protocol, defaults).parse_args([])
    assert train_settings(args, torch.device("cpu")) == TrainSettings(**defaults)
    assert model_config(args, 3, FULL_ARRAYS) == ModelConfig(num_classes=3)
    for row in FLAG_FIELDS:
        field = next(f for f in fields(row.config) if f.name == row.field)
        default = defaults.get(row.field, field.default)
        expected = None if isinstance(default, tuple) else (not default) if row.negate else default
        assert getattr(args, row.dest) == expected, row


def test_a_flag_sets_its_field():
    args = build_parser("5class", CASME2_5.DEFAULTS).parse_args(
        ["--no-sa", "--aus", "1,2,4", "--erase", "0.25", "--model", "mmnet", "--tta-flip"])
    cfg, settings = model_config(args, 5, FULL_ARRAYS), train_settings(args, torch.device("cpu"))
    assert (cfg.use_sa, cfg.use_pos, cfg.aus, cfg.arch) == (False, True, (1, 2, 4), "mmnet")
    assert (settings.erase, settings.tta_flip, settings.amp) == (0.25, True, False)


def test_a_preset_applies_unless_the_flag_is_given():
    parser = build_parser("3class", CASME2_3.DEFAULTS)
    preset = PRESETS["flow28"]
    args = resolve_args(parser, ["--raf_path", "x", "--preset", "flow28"])
    assert {key: getattr(args, key) for key in preset} == preset
    for key, value in preset.items():
        action = actions(parser)[key]
        if isinstance(action, argparse.BooleanOptionalAction):
            argv, given = [f"--no-{action.option_strings[0][2:]}"], False
        elif action.nargs == 0:
            continue   # a store_true flag cannot be given as off
        else:
            argv, given = [action.option_strings[-1], str(action.default)], action.default
        args = resolve_args(parser, ["--raf_path", "x", "--preset", "flow28", *argv])
        assert getattr(args, key) == given, key
        assert all(getattr(args, k) == v for k, v in preset.items() if k != key)


def one_line_error(argv: list[str]) -> str:
    with pytest.raises(UsageError) as caught:
        resolve_args(build_parser("5class", CASME2_5.DEFAULTS), ["--raf_path", "x", *argv])
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("dest", sorted(NUMBER_RANGES))
def test_a_number_out_of_range_is_one_line_naming_the_flag(dest):
    flag, low, _high, *_ = NUMBER_RANGES[dest]
    below = low - 1 if isinstance(low, int) else -1.0
    assert flag in one_line_error([flag, str(below)])
    assert flag in one_line_error([flag, "nan" if isinstance(low, float) else "x"])


@pytest.mark.parametrize("argv, flag", [
    (["--model", "resnet"], "--model"), (["--aus", "1,99"], "--aus"), (["--seeds", "1,1"], "--seeds"),
    (["--phases", "apex-onset"], "--phases"), (["--maps", "0"], "--maps"), (["--output", ""], "--output"),
    (["--readout", "max"], "--readout"), (["--folds", ","], "--folds"), (["--img-size", "8"], "--img-size"),
])
def test_a_bad_value_is_one_line_naming_the_flag(argv, flag):
    assert flag in one_line_error(argv)


def test_the_entry_script_ends_a_bad_flag_with_one_error_line(capsys):
    assert main("5class", CASME2_5.DEFAULTS, ["--raf_path", "x", "--lr", "fast"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--lr" in err


@pytest.mark.parametrize("parse, text", [
    (au_list, "1,x"), (map_list, "1,1"), (seed_list, "-1"), (phase_list, "nowhere"), (number_list, "1,-2"),
    (positive_int, "0"),
])
def test_each_list_type_refuses_a_bad_value(parse, text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse(text)


def test_the_other_scripts_import_nothing_from_the_run_driver():
    for name in ("predict.py", "compare.py", "prepare.py", "benchmarks/bench.py", "benchmarks/spotting.py"):
        tree = ast.parse((ROOT / name).read_text())
        modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        modules |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
        assert "main" not in modules, name


def test_the_five_classes_are_named_in_the_protocols_only():
    spelled = re.compile(r"happiness\W+surprise\W+disgust\W+repression")
    tops = [p for p in ROOT.iterdir() if not p.name.startswith(".") and p.name != "tests"]
    sources = [p for top in tops for p in ([top] if top.suffix == ".py" else top.rglob("*.py") if top.is_dir() else [])]
    assert [str(p.relative_to(ROOT)) for p in sources if spelled.search(p.read_text())] == ["data/protocols.py"]


def test_every_flag_has_a_line_in_the_readme_flags_table():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Flags"):readme.index("\n## ", readme.index("## Flags") + 1)]
    lines = {line.split("|")[1] for line in table.splitlines() if line.startswith("| `--")}
    missing = [a.option_strings[0] for a in actions(build_parser("5class", CASME2_5.DEFAULTS)).values()
               if not any(re.search(re.escape(o) + "[` ]", cell) for cell in lines for o in a.option_strings)]
    assert missing == []
