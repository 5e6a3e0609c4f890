"""Sphinx configuration of the meanfield documentation site (``python -m sphinx -W -b html docs DIR``).

The pages are the Markdown files of docs/ (MyST, with $...$ and $$...$$ math rendered by MathJax); the API
reference is generated from the docstrings (numpydoc sections through napoleon); the gallery
(docs/examples/*.py) is executed by sphinx-gallery when the site builds.
"""

import os
import re
import tempfile
import zlib
from pathlib import Path

import meanfield

project = "meanfield"
author = "the meanfield developers"
release = version = meanfield.__version__
extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.mathjax",
              "sphinx.ext.intersphinx", "sphinx.ext.viewcode", "sphinx_gallery.gen_gallery"]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "figures/make_figures.sh", "generated", "scripts", "examples",
                    "auto_examples/*.ipynb", "auto_examples/*.py", "auto_examples/*.zip"]
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath", "amsmath"]
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
autodoc_typehints = "description"
napoleon_google_docstring = False  # our sections are numpydoc's (Parameters, Returns, Raises, ...)
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_ivar = True  # a dataclass's Attributes section as a field list (autodoc documents the fields too)
napoleon_preprocess_types = True
napoleon_type_aliases = {"Config": "meanfield.config.schema.Config", "History": "meanfield.io.History",
                         "Report": "meanfield.io.Report", "RatesTable": "meanfield.analysis.rates.RatesTable"}
# numpydoc's words for types that are not classes
nitpick_ignore = [("py:class", w) for w in ("optional", "sequence", "array_like", "callable", "iterable")]
nitpick_ignore_regex = [("py:class", r'^\{?".*"\}?$')]  # value sets: {"sa", "usa"}
nitpicky = True  # every cross-reference must resolve: an unlinked one fails the build (-W)
html_theme = "pydata_sphinx_theme"
html_theme_options = {"navigation_with_keys": False, "show_toc_level": 2}
html_title = f"meanfield {release}"
html_static_path = []

# The executed gallery: each example runs when the site builds (its wall time is listed on the
# gallery's "computation times" page); MEANFIELD_GALLERY=0 builds the site without running them.
sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": r"/plot_",
    "plot_gallery": os.environ.get("MEANFIELD_GALLERY", "1") != "0",
    "download_all_examples": False,
    "remove_config_comments": True,
    "within_subsection_order": "FileNameSortKey",
    "show_memory": False,
    "abort_on_example_error": True,
}

# Links to numpy, scipy, xarray and Python. The published inventories are fetched when the network
# allows; offline (CI machines, air-gapped clusters) a small inventory of the names our docstrings
# use, written below with the same addresses, stands in, so the links work either way.
_EXTERNAL = {
    "python": ("https://docs.python.org/3/", {
        "pathlib.Path": ("py:class", "library/pathlib.html#pathlib.Path"),
        "Path": ("py:class", "library/pathlib.html#pathlib.Path"),
    }),
    "numpy": ("https://numpy.org/doc/stable/", {
        "numpy.ndarray": ("py:class", "reference/generated/numpy.ndarray.html"),
        "np.ndarray": ("py:class", "reference/generated/numpy.ndarray.html"),
        "numpy.random.Generator": ("py:class", "reference/random/generator.html#numpy.random.Generator"),
    }),
    "xarray": ("https://docs.xarray.dev/en/stable/", {
        "xarray.Dataset": ("py:class", "generated/xarray.Dataset.html"),
    }),
}


def _fallback_inventory(name: str, entries: dict) -> str:
    """An objects.inv (format 2) with ``entries``: {target: (domain:role, path)} -> its file."""
    body = "".join(f"{target} {role} 1 {path} -\n" for target, (role, path) in entries.items())
    head = f"# Sphinx inventory version 2\n# Project: {name}\n# Version: \n# The remainder of this file is compressed using zlib.\n"
    path = Path(tempfile.gettempdir()) / f"meanfield-docs-{name}.inv"
    path.write_bytes(head.encode() + zlib.compress(body.encode()))
    return str(path)


intersphinx_mapping = {name: (url, (None, _fallback_inventory(name, entries)))
                       for name, (url, entries) in _EXTERNAL.items()}
intersphinx_timeout = 5

_NUMPYDOC = re.compile(r"^(Parameters|Returns|Yields|Raises|Examples|Notes|Attributes|See Also)\n-{3,}$", re.M)
_LITERAL = re.compile(r"(``.+?``|`[^`]+`_?|:[a-z:]+:`[^`]+`)")


def _plain_to_rst(app, what, name, obj, options, lines):
    """Docstrings in numpydoc form are left to napoleon. The older plain-text ones write formulas as
    text (|x|, x_i, e^{beta}, 2*pi): escape the characters reStructuredText would read as markup
    (substitution bars, emphasis stars, trailing reference underscores) so they render as prose."""
    if not lines or _NUMPYDOC.search("\n".join(lines)):
        return
    out = []
    for line in lines:
        parts = _LITERAL.split(line)
        for i in range(0, len(parts), 2):  # even parts are outside inline literals and roles
            p = parts[i].replace("\\", "\\\\").replace("|", "\\|").replace("*", "\\*")
            parts[i] = re.sub(r"(\w)_(?=\W|$)", r"\1\\_", p)
        out.append("".join(parts))
    lines[:] = out


def setup(app):
    app.connect("autodoc-process-docstring", _plain_to_rst)
default_role = "py:obj"  # `name` in a docstring links to it
