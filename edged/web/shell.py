"""The HTML shell every guest page is built in: small, inline, no framework."""

from __future__ import annotations

from html import escape
from pathlib import Path
from string import Template

TEMPLATES = Path(__file__).parent / "templates"


def html_page(title: str, style: str, body: str, *, body_style: str = "") -> str:
    """A whole page: doctype, a phone's viewport, the title (escaped), the inline `style` and
    `body` (markup, as given); `body_style` (escaped) goes on the <body> element."""
    body_tag = f'<body style="{escape(body_style)}">' if body_style else "<body>"
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{style}</style></head>"
        f"{body_tag}{body}</body></html>"
    )


def page_template(name: str) -> Template:
    """The page template `name` (in templates/) without its script's comment lines (a line that
    starts with `//`): they are for whoever reads the file, and every byte before the first frame
    counts on a phone."""
    lines = (TEMPLATES / name).read_text("utf-8").splitlines(keepends=True)
    return Template("".join(line for line in lines if not line.lstrip().startswith("//")))
