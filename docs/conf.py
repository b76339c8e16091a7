"""Sphinx configuration: executed tutorials (myst-nb), the API from numpydoc docstrings.

Built by ``./scripts/docs``, which first executes the notebooks into ``tutorials/`` (and writes
the generated CLI page); Sphinx itself executes nothing.
"""

from __future__ import annotations

project = "lamin_nb"
author = "lamin_nb developers"
copyright = "2026, lamin_nb developers"  # noqa: A001 (Sphinx's own name)

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "node_modules", "README.md"]
html_theme = "furo"
html_title = "lamin_nb"
html_static_path = ["_static"]

# The notebooks arrive executed (widget state included); Sphinx renders them as they are.
nb_execution_mode = "off"
# The widget renderer ships with the site (docs/package.json), not from a CDN: the built site
# works with no internet.
nb_ipywidgets_js = {
    "require.js": {},  # paths are relative to _static
    "widgets/embed-amd.js": {"data-jupyter-widgets-cdn-only": "true"},
}

napoleon_google_docstring = False
napoleon_numpy_docstring = True
autodoc_member_order = "bysource"
autodoc_typehints = "description"
myst_heading_anchors = 3
suppress_warnings = ["mystnb.unknown_mime_type"]
