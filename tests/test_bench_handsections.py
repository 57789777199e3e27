"""``bench all`` rewrites docs/benchmarks.md but keeps the sections measured on their own."""

from __future__ import annotations

from pathlib import Path

from citypass.bench.handsections import keep_hand_sections, sections

OLD = """# Benchmarks

intro (old)

## Machine

old machine

## Verify

old verify

## Broker at fleet size

10,000 gates, by hand

## Sync

old sync

## Cluster run

three nodes, by hand
"""

NEW = """# Benchmarks

intro (new)

## Machine

new machine

## Verify

new verify

## Sync

new sync
"""


def test_hand_sections_are_kept_after_their_old_neighbours_and_generated_ones_replaced() -> None:
    merged = keep_hand_sections(OLD, NEW)
    assert [h for h, _ in sections(merged)[1]] == [
        "## Machine", "## Verify", "## Broker at fleet size", "## Sync", "## Cluster run"]
    assert "new verify" in merged and "old verify" not in merged and "intro (new)" in merged
    assert "10,000 gates, by hand" in merged and "three nodes, by hand" in merged
    assert merged.endswith("three nodes, by hand\n") and "\n\n\n" not in merged


def test_nothing_to_keep_leaves_the_new_report_as_it_is() -> None:
    assert keep_hand_sections(NEW, NEW) == NEW
    assert keep_hand_sections("", NEW) == NEW


def test_the_committed_report_survives_a_rewrite_by_its_own_generated_sections() -> None:
    report = (Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    head, parts = sections(report)
    only_generated = head + "".join(text for heading, text in parts if "bench broker" not in heading)
    merged = keep_hand_sections(report, only_generated)
    assert [h for h, _ in sections(merged)[1]] == [h for h, _ in parts]
