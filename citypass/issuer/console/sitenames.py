"""How the console names a site to an operator: its title in the page's language, never a bare number.

A site has a number (what credentials, taps and gates carry), a slug (``name``: what forms filter by and links
point at) and display titles (Chinese ``title``, English ``title_en``). A table cell that says which site shows
the title as the City now table does — Chinese: ``title``; English: ``title_en``, else ``title`` — and, for a
site with no title, its slug. Only a number the store knows no site for stands as the number itself.

    >>> from citypass.credential.sites import SiteSettings
    >>> lake = SiteSettings(number=1, name="west-lake", title="西湖", title_en="West Lake")
    >>> temple = SiteSettings(number=2, name="lingyin", title="灵隐寺")
    >>> bus = SiteSettings(number=5, name="bus-k7")
    >>> [site_title(s, "zh") for s in (lake, temple, bus)], [site_title(s, "en") for s in (lake, temple, bus)]
    (['西湖', '灵隐寺', 'bus-k7'], ['West Lake', '灵隐寺', 'bus-k7'])
    >>> names = site_titles([lake, temple], "en")
    >>> title_of(names, 1), title_of(names, 9), title_of(names, None)
    ('West Lake', '9', '—')
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from citypass.credential.sites import SiteSettings


def site_title(site: SiteSettings, lang: str) -> str:
    """``site`` as an operator working in ``lang`` (``zh`` or ``en``) reads it: the title, else the slug."""
    title = (site.title_en or site.title) if lang == "en" else site.title
    return title or site.name


def site_titles(sites: Iterable[SiteSettings], lang: str) -> dict[int, str]:
    """Every site's :func:`site_title` by number (read once per page, then looked up per row)."""
    return {site.number: site_title(site, lang) for site in sites}


def title_of(titles: Mapping[int, str], number: int | None) -> str:
    """The title of site ``number`` from :func:`site_titles`; the number itself for a site not there (``—``: none)."""
    if number is None:
        return "—"
    return titles.get(number) or str(number)


__all__ = ["site_title", "site_titles", "title_of"]
