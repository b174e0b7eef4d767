"""The error for a system package (sysdeps/debian.toml) that is missing where the code needs it."""


class SystemPackageMissing(RuntimeError):
    """A Debian package the code needs is absent; the message names it and the command that installs it."""
