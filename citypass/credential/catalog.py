"""Visitor texts in any language the catalogs hold: gettext catalogs read with the standard library.

The catalogs live beside this module, in ``locale/<lang>/LC_MESSAGES/citypass.mo`` (compiled from the ``.po``
files next to them; ``locale/citypass.pot`` is the template translators start from). They are built from the
source table :data:`citypass.credential.visitortexts.SOURCE` by ``scripts/build-assets`` (Babel, the ordinary
gettext tool). Messages are keyed by stable ids (``reason.passback``): gettext's "monolingual" style, in which
the English catalog is a translation like any other.

A language is available when its ``.mo`` file is there — adding Japanese is a new ``ja/LC_MESSAGES/citypass.po``
and a rebuild, no code. A message a catalog lacks falls back to English, then to the id itself::

    >>> "zh" in languages() and "en" in languages()
    True
    >>> text("screen.persons", "zh", n=3)
    '3 人通行'
    >>> reason_text(Reason.PASSBACK, "en")
    'Entered recently; try again later'
    >>> text("screen.welcome", "xx")          # a language without a catalog: English
    'Welcome'

The module functions read the catalogs shipped in the package; a :class:`Catalogs` over another folder (a
translator's work in progress, a test's) behaves the same.
"""

from __future__ import annotations

import functools
import gettext
from collections.abc import Iterable
from pathlib import Path

from citypass.credential.reasons import Reason
from citypass.credential.visitortexts import SOURCE
from citypass.errors import InvalidInput

DOMAIN = "citypass"
LOCALE_DIR = Path(__file__).with_name("locale")
FALLBACK = "en"


class Catalogs:
    """The compiled catalogs in one ``locale`` folder (each loaded once, on first use)."""

    def __init__(self, locale_dir: Path = LOCALE_DIR) -> None:
        self.locale_dir = Path(locale_dir)
        self._translations = functools.cache(self._load)

    def languages(self) -> tuple[str, ...]:
        """The languages with a compiled catalog, sorted."""
        return tuple(sorted(p.parent.parent.name for p in self.locale_dir.glob(f"*/LC_MESSAGES/{DOMAIN}.mo")))

    def _load(self, lang: str) -> gettext.NullTranslations:
        english = gettext.translation(DOMAIN, self.locale_dir, languages=[FALLBACK], fallback=True)
        if lang == FALLBACK:
            return english
        found = gettext.translation(DOMAIN, self.locale_dir, languages=[lang], fallback=True)
        if isinstance(found, gettext.GNUTranslations):
            found.add_fallback(english)
            return found
        return english

    def text(self, key: str, lang: str, **values: object) -> str:
        """The message ``key`` in ``lang``, with ``{name}`` placeholders filled from ``values``."""
        message = self._translations(lang).gettext(key)
        return message.format(**values) if values else message

    def reason_text(self, reason: Reason, lang: str) -> str:
        """A decision reason's message in ``lang``."""
        return self.text(f"reason.{reason.value}", lang)

    def table(self, lang: str, prefixes: Iterable[str] = ("",)) -> dict[str, str]:
        """Every message whose id starts with one of ``prefixes``, in ``lang`` (placeholders left in): what a
        page that formats its own texts downloads."""
        wanted = tuple(prefixes)
        return {key: self.text(key, lang) for key in SOURCE if key.startswith(wanted)}

    def require(self, wanted: Iterable[str]) -> tuple[str, ...]:
        """``wanted`` as a tuple, or :class:`InvalidInput` naming the languages without a catalog."""
        langs = tuple(wanted)
        have = self.languages()
        missing = [lang for lang in langs if lang not in have]
        if missing:
            raise InvalidInput(f"no catalog for language(s) {', '.join(missing)} (available: {', '.join(have)})")
        return langs


#: The catalogs shipped in the package.
SHIPPED = Catalogs()
languages = SHIPPED.languages
text = SHIPPED.text
reason_text = SHIPPED.reason_text
table = SHIPPED.table
