"""codeflow configuration: one Settings object, read once at the edges."""

from config.settings import Settings, SettingsError, load_settings, with_backends

__all__ = ["Settings", "SettingsError", "load_settings", "with_backends"]
