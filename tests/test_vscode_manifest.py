"""The VS Code extension's package.json against the server's settings tree (STYLE.md item 11):
its defaults are the server's, and what it sends at start loads without a problem."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from compilot import settings as settings_mod
from compilot.server.lsp import (
    ACCEPTED,
    PARTIALLY_ACCEPTED,
    REJECTED,
    SETTLE,
    STATS,
    STATUS,
    TRAIN,
)

MANIFEST = json.loads((Path(__file__).resolve().parents[1] / "editor-clients" / "vscode"
                       / "package.json").read_text(encoding="utf-8"))
PROPERTIES = MANIFEST["contributes"]["configuration"]["properties"]


def default(key: str) -> Any:
    return PROPERTIES[f"compilot.{key}"]["default"]


@pytest.mark.parametrize(("vscode_key", "server_value"), [
    pytest.param("completion.maxTokens", settings_mod.CompletionSettings().max_tokens,
                 id="max-tokens"),
    pytest.param("completion.candidates", settings_mod.CompletionSettings().candidates,
                 id="candidates"),
    pytest.param("completion.predictMs", settings_mod.CompletionSettings().predict_ms,
                 id="predict-ms"),
    pytest.param("logging.enabled", settings_mod.LoggingSettings().enabled, id="logging"),
])
def test_extension_defaults_are_the_servers(vscode_key: str, server_value: Any) -> None:
    assert default(vscode_key) == server_value


def test_initialization_options_from_the_defaults_load_cleanly() -> None:
    options = {"completion": {"maxTokens": default("completion.maxTokens"),
                              "candidates": default("completion.candidates"),
                              "predictMs": default("completion.predictMs")},
               "logging": {"enabled": default("logging.enabled")}}
    loaded, problems = settings_mod.load(options, path=Path("/nonexistent/config.toml"))
    assert problems == []
    assert loaded.completion.max_tokens == options["completion"]["maxTokens"]
    assert loaded.completion.predict_ms == options["completion"]["predictMs"]


def test_every_setting_is_documented() -> None:
    for key, spec in PROPERTIES.items():
        assert "default" in spec and (spec.get("markdownDescription") or
                                      spec.get("description")), key


def test_extension_commands_do_not_shadow_the_servers() -> None:
    server = {ACCEPTED, REJECTED, PARTIALLY_ACCEPTED, STATUS, TRAIN, STATS, SETTLE}
    assert not server & {c["command"] for c in MANIFEST["contributes"]["commands"]}
