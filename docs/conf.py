"""Sphinx configuration of the meanfield documentation site (``python -m sphinx -W -b html docs DIR``).

The pages are the Markdown files of docs/ (MyST); the API reference is generated from the docstrings.
"""

import meanfield

project = "meanfield"
author = "the meanfield developers"
release = version = meanfield.__version__
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.mathjax", "sphinx.ext.viewcode"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "figures/make_figures.sh", "generated", "scripts"]  # generated/: included by the pages
myst_heading_anchors = 3
myst_enable_extensions = []  # our formulas are plain text: no $...$ math
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
autodoc_typehints = "description"
html_theme = "alabaster"
html_title = f"meanfield {release}"
html_static_path = []


def _verbatim(app, what, name, obj, options, lines):
    """Our docstrings are plain text with formulas (|x|, x_i, rho_1 ...), not reStructuredText: show them
    as written (a literal block), so nothing in them is misread as markup."""
    if lines:
        text = [ln.rstrip() for ln in lines]
        lines[:] = ["::", ""] + ["    " + ln for ln in text] + [""]


def setup(app):
    app.connect("autodoc-process-docstring", _verbatim)
