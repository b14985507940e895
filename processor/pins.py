"""The one check every patch of a dependency's internals makes before it installs itself.

A patch reaches into code its library does not promise to keep: each is
pinned to the versions it was read against and refuses to install on any
other, so an upgrade fails loudly at start instead of quietly changing
behaviour (the library may have moved or fixed what the patch relies on).
"""

from __future__ import annotations

from importlib.metadata import version


def require(patch: str, package: str, tested: tuple[str, ...], check: str) -> None:
    """Raise unless `package` is one of the `tested` versions; `check`: what to re-read."""
    found = version(package)
    if found not in tested:
        raise RuntimeError(
            f"{patch} was tested with {package} {', '.join(tested)}, found {found}: "
            f"check {check} against the new version, then update the pin"
        )
