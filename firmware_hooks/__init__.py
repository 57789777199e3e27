"""firmware_hooks package."""
