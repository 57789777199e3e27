"""The gate's TOML config: the generated reference is current, every field describes itself, the example
loads, and every kind of mistake is refused with a message that names the key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from citypass.gate.config import ConfigError, GateConfig, load_config
from citypass.gate.configdoc import MINIMAL_EXAMPLE, REGENERATE, iter_fields, render_config_doc

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "gate-config.md"
EXAMPLE = ROOT / "examples" / "gate.toml"

BASE = """\
gate_id = "m-e1"
site = "city-museum"
root_key = "root.pub"

[ledger]
path = "ledger.sqlite3"
"""


def write(tmp_path: Path, text: str, name: str = "gate.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def config_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    return str(info.value)


# -- the reference page ---------------------------------------------------------------------------------
def test_reference_page_is_current() -> None:
    expected = render_config_doc()
    actual = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    assert actual == expected, f"docs/gate-config.md is out of date with gate/config.py; regenerate it: {REGENERATE}"


def test_reference_page_lists_every_key_and_section() -> None:
    doc = render_config_doc()
    for key, _, _ in iter_fields():
        assert f"| `{key}` |" in doc
    for section in ("ledger", "camera", "barrier", "policy", "decision", "health"):
        assert f"## `[{section}]`" in doc
    assert render_config_doc() == doc  # deterministic


def test_every_field_of_every_model_is_described() -> None:
    keys = list(iter_fields())
    assert len(keys) > 50  # the walk reached the nested models
    undescribed = [key for key, _, info in keys if not (info.description or "").strip()]
    assert not undescribed, f"fields without a description: {', '.join(undescribed)}"
    models = {model for _, model, _ in keys}
    assert all((model.__doc__ or "").strip() for model in models)
    assert all(model.model_config.get("extra") == "forbid" for model in models)


def test_minimal_example_in_the_reference_loads(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL_EXAMPLE))
    assert cfg.root_key == tmp_path / "root.pub"
    assert cfg.snapshot == tmp_path / "snapshot.cpls"


# -- the example ----------------------------------------------------------------------------------------
def test_example_config_loads() -> None:
    cfg = load_config(EXAMPLE)
    assert (cfg.site, cfg.direction.value, cfg.pins) == ("zhejiang-museum", "entry", "mock")
    assert cfg.camera.kind == "images"
    assert cfg.root_key == EXAMPLE.parent / "root.pub"
    assert cfg.snapshot == EXAMPLE.parent / "snapshot.cpls"
    assert cfg.ledger.path == EXAMPLE.parent / "ledger.sqlite3"
    # Complete: every section of the config appears in the example.
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    tables = {
        name
        for name, info in GateConfig.model_fields.items()
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)
    }
    assert tables <= set(data), f"sections missing from the example: {tables - set(data)}"


# -- mistakes -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('colour = "red"\n', "colour"),
        ("[camera]\nstale_afer_s = 3\n", "camera.stale_afer_s"),
        ("[barrier]\npassage_timout_s = 3\n", "barrier.passage_timout_s"),
        ('[policy]\nstale = "deny"\n', "policy.stale"),
        ("[decision]\ndeadline_s = 1\n", "decision.deadline_s"),
        ('[health]\nbind = "0.0.0.0"\n', "health.bind"),
        ('[cameras]\nsource = "0"\n', "cameras"),
    ],
)
def test_unknown_keys_are_rejected_at_every_level(tmp_path: Path, extra: str, key: str) -> None:
    message = config_error(tmp_path, extra + BASE if not extra.startswith("[") else BASE + extra)
    assert f"{key}: Extra inputs are not permitted" in message
    assert str(tmp_path / "gate.toml") in message


def test_unknown_key_in_the_ledger_table(tmp_path: Path) -> None:
    message = config_error(tmp_path, BASE + 'synchronus = "NORMAL"\n')
    assert "ledger.synchronus: Extra inputs are not permitted" in message


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('[camera]\nfps = "fast"\n', "camera.fps"),
        ("[camera]\nloop = 3\n", "camera.loop"),
        ("[health]\nport = 70000\n", "health.port"),
        ('[decision]\nfallback = "maybe"\n', "decision.fallback"),
        ("[policy]\ndynamic_window_s = 0\n", "policy.dynamic_window_s"),
        ("[barrier]\nrelay_pin = 1.5\n", "barrier.relay_pin"),
    ],
)
def test_wrong_types_and_values_name_the_key(tmp_path: Path, extra: str, key: str) -> None:
    assert f"{key}" in config_error(tmp_path, BASE + extra)


def test_wrong_top_level_values_name_the_key(tmp_path: Path) -> None:
    assert "pins: Input should be 'native' or 'mock'" in config_error(tmp_path, 'pins = "gpio"\n' + BASE)
    assert "gate_id: String should match pattern" in config_error(tmp_path, BASE.replace('"m-e1"', '"../etc"'))
    assert "ledger.path" in config_error(tmp_path, BASE.replace('path = "ledger.sqlite3"', "path = 3"))


def test_cross_field_rules_are_enforced(tmp_path: Path) -> None:
    message = config_error(tmp_path, BASE + "[barrier]\npassage_timeout_s = 30\n")
    assert "barrier.passage_timeout_s must be shorter than decision.entry_budget_s" in message
    assert "decoder must be one of" in config_error(tmp_path, 'decoder = "opencv"\n' + BASE)
    message = config_error(tmp_path, BASE + "[camera]\nfps = 1\nstale_after_s = 0.5\n")
    assert "camera:" in message and "stale_after_s (0.5) must exceed one frame interval" in message
    message = config_error(tmp_path, BASE + "[barrier]\nrelay_pin = 27\n")
    assert "barrier:" in message and "sensor_pin and relay_pin are both wired to pin 27" in message


@pytest.mark.parametrize("missing", ["gate_id", "site", "root_key"])
def test_a_missing_required_field_is_named(tmp_path: Path, missing: str) -> None:
    text = "\n".join(line for line in BASE.splitlines() if not line.startswith(missing)) + "\n"
    assert f"{missing}: Field required" in config_error(tmp_path, text)


def test_a_missing_ledger_table_is_named(tmp_path: Path) -> None:
    assert "ledger: Field required" in config_error(tmp_path, BASE.split("[ledger]")[0])


def test_invalid_toml_names_the_file_and_line(tmp_path: Path) -> None:
    message = config_error(tmp_path, BASE + "[camera]\nsource = dir:/srv/frames\n")
    assert "is not valid TOML" in message and "line 8" in message
    assert str(tmp_path / "gate.toml") in message


def test_an_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    (tmp_path / "binary.toml").write_bytes(b"\xff\xfe gate_id")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "binary.toml")


# -- paths ----------------------------------------------------------------------------------------------
def test_relative_paths_resolve_against_the_files_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "etc" / "citypass"
    folder.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)  # the working directory must not matter
    cfg = load_config(write(folder, 'snapshot = "snap/s.cpls"\n' + BASE))
    assert cfg.root_key == folder / "root.pub"
    assert cfg.snapshot == folder / "snap" / "s.cpls"
    assert cfg.ledger.path == folder / "ledger.sqlite3"
    absolute = load_config(write(folder, BASE.replace('"root.pub"', '"/etc/citypass/root.pub"'), "abs.toml"))
    assert absolute.root_key == Path("/etc/citypass/root.pub")


def test_relative_camera_folder_resolves_against_the_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "etc"
    folder.mkdir()
    cfg = load_config(write(folder, BASE + '[camera]\nsource = "dir:frames"\n'))
    assert Path(cfg.camera.target) == folder / "frames"


def test_the_example_config_under_mock_pins_admits_without_a_phantom_fire_alarm() -> None:
    """examples/gate.toml wires the fire panel normally closed (fire_alarm_active_low = false) with a pull-up;
    gpiozero's MockFactory leaves the pin at the pull's level, which reads as an alarm, so every grant ended in
    fire_alarm. The gate's mock pins rest at the not-asserted level."""
    import time as _time

    from citypass.gate.barrier.gpio import Barrier
    from citypass.gate.barrier.mockpins import resting_mock_pins

    cfg = load_config(Path(__file__).resolve().parent.parent / "examples" / "gate.toml")
    assert cfg.pins == "mock" and cfg.barrier.fire_alarm_active_low is False
    with Barrier(cfg.barrier, pin_factory=resting_mock_pins(cfg.barrier)) as barrier:
        barrier.start()
        assert barrier.state.mode.value == "idle"
        assert barrier.grant(1, "example")
        deadline = _time.monotonic() + 2
        while barrier.relay_energised_at("example") is None and _time.monotonic() < deadline:
            _time.sleep(0.01)
        assert barrier.relay_energised_at("example") is not None
        assert barrier.state.mode.value == "open"
        factory = resting_mock_pins(cfg.barrier)
    with Barrier(cfg.barrier, pin_factory=factory) as barrier:  # the alarm still works: the contact opens
        barrier.start()
        factory.pin(cfg.barrier.fire_alarm_pin).drive_high()
        deadline = _time.monotonic() + 2
        while barrier.state.mode.value != "fire_alarm" and _time.monotonic() < deadline:
            _time.sleep(0.01)
        assert barrier.state.mode.value == "fire_alarm"
