"""A throwaway IMAP server for tests (no tests here): Debian's dovecot (dovecot-imapd,
installed by scripts/bootstrap.sh) started in the foreground with its own configuration
in a temporary directory (plain IMAP on 127.0.0.1, one user from a passwd-file, Maildir),
stopped and removed afterwards. The machine's own dovecot, if any, is never touched.

Run as root, dovecot's login processes drop to ``dovenull`` and mail to ``dovecot``
(the package's users); otherwise everything runs as the current user."""

from __future__ import annotations

import getpass
import imaplib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.acceptance.harness import free_port

DOVECOT = "/usr/sbin/dovecot"
USER = "crm"
PASSWORD = "imap-test-secret"


@dataclass(frozen=True)
class ImapServer:
    host: str
    port: int
    username: str
    password: str

    def client(self) -> imaplib.IMAP4:
        conn = imaplib.IMAP4(self.host, self.port, timeout=10)
        conn.login(self.username, self.password)
        conn.select("INBOX")
        return conn

    def append(self, raw: bytes) -> None:
        conn = self.client()
        try:
            status, data = conn.append("INBOX", None, None, raw)
            assert status == "OK", data
        finally:
            conn.logout()

    def clear(self) -> None:
        conn = self.client()
        try:
            _, data = conn.select("INBOX")
            if data and data[0] and int(data[0]) > 0:
                conn.store("1:*", "+FLAGS", "(\\Deleted)")
                conn.expunge()
        finally:
            conn.logout()

    def unseen(self) -> int:
        conn = self.client()
        try:
            _, data = conn.uid("SEARCH", "UNSEEN")
            return len(data[0].split()) if data and data[0] else 0
        finally:
            conn.logout()


def _config(base: Path, port: int) -> str:
    if os.geteuid() == 0:
        internal, login, mail = "dovecot", "dovenull", "dovecot"
    else:
        internal = login = mail = getpass.getuser()
    return f"""
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
info_log_path = {base}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
default_internal_user = {internal}
default_internal_group = {internal}
default_login_user = {login}
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {base}/users
}}
userdb {{
  driver = static
  args = uid={mail} gid={mail} home={base}/home/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""


@contextmanager
def dovecot() -> Iterator[ImapServer]:
    if not os.path.exists(DOVECOT):
        pytest.fail(
            f"{DOVECOT} is missing: the IMAP tests need Debian's dovecot-imapd "
            "(scripts/bootstrap.sh installs it)",
            pytrace=False,
        )
    base = Path(tempfile.mkdtemp(prefix="cti-dovecot-"))
    base.chmod(0o755)  # the login and mail users traverse it
    port = free_port()
    (base / "dovecot.conf").write_text(_config(base, port))
    (base / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    (base / "home").mkdir()
    if os.geteuid() == 0:
        shutil.chown(base / "home", "dovecot", "dovecot")
    proc = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(base / "dovecot.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = ImapServer("127.0.0.1", port, USER, PASSWORD)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                server.client().logout()
                break
            except (OSError, imaplib.IMAP4.error) as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = (
                        (base / "dovecot.log").read_text()
                        if (base / "dovecot.log").exists()
                        else ""
                    )
                    pytest.fail(f"dovecot did not start ({exc}): {log[-2000:]}", pytrace=False)
                time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        shutil.rmtree(base, ignore_errors=True)
