"""griffin-figures wandb:ENTITY/PROJECT when W&B cannot be used: no API key, or a host that
does not answer, is one line and exit code 2 within seconds (no login prompt, no retries, no
traceback), whatever --wandb-mode says; an error of the W&B client is one line too; and
--wandb --wandb-mode online without a key is refused before the work."""

from __future__ import annotations

import socket
import time

import pytest

from analysis.cli import figures_main
from analysis.load import load_wandb
from run_store import StoreError


@pytest.fixture
def no_wandb_key(tmp_path, monkeypatch):
    for name in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "NETRC", "WANDB_BASE_URL", "WANDB_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def figures_error(capsys, *argv: str) -> tuple[int, str, float]:
    start = time.monotonic()
    code = figures_main(list(argv))
    seconds = time.monotonic() - start
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and captured.out == "", captured
    return code, lines[0], seconds


def test_no_api_key_is_one_line_at_once(no_wandb_key, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network attempt {args!r}")

    monkeypatch.setattr(socket.socket, "connect", lambda self, *a: refuse(*a))
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    code, line, seconds = figures_error(capsys, "wandb:foo/bar", "--wandb-mode", "disabled")
    assert code == 2 and seconds < 5
    assert line == ("griffin-figures: error: wandb:foo/bar: no W&B API key (set WANDB_API_KEY or run `wandb login`); "
                    "loading runs from W&B needs one, whatever --wandb-mode says")


def test_a_host_that_does_not_answer_is_one_line_within_seconds(no_wandb_key, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    url = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("WANDB_BASE_URL", url)
    code, line, seconds = figures_error(capsys, "wandb:foo/bar")
    assert code == 2 and seconds < 5
    assert line == (f"griffin-figures: error: wandb:foo/bar: the W&B host {url} (WANDB_BASE_URL) did not answer "
                    "within 2 s")


def test_errors_of_the_wandb_client_are_one_line():
    class Api:
        def runs(self, path, filters=None):
            raise ValueError("Could not find project bar\nwith more lines")

    with pytest.raises(StoreError, match=r"^wandb:foo/bar: cannot list the runs \(ValueError: Could not find "
                                         r"project bar with more lines\)$"):
        load_wandb("foo/bar", api=Api())


def test_online_logging_without_a_key_is_refused_before_the_work(no_wandb_key, tmp_path, capsys):
    code, line, seconds = figures_error(capsys, str(tmp_path / "no-store"), "--wandb", "--wandb-mode", "online")
    assert code == 2 and line == ("griffin-figures: error: --wandb-mode online: no W&B API key (set WANDB_API_KEY or "
                                  "run `wandb login`; auto logs offline without one)")
