"""People who sign in: users, teams, passwords, browser sessions, second factor, and the
audit log every change goes through (see docs/decisions/0015-accounts.md)."""
