"""MkDocs hook: the docstrings' Sphinx roles (:class:`X`, :func:`X`, ...) become links.

The docstrings name other objects the Sphinx way, which Markdown renders as ``:class:`` followed
by code. On the API pages this hook turns each into an optional cross-reference that
mkdocs-autorefs resolves when the target is documented (a full ``eqprop.`` path, or a name of the
page's own subpackage) and leaves as plain code otherwise. Nothing else is changed.
"""

from __future__ import annotations

import html
import re

ROLE = re.compile(r":(?:class|func|meth|mod|attr|exc|data|obj):<code>(~?)([^<]+)</code>")


def _link(match: re.Match, package: str | None) -> str:
    short, target = match.group(1) == "~", html.unescape(match.group(2)).strip()
    shown = target.rsplit(".", 1)[-1] if short else target
    if target.startswith("eqprop."):
        identifier = target
    elif package and not target.startswith("."):
        identifier = f"{package}.{target}"
    else:
        return f"<code>{html.escape(shown.lstrip('.'))}</code>"
    return f'<autoref identifier="{html.escape(identifier)}" optional><code>{html.escape(shown)}</code></autoref>'


def on_page_content(content: str, page, config, files) -> str:  # noqa: ARG001 - the MkDocs hook signature
    path = page.file.src_uri
    package = None
    if path.startswith("api/") and path.endswith(".md"):
        package = "eqprop." + path[len("api/"):-len(".md")].replace("/", ".")
    return ROLE.sub(lambda m: _link(m, package), content)
