"""``python -m citypass.fuzz TARGET [libFuzzer options] [CORPUS…]``: one target under atheris (libFuzzer).

``python -m citypass.fuzz --seed DIR`` writes the seed corpora (``DIR/<target>/<name>``)."""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> None:
    if len(argv) >= 3 and argv[1] == "--seed":
        from citypass.fuzz.targets import seeds

        for name_, files in seeds().items():
            folder = Path(argv[2]) / name_
            folder.mkdir(parents=True, exist_ok=True)
            for name, data in files.items():
                (folder / name).write_bytes(data)
        return
    import atheris  # a dev dependency: only the fuzzer needs it

    # Coverage feedback from the project's own code (the credential format, the codec, ingest), instrumented as the
    # targets import it; instrumenting every loaded module (pydantic, FastAPI, …: ~6,600 functions) took ~35 s a run.
    with atheris.instrument_imports(include=["citypass"]):
        from citypass.fuzz.targets import TARGETS
    if len(argv) < 2 or argv[1] not in TARGETS:
        raise SystemExit(f"usage: python -m citypass.fuzz ({'|'.join(sorted(TARGETS))}) [libFuzzer options] [CORPUS…]"
                         "\n       python -m citypass.fuzz --seed DIR")
    atheris.Setup([argv[0], *argv[2:]], TARGETS[argv[1]])
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
