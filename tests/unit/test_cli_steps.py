"""How the CLI maps a use case's outcome to its exit code and its last ``--json`` line (``cli.step_command``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

import pytest

from core.errors import BadRequest, Refused, TransientError
from migrate import cli, live
from migrate.cutover import CutoverResult
from migrate.locations import UsageError


def args(command: str) -> argparse.Namespace:
    return argparse.Namespace(command=command, json=True)


def raising(exc: Exception) -> Any:
    def run(*given: Any, **kwargs: Any) -> Any:
        raise exc

    return run


@pytest.mark.parametrize("command", ["cutover", "abort", "rollback", "finish"])
def test_a_transient_failure_exits_1_and_says_to_run_it_again(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    failure = live.NotSettled("2 job(s) Azure started are still running") if command == "rollback" else None
    assert cli.step_command(args(command), raising(failure or TransientError("GCS answered 503")), bool) == 1
    out, err = capsys.readouterr()
    assert "Run it again" in err
    assert json.loads(out.splitlines()[-1])[cli.OUTCOME[command]] is False


def test_a_refusal_and_any_other_error_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="has not switched"):
        cli.step_command(args("rollback"), raising(Refused("c has not switched")), bool)
    with pytest.raises(UsageError, match="run it again"):
        cli.step_command(args("cutover"), raising(BadRequest("_cutover/live.json is not a live-sync record")), bool)


def test_the_result_decides_the_exit_code_and_is_the_last_line(capsys: pytest.CaptureFixture[str]) -> None:
    differs = CutoverResult("r", switched=True, final_verify={"missing": 1, "different": 0})
    assert cli.step_command(args("cutover"), lambda *a, **k: differs, lambda result: result.ok) == 1
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["final_verify"]["missing"] == 1
    clean = CutoverResult("r", switched=True, final_verify={"missing": 0, "different": 0})
    assert cli.step_command(args("cutover"), lambda *a, **k: clean, lambda result: result.ok) == 0


def test_finish_is_a_command() -> None:
    parsed = cli.build_parser().parse_args(["finish", "gs://b", "az://c", "--json"])
    assert (parsed.command, parsed.json) == ("finish", True)
