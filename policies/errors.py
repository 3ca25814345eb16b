"""Errors the rules core raises: each is a value a user can act on, naming the input at fault."""

from __future__ import annotations

import shlex


class PolicyError(ValueError):
    """Base of every user-facing error raised by the core (the CLI maps it to exit code 2)."""


class PackError(PolicyError):
    """A policy pack is malformed; the message names the file, the field path and the reason."""


class UnknownProvision(PolicyError):
    """A provision id is not defined by any loaded policy pack."""


class NotInEffect(PolicyError):
    """A provision exists but has no version in effect on the requested date."""


class UnknownAccelerator(PolicyError):
    """An accelerator name does not resolve to a catalog entry."""


class UnknownInstanceType(PolicyError):
    """A cloud instance / machine type is not in the catalog."""


class UnknownRegion(PolicyError):
    """A cloud region is not mapped to a country."""


class UnknownCountry(PolicyError):
    """A country name or code does not resolve to an ISO 3166 country."""


class PartyError(PolicyError):
    """A party graph problem: unknown party, ownership cycle."""


class EstimateError(PolicyError):
    """Training-compute inputs are missing or inconsistent."""


def cli_word(text: str) -> str:
    """``text`` as one word of a ``veuctl`` command line a message suggests, quoted when a shell would split or
    expand it (``Aurora Compute Inc.`` -> ``'Aurora Compute Inc.'``, ``aurora`` stays ``aurora``), so the
    suggestion runs as it is copied."""
    return shlex.quote(text)
