"""The forms a Ray cluster's address takes on sde's command lines (--address of `sde index` and
`sde transcribe`): checked as the command line is read, so a typo is a usage error said before Ray
starts, not a cluster that "cannot be reached"."""

from __future__ import annotations

from typing import Any

#: What --address takes besides HOST:PORT and ray://HOST:PORT.
NAMED = ("auto", "local")


def address_problem(address: str) -> str | None:
    """Why ``address`` is no Ray cluster address (the message names the forms it takes), or None."""
    if address.strip() in NAMED:
        return None
    host, colon, port = address.strip().removeprefix("ray://").rpartition(":")
    if colon and host.strip("[]") and port.isdigit() and 0 < int(port) < 65536:
        return None
    return (f"{address!r} is no Ray cluster address; give auto (the cluster this node belongs to), HOST:PORT "
            "(its head node's port, 6379 by default) or ray://HOST:PORT (Ray Client, port 10001 by default)")


def checked_address(ctx: Any, param: Any, value: str | None) -> str | None:
    """The click callback of --address (both commands): a value that is no cluster address is a
    usage error (exit 2) naming the forms it takes."""
    import click

    problem = None if value is None else address_problem(value)
    if problem is not None:
        raise click.BadParameter(problem, ctx=ctx, param=param)
    return value
