"""Azurite, Microsoft's Storage emulator: the npm lock file that pins it, and a launcher."""
