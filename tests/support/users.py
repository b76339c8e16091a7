"""A Jupyter identity provider that knows two users apart, as JupyterHub's does.

Started with ``--ServerApp.identity_provider_class=tests.support.users.TwoUsers``: the header
``Authorization: token alice-token`` is alice, ``... bob-token`` is bob, the server's own
token is admin, anything else nobody.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth import IdentityProvider, User

TOKENS = {"alice-token": "alice", "bob-token": "bob"}


class TwoUsers(IdentityProvider):
    def get_user(self, handler: Any) -> User | None:
        token = self.get_token(handler)  # from the Authorization header or ?token=
        name = "admin" if token and token == self.token else TOKENS.get(token or "")
        if name is None:
            return None
        handler._token_authenticated = True  # header auth needs no XSRF token, as Jupyter's
        return User(name)
