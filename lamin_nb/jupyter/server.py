"""The Jupyter server extension: REST handlers under ``{base_url}/lamin/api/``.

Enabled by ``jupyter-config/jupyter_server_config.d/lamin_nb.json``, which the wheel installs
into ``<prefix>/etc/jupyter/jupyter_server_config.d/``. This module stays import-light:
jupyter_server and tornado are imported only when the server loads the extension.
"""

from __future__ import annotations

from typing import Any

MODULE = "lamin_nb.jupyter.server"


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": MODULE}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from .handlers import setup_handlers

    routes = setup_handlers(serverapp.web_app)
    serverapp.log.info("lamin_nb server extension loaded: %s", ", ".join(routes))


# jupyter_server < 2 (and the classic notebook server) look for these names.
_jupyter_server_extension_paths = _jupyter_server_extension_points
load_jupyter_server_extension = _load_jupyter_server_extension
