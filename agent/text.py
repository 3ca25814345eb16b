"""Free text the store keeps (answers, notes, names, references): which characters a field refuses, and the words
that say so."""

from __future__ import annotations

import unicodedata

from policies.errors import PolicyError

# Unicode general categories refused in stored text: controls (Cc), unpaired surrogates (Cs) and format characters
# (Cf: the bidirectional controls U+061C, U+200E/F, U+202A-E and U+2066-9, zero-width characters). The categories,
# not a list of code points, as party names (agent.parties) and model names (agent.ledger) refuse them.
_REFUSED = frozenset({"Cc", "Cs", "Cf"})
# Line and paragraph separators end a line as a newline does: refused in one-line text.
_LINE_BREAKS = frozenset({"Zl", "Zp"})
# Kept in multi-line prose (notes): line breaks and tabs, and the zero-width (non-)joiners, which Persian and Indic
# words and emoji need and which reorder nothing. Names and one-line references still refuse them.
_IN_PROSE = frozenset("\r\n\t\u200c\u200d")


def unprintable(flag: str, text: str, *, lines: bool = False) -> str | None:
    """Why ``text`` is refused as the value of ``flag`` (None when it is not), naming the code point: a control
    character (a NUL no store keeps, a bell or an escape that would be replayed to whoever reads it, a newline
    splitting a one-line value), an unpaired surrogate, or a bidirectional or invisible formatting character (an
    override shows text in another order than it is stored, so a name reads as another's on a page, in a metric
    label or in an export's file name). With ``lines``, line breaks and tabs are text."""
    for c in text:
        cat = unicodedata.category(c)
        if lines and c in _IN_PROSE:
            continue
        if cat in _REFUSED or (not lines and cat in _LINE_BREAKS):
            what = ("a bidirectional or invisible formatting character" if cat == "Cf"
                    else "a line separator" if cat in _LINE_BREAKS
                    else "a control character or an unpaired surrogate")
            return (f"{flag}: contains U+{ord(c):04X} ({what}); "
                    f"{'printable text, lines and tabs' if lines else 'one line of printable text'} only")
    return None


def check_text(flag: str, text: str, *, lines: bool = False) -> str:
    """``text`` itself, or :class:`PolicyError` (an HTTP 422) saying why :func:`unprintable` refuses it."""
    why = unprintable(flag, text, lines=lines)
    if why is not None:
        raise PolicyError(why)
    return text
