"""Free text the store keeps (answers, notes): which characters a field refuses, and the words that say so."""

from __future__ import annotations

import unicodedata


def unprintable(flag: str, text: str, *, lines: bool = False) -> str | None:
    """Why ``text`` is refused as the value of ``flag`` (None when it is not): a control character (a NUL no store
    keeps, a bell or an escape that would be replayed to whoever reads it, a newline splitting a one-line value) or
    an unpaired surrogate, named by its code point. With ``lines``, line breaks and tabs are text."""
    bad = next((c for c in text if unicodedata.category(c) in ("Cc", "Cs") and not (lines and c in "\r\n\t")), None)
    if bad is None:
        return None
    return (f"{flag}: contains U+{ord(bad):04X} (a control character or an unpaired surrogate); "
            f"{'printable text, lines and tabs' if lines else 'one line of printable text'} only")
