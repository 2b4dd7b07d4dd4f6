"""Tests for fdx.config (loading, overrides, saving, CLI split) and fdx.grid."""

import json
import re
import shlex
import sys
import textwrap
from pathlib import Path

import pytest

from fdx import grid
from fdx.config import apply_overrides, load_config, load_saved_config, parse_cli, render_value, save_config

TOY = str(Path(__file__).parent / "configs" / "toy.py")


def _write(path: Path, source: str) -> str:
    path.write_text(textwrap.dedent(source))
    return str(path)


def test_load_config_with_and_without_arg():
    assert load_config(TOY).model.width == 16
    assert load_config(f"{TOY}:mini").model.width == 4


def test_load_config_errors(tmp_path):
    missing = tmp_path / "nope.py"
    with pytest.raises(FileNotFoundError, match="nope.py"):
        load_config(str(missing))
    empty = _write(tmp_path / "empty.py", "X = 1\n")
    with pytest.raises(ValueError, match=r"empty\.py.*get_config"):
        load_config(empty)


@pytest.mark.parametrize(
    "override, key, expected",
    [
        ("--config.optim.lr=1e-2", "optim.lr", 0.01),
        ("config.optim.lr=1", "optim.lr", 1.0),
        ("optim.steps=7", "optim.steps", 7),
        ("model.use_bias=FALSE", "model.use_bias", False),
        ("model.use_bias=1", "model.use_bias", True),
        ("data.name=celeb-df", "data.name", "celeb-df"),
        ("data.name='3'", "data.name", "3"),
        ("model.pretrained=imagenet21k", "model.pretrained", "imagenet21k"),
        ("model.pretrained=[1, 2]", "model.pretrained", [1, 2]),
        ("optim.clip=1.5", "optim.clip", 1.5),
        ("data.image_size=(256, 256)", "data.image_size", (256, 256)),
        ("data.image_size=128,128", "data.image_size", (128, 128)),
        ("model.strides=4", "model.strides", (4,)),
        ("data.mean=[0.1, 0.2]", "data.mean", [0.1, 0.2]),
    ],
)
def test_override_types(override, key, expected):
    config = apply_overrides(load_config(TOY), [override])
    value = config
    for part in key.split("."):
        value = value[part]
    assert value == expected and type(value) is type(expected)


def test_dict_overrides_are_python_values():
    config = apply_overrides(load_config(TOY), {"optim.lr": 3e-4, "data.name": "3", "model.strides": [2, 2]})
    assert (config.optim.lr, config.data.name, config.model.strides) == (3e-4, "3", (2, 2))


@pytest.mark.parametrize(
    "override, suggestion",
    [
        ("--config.optim.lrr=1e-3", "optim.lr"),
        ("lr=1e-3", "optim.lr"),
        ("model.widht.x=3", "model.width"),
    ],
)
def test_misspelled_key_names_key_and_suggestion(override, suggestion):
    with pytest.raises(KeyError) as info:
        apply_overrides(load_config(TOY), [override])
    key = override.split("=")[0].removeprefix("--config.")
    assert key in str(info.value) and suggestion in str(info.value)


@pytest.mark.parametrize(
    "override, expected_type",
    [
        ("optim.steps=abc", "int"),
        ("optim.steps=1.5", "int"),
        ("optim.lr=fast", "float"),
        ("model.use_bias=yes", "bool"),
        ("model=3", "ConfigDict"),
    ],
)
def test_bad_value_names_key_value_and_type(override, expected_type):
    key, value = override.split("=")
    with pytest.raises(ValueError) as info:
        apply_overrides(load_config(TOY), [override])
    message = str(info.value)
    assert key in message and value in message and expected_type in message


def test_bad_dict_value_and_malformed_override():
    with pytest.raises(ValueError, match="optim.steps.*int"):
        apply_overrides(load_config(TOY), {"optim.steps": "many"})
    with pytest.raises(ValueError, match="key=value"):
        apply_overrides(load_config(TOY), ["--config.optim.lr"])


