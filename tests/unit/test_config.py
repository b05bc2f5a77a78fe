"""Configuration: file + environment, and errors a person can act on."""

from __future__ import annotations

from pathlib import Path

import pytest

from cti.config import ConfigError, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cti.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(
        tmp_path, '[ami]\nport = 6038\nsecret = "from-file"\n[site]\ntimezone = "Asia/Shanghai"\n'
    )
    monkeypatch.setenv("CTI_AMI__SECRET", "from-env")
    settings = load_config(path)
    assert settings.ami.port == 6038
    assert settings.ami.secret == "from-env"  # the environment wins over the file
    assert settings.site.timezone == "Asia/Shanghai"
    assert settings.http.port == 8080


def test_bad_values_name_the_key_and_the_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, '[ami]\nport = "many"\n[site]\ntimezone = "Mars/Olympus"\n')
    monkeypatch.setenv("CTI_HTTP__PORT", "70000")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert "ami.port" in text and "'many'" in text and str(path) in text
    assert "site.timezone" in text and "Mars/Olympus" in text
    assert "http.port" in text and "CTI_HTTP__PORT" in text


def test_toml_syntax_error_gives_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[ami]\nport = 5038\nsecret = \n")
    with pytest.raises(ConfigError, match=r"line 3"):
        load_config(path)


def test_secret_is_never_echoed(tmp_path: Path) -> None:
    path = write(tmp_path, '[ami]\nsecret = "abc\\ndef"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "ami.secret" in str(err.value) and "abc" not in str(err.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_unknown_key_in_a_section(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"ami\.prot"):
        load_config(write(tmp_path, "[ami]\nprot = 1\n"))
