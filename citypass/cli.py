"""citypass CLI."""
def main() -> None:
    pass
