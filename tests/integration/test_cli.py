"""The `cti` command as a user runs it: bad configuration is a clear error, not a trace."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

from cti.cli import main
from tests.checkout import checkout_env


def run_cti(*args: str, cwd: Path, input: str | None = None) -> subprocess.CompletedProcess[str]:
    """``cti`` in a process of its own, running this checkout's code."""
    return subprocess.run(
        [sys.executable, "-m", "cti.cli", *args],
        capture_output=True, text=True, cwd=cwd, timeout=60, check=False, input=input,
        env=checkout_env(),
    )  # fmt: skip


def cti_here(*args: str, input: str = "") -> subprocess.CompletedProcess[str]:
    """The same command in this process: ``cti.cli.main``, what the ``cti`` script calls,
    with its own standard input, output and error. For a test's further commands once
    ``run_cti`` has shown the real process doing the same: each process start imports the
    program again (about a second on the CI machine)."""
    out, err = io.StringIO(), io.StringIO()
    stdin = sys.stdin
    sys.stdin = io.StringIO(input)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse refusing the arguments
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        sys.stdin = stdin
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def test_run_with_bad_config_exits_2_with_one_line_per_problem(tmp_path: Path) -> None:
    conf = tmp_path / "bad.toml"
    conf.write_text('[ami]\nport = 0\n[database]\nurl = "sqlite:///x.db"\n[nosuch]\na = 1\n')
    proc = run_cti("--config", str(conf), "run", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "ami.port" in proc.stderr and "greater than or equal to 1" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_run_with_an_unknown_section_is_refused(tmp_path: Path) -> None:
    conf = tmp_path / "bad.toml"
    conf.write_text(f'[database]\nurl = "sqlite:///{tmp_path}/x.db"\n[nosuch]\na = 1\n')
    proc = run_cti("--config", str(conf), "run", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "nosuch: unknown section" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_setup_writes_a_config_with_a_secret_and_keeps_it(tmp_path: Path) -> None:
    conf = tmp_path / "var" / "cti.toml"
    assert run_cti("--config", str(conf), "setup", cwd=tmp_path).returncode == 0
    first = conf.read_text()
    assert 'secret = "' in first and (conf.stat().st_mode & 0o777) == 0o600
    assert run_cti("--config", str(conf), "setup", cwd=tmp_path).returncode == 0
    assert conf.read_text() == first


def test_token_create_prints_a_token(tmp_path: Path) -> None:
    conf = tmp_path / "cti.toml"
    conf.write_text(f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path}/t.db"\n')
    proc = run_cti(
        "--config", str(conf), "token", "create", "alice", "--role", "agent", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.strip()) >= 40


def test_run_without_asterisks_logs_is_refused_with_what_to_set(tmp_path: Path) -> None:
    """No log_dir and no local instance: the daemon could not recover calls: it does not
    start, and says what to set. (No etc_dir is needed: the ACD and the phones push their
    files over AMI, decision 0031.)"""
    conf = tmp_path / "cti.toml"
    conf.write_text(
        f'[database]\nurl = "sqlite:///{tmp_path}/x.db"\n'
        '[asterisk]\ninstance = "no-such-instance"\n'
    )
    proc = run_cti("--config", str(conf), "run", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "asterisk.log_dir" in proc.stderr and "Traceback" not in proc.stderr


def test_users_and_tokens_from_the_command_line(tmp_path: Path) -> None:
    conf = tmp_path / "cti.toml"
    conf.write_text(
        f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path}/t.db"\n'
        "[auth]\nargon2_time_cost = 1\nargon2_memory_kib = 1024\nargon2_parallelism = 1\n"
    )

    def cti(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return cti_here("--config", str(conf), *args, input=stdin)

    # the real process: the first command (it makes the database) and a password on stdin
    made = run_cti("--config", str(conf), "user", "create", "anna", "--role", "agent",
                   "--agent", "agent101", "--generate", cwd=tmp_path)  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert len(made.stdout.strip()) >= 16  # the generated password, shown once
    again = cti("user", "create", "anna", "--generate", "--if-missing")
    assert again.returncode == 0 and again.stdout == ""
    weak = cti("user", "create", "bob", stdin="short\n")
    assert weak.returncode == 2 and "at least 10 characters" in weak.stderr
    bob = run_cti("--config", str(conf), "user", "create", "bob", "--role", "admin",
                  cwd=tmp_path, input="a long enough one\n")  # fmt: skip
    assert bob.returncode == 0, bob.stderr
    listed = cti("user", "list").stdout
    assert "anna" in listed and "agent101" in listed and "bob" in listed
    assert cti("user", "disable", "anna").returncode == 0
    assert "disabled" in cti("user", "list").stdout
    secret = cti("token", "create", "wallboard", "--role", "supervisor", "--expires-days", "30")
    assert secret.returncode == 0
    tokens = cti("token", "list").stdout
    assert "wallboard" in tokens and secret.stdout.strip() not in tokens
    token_id = tokens.split()[0]
    assert cti("token", "revoke", token_id).returncode == 0
    assert "wallboard" not in cti("token", "list").stdout
    assert "revoked" in cti("token", "list", "--all").stdout
    assert cti("token", "revoke", "nosuch").returncode == 1


def test_each_feature_command_is_there_when_named_and_in_the_help() -> None:
    """Only the named feature's commands are loaded (a faster start): each one still
    answers, and the help lists every command."""
    from importlib.metadata import entry_points

    names = sorted(ep.name for ep in entry_points(group="cti.commands"))
    assert {"acd", "phones", "stats"} <= set(names)
    for name in names:
        shown = cti_here(name, "--help")
        assert shown.returncode == 0 and f"usage: cti {name}" in shown.stdout, shown
    listed = cti_here("--help").stdout
    assert all(name in listed for name in ("setup", "user", "token", "run", *names))
    wrong = cti_here("nosuch")
    assert wrong.returncode == 2 and all(name in wrong.stderr for name in names)
