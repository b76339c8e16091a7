"""The Jupyter server extension: REST handlers under ``{base_url}/lamin/api/``.

Enabled by ``jupyter-config/jupyter_server_config.d/lamin_nb.json``, which the wheel installs
into ``<prefix>/etc/jupyter/jupyter_server_config.d/``. This module stays import-light:
jupyter_server and tornado are imported only when the server loads the extension.
"""

from __future__ import annotations

import os
from typing import Any

MODULE = "lamin_nb.jupyter.server"
LABEXTENSION = "@lamin-nb/jupyterlab"


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": MODULE}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from .handlers import DEFAULT_CHECK_INTERVAL, DEFAULT_FULL_CHECK_INTERVAL, setup_handlers

    # ``--LaminNb.instance=NAME`` / ``c.LaminNb.check_interval = 60`` in a Jupyter config;
    # ``full_check_interval``: seconds between the status bar's full checks (incremental ones
    # in between find no objects written outside lamin_nb)
    config = serverapp.config.get("LaminNb", {})
    routes = setup_handlers(
        serverapp.web_app,
        instance=config.get("instance") or None,
        check_interval=float(config.get("check_interval", DEFAULT_CHECK_INTERVAL)),
        root_dir=serverapp.root_dir,
        full_check_interval=float(config.get("full_check_interval", DEFAULT_FULL_CHECK_INTERVAL)),
    )
    serverapp.log.info("lamin_nb server extension loaded: %s", ", ".join(routes))
    if not _labextension_installed():
        serverapp.log.info(
            "lamin_nb: the JupyterLab extension is not installed (built at pip install when "
            "Node.js is there); the REST API works without it"
        )


def _labextension_installed() -> bool:
    from jupyter_core.paths import jupyter_path

    return any(
        os.path.isfile(os.path.join(folder, LABEXTENSION, "package.json"))
        for folder in jupyter_path("labextensions")
    )


# jupyter_server < 2 (and the classic notebook server) look for these names.
_jupyter_server_extension_paths = _jupyter_server_extension_points
load_jupyter_server_extension = _load_jupyter_server_extension
