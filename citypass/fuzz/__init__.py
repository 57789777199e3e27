"""Coverage-guided fuzzing of the parsers that read what the outside world sends (see :mod:`citypass.fuzz.targets`).

Run one target with atheris (libFuzzer): ``python -m citypass.fuzz TARGET [libFuzzer options] [CORPUS…]``;
write the seed corpora with ``python -m citypass.fuzz --seed DIR``. docs/security.md says how long to run them.
"""
