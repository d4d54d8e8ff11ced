"""A domain's activities class or app factory, from its import string.

The registry (contracts.domains) sits below the layers those live in, so it
names them as "module:attribute" strings; the workers resolve the activities,
the tools the app, each through here when it needs them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Literal

from contracts.domains import Domain, DomainConfigError


def resolve(domain: Domain, part: Literal["activities", "app"]) -> Callable[..., object]:
    """What `domain.activities` or `domain.app` names; DomainConfigError naming
    the domain when it cannot be imported or is not callable."""
    target = domain.activities if part == "activities" else domain.app
    module_name, _, attribute = target.partition(":")
    problem = f"domain {domain.name!r}: {part} {target!r} does not resolve"
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise DomainConfigError(f"{problem}: {error}") from error
    value = getattr(module, attribute, None)
    if value is None:
        raise DomainConfigError(f"{problem}: module {module_name} has no {attribute}")
    if not callable(value):
        raise DomainConfigError(f"{problem}: {attribute} is not callable")
    return value  # type: ignore[no-any-return]
