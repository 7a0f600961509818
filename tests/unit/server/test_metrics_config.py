"""metrics_listen: the flag, RILKE_METRICS_LISTEN and the TOML key; off by default."""

from pathlib import Path

import pytest

from rilke.errors import InvalidConfigError
from rilke.server.config import load_config


def test_off_by_default() -> None:
    assert load_config({}, env={}).metrics_listen == ""


def test_flag_beats_env_beats_file(tmp_path: Path) -> None:
    path = tmp_path / "rilke.toml"
    path.write_text('metrics_listen = "127.0.0.1:9644"\n')
    assert load_config({}, env={}, config_file=path).metrics_listen == "127.0.0.1:9644"
    env = {"RILKE_METRICS_LISTEN": "0.0.0.0:9645"}
    config = load_config({}, env=env, config_file=path)
    assert config.metrics_listen == "0.0.0.0:9645"
    assert config.sources["metrics_listen"] == "RILKE_METRICS_LISTEN"
    flags = {"metrics_listen": "[::1]:0"}
    assert load_config(flags, env=env, config_file=path).metrics_listen == "[::1]:0"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("flag", "metrics_listen (from --metrics-listen): '9644' is not HOST:PORT"),
        ("env", "metrics_listen (from RILKE_METRICS_LISTEN): '9644' is not HOST:PORT"),
        ("file", "is not HOST:PORT"),
    ],
)
def test_bad_values_name_the_setting_and_source(tmp_path: Path, source: str, expected: str) -> None:
    path = tmp_path / "rilke.toml"
    path.write_text('metrics_listen = "9644"\n')
    with pytest.raises(InvalidConfigError, match="metrics_listen") as caught:
        if source == "flag":
            load_config({"metrics_listen": "9644"}, env={})
        elif source == "env":
            load_config({}, env={"RILKE_METRICS_LISTEN": "9644"})
        else:
            load_config({}, env={}, config_file=path)
    assert expected in str(caught.value)
    if source == "file":
        assert str(path) in str(caught.value)


def test_not_a_string_in_toml(tmp_path: Path) -> None:
    path = tmp_path / "rilke.toml"
    path.write_text("metrics_listen = 9644\n")
    with pytest.raises(InvalidConfigError, match=r"metrics_listen .*expected a string"):
        load_config({}, env={}, config_file=path)
