"""What a caller without privileges may see of a frame's metadata: the default view.

The rule comes from the key registry (``keys.yaml``): a key of visibility ``public`` or
``internal`` is shown as its redaction policy says (``none``: the value; ``hash``: the
digest of the value, `wf_pipeline.metadata.canonical.digest_text`; ``drop``: not at all);
a ``privileged`` key is never shown by value: as its digest under ``hash``, not at all
otherwise. A stored key the registry no longer declares is withheld too: without a
descriptor nothing says it may be shown. Withheld keys are listed by name only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from wf_pipeline.metadata.canonical import digest_text
from wf_pipeline.metadata.registry import KeyRegistry

__all__ = ["DEFAULT_VISIBILITIES", "DefaultView", "default_view"]

#: Visibilities shown by value (subject to redaction) to every caller.
DEFAULT_VISIBILITIES = frozenset({"public", "internal"})


@dataclass(frozen=True)
class DefaultView:
    """The default view of one set of keys.

    Attributes:
        shown: key -> ``{"value": ...}`` or ``{"digest": "sha256:..."}`` with its
            ``visibility``, by key.
        withheld: names of the keys not shown, sorted.
    """

    shown: dict[str, dict[str, str]] = field(default_factory=dict)
    withheld: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """``{"shown": {...}, "withheld": [...]}``."""
        return {"shown": self.shown, "withheld": list(self.withheld)}


def default_view(registry: KeyRegistry, values: Mapping[str, str]) -> DefaultView:
    """Apply each key's visibility and redaction policy to ``values`` (see the module docstring).

    Args:
        registry: the key registry whose descriptors decide.
        values: key -> stored value.

    Returns:
        A `DefaultView`; no value of a withheld or digested key appears in it.
    """
    shown: dict[str, dict[str, str]] = {}
    withheld: list[str] = []
    for key in sorted(values):
        descriptor = registry.get(key)
        value = values[key]
        if descriptor is None or descriptor.redaction == "drop":
            withheld.append(key)
        elif descriptor.redaction == "hash":
            shown[key] = {"digest": digest_text(value), "visibility": descriptor.visibility}
        elif descriptor.visibility in DEFAULT_VISIBILITIES:
            shown[key] = {"value": value, "visibility": descriptor.visibility}
        else:
            withheld.append(key)
    return DefaultView(shown=shown, withheld=tuple(withheld))
