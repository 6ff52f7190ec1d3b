from __future__ import annotations

import re
from pathlib import Path

import pytest

from gateway.config import OTHER_ENV, ConfigError, env_names, load_settings

README = (Path(__file__).parent.parent / "README.md").read_text()
# Settings whose README rows wait for the README's rewrite: until they are there, their rows (same
# format, same defaults) are checked in this document instead. Once the README has a row, the
# variable must leave this set (a test says so).
PENDING_README = {
    "GATEWAY_HEAD_TIMEOUT_S": "docs/slow-clients.md",
    "GATEWAY_MIN_BYTES_PER_S": "docs/slow-clients.md",
    "GATEWAY_RATE_GRACE_S": "docs/slow-clients.md",
    "GATEWAY_MAX_CONNECTIONS_PER_CLIENT": "docs/slow-clients.md",
}


def _documented_in(var: str) -> str:
    where = PENDING_README.get(var)
    return README if where is None else (Path(__file__).parent.parent / where).read_text()


def test_defaults() -> None:
    s = load_settings({})
    assert (s.host, s.port, s.api_keys, s.log_format) == ("127.0.0.1", 9502, (), "json")


def test_env_and_flags() -> None:
    s = load_settings(
        {"GATEWAY_PORT": "9600", "GATEWAY_API_KEYS": " a, b ,,", "GATEWAY_HOST": "0.0.0.0"},
        host="127.0.0.2",
        port=None,
    )
    assert (s.port, s.api_keys, s.host) == (9600, ("a", "b"), "127.0.0.2")


def test_empty_env_value_means_default() -> None:
    assert load_settings({"GATEWAY_PORT": ""}).port == 9502


@pytest.mark.parametrize(
    ("env", "var"),
    [
        ({"GATEWAY_PORT": "x"}, "GATEWAY_PORT"),
        ({"GATEWAY_LOG_FORMAT": "xml"}, "GATEWAY_LOG_FORMAT"),
        ({"GATEWAY_REFRESH_S": "-1"}, "GATEWAY_REFRESH_S"),
    ],
)
def test_bad_value_names_the_variable(env: dict[str, str], var: str) -> None:
    with pytest.raises(ConfigError, match=f"^{var}: "):
        load_settings(env)


def test_keys_not_in_repr() -> None:
    assert "topsecret" not in repr(load_settings({"GATEWAY_API_KEYS": "topsecret"}))


def test_readme_documents_every_setting_with_its_default() -> None:
    for name, var in env_names().items():
        row = re.search(rf"^\| `{var}` \| ([^|]+) \|", _documented_in(var), re.MULTILINE)
        assert row, f"{var} is not in the README's table"
        default = load_settings({}).model_dump()[name]
        if default not in ((), None):
            shown = str(
                int(default) if isinstance(default, float) and default.is_integer() else default
            )
            assert shown in row[1], f"{var}: README says {row[1]!r}, default is {shown!r}"


def test_readme_names_only_variables_that_exist() -> None:
    known = set(env_names().values()) | set(OTHER_ENV)
    mentioned = set(re.findall(r"\b((?:GATEWAY|LLAMA|DEEPSEEK)_[A-Z0-9_]*[A-Z0-9])\b", README))
    assert mentioned - known == set(), "the README mentions variables the gateway never reads"
    for var in OTHER_ENV:
        assert re.search(rf"^\| `{var}` \|", README, re.MULTILINE), f"{var}: no README row"


def test_pending_readme_rows_leave_the_pending_list_once_in_the_readme() -> None:
    for var in PENDING_README:
        assert var in env_names().values(), f"{var}: not a setting"
        assert not re.search(rf"^\| `{var}` \|", README, re.MULTILINE), (
            f"{var} is in the README now: remove it from PENDING_README"
        )
