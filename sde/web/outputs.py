"""Callback outputs as a dict: a callback registered with ``output=OUTPUTS`` (a dict of Outputs)
returns the values it changes and ``no_update`` for every other one."""

from __future__ import annotations

from typing import Any, Mapping

from dash import no_update


def changed(outputs: Mapping[str, Any], **values: Any) -> dict[str, Any]:
    """Every name of ``outputs``: the given values, no_update for the rest."""
    unknown = values.keys() - outputs.keys()
    if unknown:  # a typo would otherwise be dropped silently and the output never update
        raise KeyError(f"not an output of this callback: {', '.join(sorted(unknown))}")
    return {name: values.get(name, no_update) for name in outputs}
