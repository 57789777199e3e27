"""Build the visitor-text catalogs from the source table, with Babel: ``python -m citypass.credential.catalogbuild``.

``scripts/build-assets`` runs this (and ``--check`` in the tests). In ``citypass/credential/locale`` it writes:

* ``citypass.pot`` — the template: every id of :data:`~citypass.credential.visitortexts.SOURCE`, with the English
  and Chinese as comments for translators;
* ``zh`` and ``en`` ``.po`` files, whose messages are the source table's (these two are written, not translated);
* every other language's ``.po`` (``ja``, ``ko``, … made with ``pybabel init -l ja``) updated from the template
  like ``pybabel update`` does: translations kept, new ids added empty, dropped ids removed;
* a compiled ``.mo`` beside each ``.po``, which is what the gate and the issuer read at run time (with the
  standard library's :mod:`gettext`; Babel is a build tool only).

Everything is written deterministically (fixed dates in the headers), so ``--check`` can rebuild in memory and
compare byte for byte with what is committed.
"""

from __future__ import annotations

import io
import sys
from datetime import UTC, datetime
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po

from citypass.credential.catalog import DOMAIN, LOCALE_DIR
from citypass.credential.visitortexts import SOURCE, SOURCE_LANGUAGES

#: Headers carry this date, not the build's: a rebuild must reproduce the committed files byte for byte.
FIXED_DATE = datetime(2026, 1, 1, tzinfo=UTC)
PROJECT = "citypass"


class _StableCatalog(Catalog):
    """A catalog whose header does not name the Babel version that wrote it (a rebuild with another Babel
    must reproduce the committed files)."""

    def _get_mime_headers(self) -> list[tuple[str, str]]:
        return [(name, value) for name, value in super()._get_mime_headers() if name != "Generated-By"]


def _catalog(locale: str | None) -> Catalog:
    cat = _StableCatalog(locale=locale, domain=DOMAIN, project=PROJECT, version="1", copyright_holder="City Pass",
                         msgid_bugs_address="", creation_date=FIXED_DATE, revision_date=FIXED_DATE,
                         last_translator="City Pass", language_team=f"{locale or 'LANGUAGE'}")
    cat.fuzzy = False
    return cat


def template() -> Catalog:
    """The template: every id, the source texts as extracted comments."""
    pot = _catalog(None)
    for key, (zh, en) in SOURCE.items():
        pot.add(key, "", auto_comments=[f"en: {en}", f"zh: {zh}"])
    return pot


def catalog_for(lang: str, existing: bytes | None, pot: Catalog) -> Catalog:
    """The catalog of ``lang``: written from the source table for zh and en, updated from ``pot`` otherwise."""
    if lang in SOURCE_LANGUAGES:
        cat = _catalog(lang)
        index = SOURCE_LANGUAGES.index(lang)
        for key, pair in SOURCE.items():
            cat.add(key, pair[index], auto_comments=[f"en: {pair[1]}"])
        return cat
    cat = _catalog(lang)
    for message in read_po(io.BytesIO(existing or b""), locale=lang, domain=DOMAIN):
        if message.id:
            cat[message.id] = message
    cat.update(pot, no_fuzzy_matching=True, update_creation_date=False)
    cat.obsolete.clear()
    return cat


def render(locale_dir: Path = LOCALE_DIR) -> dict[Path, bytes]:
    """Every catalog file's bytes, by path (nothing written)."""
    pot = template()
    out: dict[Path, bytes] = {locale_dir / f"{DOMAIN}.pot": _po_bytes(pot)}
    langs = set(SOURCE_LANGUAGES) | {p.parent.parent.name for p in locale_dir.glob(f"*/LC_MESSAGES/{DOMAIN}.po")}
    for lang in sorted(langs):
        po_path = locale_dir / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
        cat = catalog_for(lang, po_path.read_bytes() if po_path.exists() else None, pot)
        out[po_path] = _po_bytes(cat)
        mo = io.BytesIO()
        write_mo(mo, cat, use_fuzzy=False)
        out[po_path.with_suffix(".mo")] = mo.getvalue()
    return out


def _po_bytes(cat: Catalog) -> bytes:
    buf = io.BytesIO()
    write_po(buf, cat, width=100, sort_output=False, include_previous=False)
    return buf.getvalue()


def stale(locale_dir: Path = LOCALE_DIR) -> list[Path]:
    """The catalog files that differ from a rebuild (empty when everything is current)."""
    return [path for path, data in render(locale_dir).items() if not path.exists() or path.read_bytes() != data]


def build(locale_dir: Path = LOCALE_DIR) -> list[Path]:
    """Write every catalog file that changed; return them."""
    changed = []
    for path, data in render(locale_dir).items():
        if not path.exists() or path.read_bytes() != data:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            changed.append(path)
    return changed


def main(argv: list[str]) -> int:
    if argv[1:] == ["--check"]:
        behind = stale()
        for path in behind:
            print(f"catalog out of date: {path}", file=sys.stderr)
        if not behind:
            print("catalogs: the committed catalogs are what the source table builds")
        return 1 if behind else 0
    changed = build()
    print(f"catalogs: {len(changed)} file(s) written in {LOCALE_DIR}" if changed else "catalogs: up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
