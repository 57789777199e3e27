"""citypass package."""