def test_input_not_mutated_and_result_locked():
    config = load_config(TOY)
    before = config.to_dict()
    new = apply_overrides(config, ["optim.lr=0.5", "model.strides=(3, 3)"])
    assert config.to_dict() == before
    assert new.optim.lr == 0.5
    with pytest.raises(AttributeError):
        new.optim.lrr = 1.0  # a typo in code fails on the locked result


def test_parse_cli_splits_config_flags():
    argv = [
        "--workdir",
        "/tmp/w",
        "--config=a/b.py:mini",
        "--config.optim.lr=0.1",
        "--config.model.width",
        "8",
        "--seed",
        "3",
    ]
    assert parse_cli(argv) == (
        "a/b.py:mini",
        ["--config.optim.lr=0.1", "--config.model.width=8"],
        ["--workdir", "/tmp/w", "--seed", "3"],
    )
    assert parse_cli(["--config", "c.py", "x"]) == ("c.py", [], ["x"])
    assert parse_cli(["--workdir", "w"]) == (None, [], ["--workdir", "w"])
    with pytest.raises(ValueError, match="--config.optim.lr needs a value"):
        parse_cli(["--config.optim.lr"])


def test_save_and_load_saved_config(tmp_path):
    config = apply_overrides(load_config(TOY), ["optim.lr=0.25"])
    save_config(config, tmp_path / "run")
    loaded = load_saved_config(tmp_path / "run")
    assert loaded.to_json_best_effort(sort_keys=True) == config.to_json_best_effort(sort_keys=True)
    assert loaded.optim.lr == 0.25 and loaded.is_locked
    assert "lr: 0.25" in (tmp_path / "run" / "config.txt").read_text()
    with pytest.raises(FileNotFoundError, match="no run was started") as info:
        load_saved_config(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(info.value)


def test_expand_sweep_ids_and_overrides():
    points = grid.expand_sweep(TOY)
    assert [p.point_id for p in points] == [
        "000-lr=0.001,width=8",
        "001-lr=0.001,width=16",
        "002-lr=0.0001,width=8",
        "003-lr=0.0001,width=16",
    ]
    assert points[2].overrides == {"optim.lr": 1e-4, "model.width": 8}


def test_long_point_id_is_truncated_with_stable_hash(tmp_path):
    spec = _write(
        tmp_path / "long.py",
        """
        import ml_collections
        def get_config(arg=None):
            return ml_collections.ConfigDict({'name': 'x'})
        def sweep(arg=None):
            yield {'name': 'a' * 100}
            yield {'name': 'a' * 100 + 'b'}
        """,
    )
    ids = [p.point_id for p in grid.expand_sweep(spec)]
    assert ids == [p.point_id for p in grid.expand_sweep(spec)]
    assert all(len(i) <= 64 and i.startswith(f"00{n}-name=aaa") for n, i in enumerate(ids))
    assert ids[0][4:] != ids[1][4:]


def test_sweep_errors_fail_up_front(tmp_path):
    spec = _write(
        tmp_path / "typo.py",
        """
        import ml_collections
        def get_config(arg=None):
            return ml_collections.ConfigDict({'optim': {'lr': 0.1}})
        def sweep(arg=None):
            yield {'optim.lr': 0.01}
            yield {'optim.lrr': 0.02}
        """,
    )
    with pytest.raises(KeyError, match=r"001-lrr=0\.02.*optim\.lrr.*optim\.lr"):
        grid.expand_sweep(spec)
    no_sweep = _write(
        tmp_path / "nosweep.py",
        """
        import ml_collections
        def get_config(arg=None):
            return ml_collections.ConfigDict({'a': 1})
        """,
    )
    with pytest.raises(ValueError, match=r"nosweep\.py.*sweep"):
        grid.expand_sweep(no_sweep)


@pytest.mark.parametrize(
    "key, value",
    [
        ("optim.lr", 1e-4),
        ("optim.lr", 2),
        ("optim.steps", 5),
        ("model.use_bias", False),
        ("model.pretrained", "3"),
        ("model.pretrained", "a,b"),
        ("model.pretrained", None),
        ("model.pretrained", (1, "x")),
        ("data.name", "it's"),
        ("data.name", "True"),
        ("data.image_size", (96, 128)),
        ("data.mean", [0.1, 0.2]),
    ],
)
def test_point_command_values_parse_back(key, value):
    point = grid.Point("000-x", {key: value})
    command = grid.point_command(TOY, point, "runs", "toy")
    _, overrides, _ = parse_cli(shlex.split(shlex.join(command))[2:])
    config = load_config(TOY)
    assert apply_overrides(config, overrides).to_dict() == apply_overrides(config, point.overrides).to_dict()
    assert render_value(value) in overrides[0]


def test_dry_run_prints_one_parsable_command_per_point(capsys, tmp_path):
    assert grid.main([f"{TOY}:mini", "--dry-run", "--root", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    points = grid.expand_sweep(f"{TOY}:mini")
    assert len(lines) == len(points) == 4
    for line, point in zip(lines, points):
        argv = shlex.split(line)
        assert argv[:2] == ["fdx", "train"]
        spec, overrides, rest = parse_cli(argv[2:])
        assert rest == ["--workdir", str(tmp_path / "toy-mini" / point.point_id)]
        base = load_config(spec)
        assert apply_overrides(base, overrides).to_dict() == apply_overrides(base, point.overrides).to_dict()
    assert not list(tmp_path.iterdir())  # nothing ran
    assert grid.main([TOY, "--dry-run", "--only", "002-"]) == 0
    assert capsys.readouterr().out.count("fdx train") == 1


FAKE_TRAINER = """
import json, os, pathlib, sys
argv = sys.argv[1:]
workdir = pathlib.Path(argv[argv.index('--workdir') + 1])
workdir.mkdir(parents=True, exist_ok=True)
with open(os.environ['FAKE_LOG'], 'a') as log:
    log.write(json.dumps(argv) + '\\n')
if os.environ.get('FAKE_FAIL') and workdir.name.startswith(os.environ['FAKE_FAIL']):
    print('boom: loss is nan', file=sys.stderr)
    sys.exit(3)
(workdir / 'done.json').write_text('{}')
"""


def _statuses(root: Path) -> dict:
    data = json.loads((root / "toy" / "grid_status.json").read_text())
    return {r["point_id"][:3]: r for r in data["points"]}


def test_local_backend_with_fake_trainer(tmp_path, monkeypatch, capsys):
    trainer = tmp_path / "fake_train.py"
    trainer.write_text(FAKE_TRAINER)
    log = tmp_path / "log.jsonl"
    monkeypatch.setenv(grid.TRAIN_CMD_ENV, shlex.join([sys.executable, str(trainer)]))
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("FAKE_FAIL", "001")
    root = tmp_path / "runs"
    run = ["--root", str(root)]

    assert grid.main([TOY, *run]) == 1  # first run: 001 fails, the grid goes on
    status = _statuses(root)
    assert [status[i]["status"] for i in ("000", "001", "002", "003")] == ["started", "failed", "started", "started"]
    assert status["001"]["exit_code"] == 3 and "boom: loss is nan" in status["001"]["stderr_tail"]
    assert status["000"]["exit_code"] == 0 and "stderr_tail" not in status["000"]
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(calls) == 4 and calls[0][:3] == ["train", "--config", TOY]
    assert "--config.optim.lr=0.001" in calls[0] and "--config.model.width=8" in calls[0]
    summary = capsys.readouterr().out
    assert re.search(r"^001-lr=0\.001,width=16 +failed +3 ", summary, re.M) and "point_id" in summary

    assert grid.main([TOY, *run]) == 1  # second run: only 001 is relaunched, in place
    status = _statuses(root)
    assert [status[i]["status"] for i in ("000", "002", "003")] == ["finished"] * 3
    assert (status["001"]["status"], status["001"]["launch"]) == ("failed", "resumed")
    assert len(log.read_text().splitlines()) == 5

    monkeypatch.delenv("FAKE_FAIL")
    assert grid.main([TOY, *run]) == 0  # third run: 001 resumes and finishes
    status = _statuses(root)
    assert status["001"]["status"] == "resumed" and status["001"]["exit_code"] == 0
    assert len(log.read_text().splitlines()) == 6
