"""The guest pages' one HTML shell (edged/web/shell.py): the landing page and the poster."""

from __future__ import annotations

from edged.config import GuestConfig
from edged.web.guest_qr import poster_html
from edged.web.pages import landing_html
from edged.web.shell import html_page

HEAD = (
    "<!doctype html><html lang=en><head><meta charset=utf-8>"
    '<meta name=viewport content="width=device-width,initial-scale=1">'
)


def test_the_shell_escapes_its_title_and_body_style_and_keeps_its_body() -> None:
    page = html_page('A<b>"&', "h1{margin:0}", "<main>x</main>", body_style='--a:#f00"<')
    assert page == (
        f"{HEAD}<title>A&lt;b&gt;&quot;&amp;</title><style>h1{{margin:0}}</style></head>"
        '<body style="--a:#f00&quot;&lt;"><main>x</main></body></html>'
    )
    assert page.count("<body") == 1
    assert html_page("T", "", "<main></main>").endswith("<body><main></main></body></html>")


def test_the_landing_page_and_the_poster_are_built_in_it() -> None:
    landing = landing_html("Gala <1>", "box", [], accent="#0af")
    assert landing.startswith(f"{HEAD}<title>Gala &lt;1&gt;</title><style>body{{")
    assert '</style></head><body style="--a:#0af"><header>' in landing
    assert landing.endswith("</script></body></html>")
    poster = poster_html(title="Gala <1>", link="http://10.0.0.2/", typed="", guest=GuestConfig())
    assert poster.startswith(f"{HEAD}<title>Gala &lt;1&gt;</title><style>@page{{size:A4")
    assert "</style></head><body><main><h1>Gala &lt;1&gt;</h1>" in poster
    assert poster.endswith("</main></body></html>")
