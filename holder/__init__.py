"""holder package."""
