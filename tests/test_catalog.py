"""The visitor-text catalogs: built from the reason table, complete in zh and en, current, and open to more
languages without code (a Japanese catalog made with Babel's own ``pybabel init`` is shown by the screen)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from babel.messages.pofile import read_po, write_po

from citypass.credential import catalogbuild
from citypass.credential.catalog import LOCALE_DIR, SHIPPED, Catalogs
from citypass.credential.reasons import MESSAGES, Reason
from citypass.credential.visitortexts import SOURCE
from citypass.gate.screen.texts import ScreenTexts

PYBABEL = Path(sys.executable).parent / "pybabel"


def test_zh_and_en_catalogs_say_what_the_reason_table_says_for_every_reason() -> None:
    assert {"zh", "en"} <= set(SHIPPED.languages())
    for reason in Reason:
        zh, en = MESSAGES[reason]
        assert SHIPPED.reason_text(reason, "zh") == zh == reason.zh
        assert SHIPPED.reason_text(reason, "en") == en == reason.en


def test_zh_and_en_are_complete_every_id_translated_in_the_compiled_catalog() -> None:
    for lang in ("zh", "en"):
        with (LOCALE_DIR / lang / "LC_MESSAGES" / "citypass.po").open("rb") as fh:
            po = read_po(fh, locale=lang)
        translated = {m.id: m.string for m in po if m.id}
        assert set(translated) == set(SOURCE)
        assert all(translated.values()), [k for k, v in translated.items() if not v]
        for key in SOURCE:  # the .mo the gate reads says the same (no id falls through to English or to itself)
            assert SHIPPED.text(key, lang) == translated[key] != key


def test_the_committed_catalogs_are_what_the_source_table_builds() -> None:
    assert catalogbuild.stale() == [], "run scripts/build-assets (or python -m citypass.credential.catalogbuild)"


def test_a_stale_catalog_is_noticed(tmp_path: Path) -> None:
    locale = tmp_path / "locale"
    shutil.copytree(LOCALE_DIR, locale)
    po = locale / "zh" / "LC_MESSAGES" / "citypass.po"
    po.write_text(po.read_text(encoding="utf-8").replace("凭证已作废", "凭证作废了"), encoding="utf-8")
    assert catalogbuild.stale(locale) == [po]
    catalogbuild.build(locale)
    assert catalogbuild.stale(locale) == [] and "凭证已作废" in po.read_text(encoding="utf-8")


def test_a_new_language_is_a_catalog_not_code(tmp_path: Path) -> None:
    """A translator starts Japanese from the template with pybabel, translates, rebuilds: the screen shows it."""
    locale = tmp_path / "locale"
    shutil.copytree(LOCALE_DIR, locale)
    subprocess.run([str(PYBABEL), "init", "-i", str(locale / "citypass.pot"), "-d", str(locale), "-D", "citypass",
                    "-l", "ja"], check=True, capture_output=True)
    po_path = locale / "ja" / "LC_MESSAGES" / "citypass.po"
    with po_path.open("rb") as fh:
        po = read_po(fh, locale="ja")
    assert {m.id for m in po if m.id} == set(SOURCE)  # the template offers every id
    japanese = {"screen.welcome": "どうぞお通りください",
                "reason.passback": "入場したばかりです。しばらくお待ちください"}
    for key, text in japanese.items():
        po[key].string = text
    with po_path.open("wb") as fh:
        write_po(fh, po)
    catalogbuild.build(locale)  # compiles ja beside zh and en, keeping the translations
    assert catalogbuild.stale(locale) == []

    catalogs = Catalogs(locale)
    assert catalogs.languages() == ("en", "ja", "zh")
    texts = ScreenTexts(catalogs, catalogs.require(["ja", "en"]), {"ja": "西湖", "en": "West Lake"})
    allow = texts.allow(1, ())
    assert [line["title"] for line in allow["lines"]] == ["どうぞお通りください", "Welcome"]
    deny = texts.deny(Reason.PASSBACK)
    assert deny["lines"][0]["title"] == "入場したばかりです。しばらくお待ちください"
    assert deny["lines"][0]["details"] == ["Please try again later"]  # not translated yet: English stands in
