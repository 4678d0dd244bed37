"""Use cases: login, sessions, tokens, account. The web layer talks only to these."""
