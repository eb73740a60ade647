"""The operator CLI's contract with scripts and people (issue 17): --version, which stack a
command talks to (never a silent default), one stderr line and exit code 3 when that stack
does not answer, exit code 2 for usage errors, --json on every listing command."""
from __future__ import annotations

import json

import pytest

from shared.ops.cli import build_parser, main
from shared.ops.endpoints import FILE_NAME, postgres_address, resolve_stack, write_endpoints
from shared.ops.stack import free_port
from shared.settings import PlatformSettings

LISTINGS = [["dlq", "list"], ["outbox"], ["lag"], ["topics", "describe"]]


@pytest.fixture
def no_stack(tmp_path, monkeypatch):
    """No variable set, an empty data directory: nothing tells the CLI where the stack is."""
    for variable in ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("REKISTERI_DATA_DIR", str(tmp_path))
    return tmp_path


def dead_end_settings() -> PlatformSettings:
    """Ports nothing listens on: connecting fails at once."""
    return PlatformSettings(database_url=f"postgresql://postgres:pw-secret@127.0.0.1:{free_port()}/rekisteri",
                            kafka_bootstrap_servers=f"127.0.0.1:{free_port()}")


def run(capsys, *argv: str) -> tuple[int, str, list[str]]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err.splitlines()


def test_version_names_the_release_and_commit(capsys, monkeypatch):
    monkeypatch.setenv("REKISTERI_COMMIT", "abc1234")
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == "rekisteri 0.1.0 (commit abc1234)"


@pytest.mark.parametrize("argv", [["dlq", "list"], ["outbox"], ["lag"], ["topics", "describe"], ["migrate"],
                                  ["dlq", "replay", "--all"]])
def test_without_a_variable_or_endpoints_file_the_cli_refuses_to_guess(no_stack, capsys, argv):
    """Issue 17: `dlq list` once read whatever database answered on the default port."""
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err) == 1 and err[0].startswith("error: which stack? set ")
    assert "rekisteri up" in err[0] and FILE_NAME in err[0]


def test_the_endpoints_file_of_rekisteri_up_is_the_stack_when_no_variable_is_set(no_stack, capsys):
    settings = dead_end_settings()
    write_endpoints(no_stack, settings, {"contacts": "http://127.0.0.1:8001"})
    code, _, err = run(capsys, "outbox")
    assert code == 3
    written_at = json.loads((no_stack / FILE_NAME).read_text())["written_at"]
    assert len(err) == 1 and err[0].startswith(
        f"error: cannot reach PostgreSQL at {postgres_address(settings.database_url)} "
        f"(from {no_stack / FILE_NAME}, written by rekisteri up at {written_at}): ConnectionRefusedError")
    assert (no_stack / FILE_NAME).stat().st_mode & 0o077 == 0  # the URL may hold a password


def test_a_variable_wins_over_the_endpoints_file(no_stack, monkeypatch):
    write_endpoints(no_stack, dead_end_settings(), {})
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka.example:9092")
    stack = resolve_stack()
    assert stack.settings.kafka_bootstrap_servers == "kafka.example:9092"
    assert stack.sources["kafka"] == "from KAFKA_BOOTSTRAP_SERVERS"
    assert stack.sources["postgres"].startswith(f"from {no_stack / FILE_NAME}")


@pytest.mark.parametrize("argv, what", [
    (["dlq", "list"], "PostgreSQL"), (["outbox", "--json"], "PostgreSQL"), (["migrate", "billing"], "PostgreSQL"),
    (["lag"], "Kafka"), (["topics", "create"], "Kafka"), (["topics", "describe", "--json"], "Kafka"),
])
def test_an_unreachable_stack_is_one_line_naming_it_and_exit_code_3(no_stack, monkeypatch, capsys, argv, what):
    settings = dead_end_settings()
    monkeypatch.setenv("DATABASE_URL", settings.database_url)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap_servers)
    code, out, err = run(capsys, *argv)
    address = postgres_address(settings.database_url) if what == "PostgreSQL" else settings.kafka_bootstrap_servers
    assert code == 3 and out == ""
    assert len(err) == 1 and err[0].startswith(f"error: cannot reach {what} at {address} (from "), err
    assert "pw-secret" not in err[0] and "Traceback" not in err[0]


def test_publishing_to_an_unreachable_broker_is_exit_code_3(no_stack, monkeypatch, capsys, tmp_path):
    settings = dead_end_settings()
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap_servers)
    usage = tmp_path / "usage.json"
    usage.write_text(json.dumps({"customer_id": "2f1c6a57-5a8e-4f55-a2a4-8d8b1f1f5b8e", "meter": "cpu_hours",
                                 "quantity": "1", "time": "2026-11-01T10:00:00+00:00"}))
    code, _, err = run(capsys, "publish", "usage-recorded", "--file", str(usage))
    assert code == 3 and len(err) == 1 and "cannot reach Kafka" in err[0]


def test_a_subject_token_without_its_person_is_a_usage_error(capsys):
    code, out, err = run(capsys, "token", "--role", "subject", "--user", "self-service")
    assert code == 2 and out == "" and err == ["error: --role subject needs --person-id (the person the token belongs to)"]


def test_argument_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["lag", "--no-such-option"])
    assert exited.value.code == 2


@pytest.mark.parametrize("argv", LISTINGS)
def test_every_listing_command_takes_json(argv):
    assert build_parser().parse_args([*argv, "--json"]).json is True


def test_the_stack_is_named_without_its_password():
    stack = resolve_stack()
    assert "pw-secret" not in stack.describe("postgres", "kafka")
    assert postgres_address("postgresql://u:pw-secret@db.example:6543/rekisteri") == "db.example:6543/rekisteri"
