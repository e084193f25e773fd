"""Small-cell suppression with complementary suppression, for exported summary tables.

The rule (docs/reports.md, "Small-cell suppression"), with ``t = report.small_cell_threshold``:

1. Primary: a count ``n`` with ``0 < n < t`` is withheld. Zero is published (it says "none", the
   norm in NHS and ONS releases; a withheld cell is therefore known to be at least 1). A group
   total below ``t`` is a small count too and is withheld.
2. Complementary, per group (cells that add up to a published total): the withheld cells of a
   group must be none, or at least two whose sum ``S`` satisfies ``S - (k - 1) >= t - 1`` for
   ``k`` withheld cells. Then the published total leaves each withheld cell anywhere in
   ``1 .. t-1`` (and beyond): it tells nothing the withheld mark did not already say. While a
   group breaks this, its smallest published non-zero cell is withheld too (ties in category
   order); a group with no such cell left has its total withheld.
3. Audit: tables are also linked to each other (a cell may belong to several groups, a total may
   be another table's cell). Every withheld quantity is checked against all the group equations
   at once (exact rational elimination): if the published numbers determine it, the smallest
   published non-zero cell of a group containing it is withheld too (else that group's total;
   else the same one step further, through groups linked by withheld quantities), and the
   audit repeats.

Which cells were withheld first (primary) and which to protect them (complementary) is not
published: both are simply marked ``suppressed``.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from fractions import Fraction

Key = Hashable


@dataclass(frozen=True)
class Group:
    """Cells whose counts add up to ``total`` (all identified by key; a key shared between
    groups is the same quantity)."""

    name: str
    cells: tuple[Key, ...]
    total: Key


def suppress(
    values: dict[Key, int],
    groups: Iterable[Group],
    threshold: int,
    order: dict[Key, int] | None = None,
) -> set[Key]:
    """The keys (cells and totals) to withhold. ``order`` breaks ties between equal counts
    (lower first); keys missing from it sort after, by their repr."""
    groups = list(groups)
    if threshold <= 1:
        return set()
    rank = order or {}

    def sort_key(k: Key) -> tuple[int, int, str]:
        return (values[k], rank.get(k, len(rank)), repr(k))

    withheld = {k for k, v in values.items() if 0 < v < threshold}
    while True:
        if _complement_groups(values, groups, threshold, withheld, sort_key):
            continue
        leak = _first_determined(values, groups, withheld, sort_key)
        if leak is None:
            return withheld
        _widen(leak, values, groups, withheld, sort_key)


def _candidates(g: Group, values: dict[Key, int], withheld: set[Key]) -> list[Key]:
    return [c for c in g.cells if c not in withheld and values[c] > 0]


def _complement_groups(
    values: dict[Key, int], groups: list[Group], t: int, withheld: set[Key], sort_key
) -> bool:
    """Apply rule 2 to every group once; True if anything more was withheld."""
    changed = False
    for g in groups:
        while g.total not in withheld:
            hidden = [c for c in dict.fromkeys(g.cells) if c in withheld]
            k, s = len(hidden), sum(values[c] for c in hidden)
            if k == 0 or (k >= 2 and s - (k - 1) >= t - 1):
                break
            cands = sorted(_candidates(g, values, withheld), key=sort_key)
            withheld.add(cands[0] if cands else g.total)
            changed = True
    return changed


def _widen(
    leak: Key, values: dict[Key, int], groups: list[Group], withheld: set[Key], sort_key
) -> None:
    """Withhold one more quantity next to ``leak``: the smallest published non-zero cell of a
    group containing it, else a published total of such a group. When every neighbour is
    already withheld the leak runs through other groups linked by withheld quantities (e.g. a
    withheld total that is also a breakdown's sum, the breakdown's cells summed again in a
    third table), so the search widens to them, nearest first."""
    seen: list[Group] = []
    frontier = [g for g in groups if leak in g.cells or leak == g.total]
    while frontier:
        seen += frontier
        cands = sorted(
            {c for g in frontier for c in _candidates(g, values, withheld)}, key=sort_key
        )
        if cands:
            withheld.add(cands[0])
            return
        totals = sorted({g.total for g in frontier if g.total not in withheld}, key=sort_key)
        if totals:
            withheld.add(totals[0])
            return
        linked = {k for g in frontier for k in (*g.cells, g.total) if k in withheld}
        frontier = [
            g for g in groups if g not in seen and any(k in linked for k in (*g.cells, g.total))
        ]
    raise AssertionError(f"cannot protect {leak!r}: every linked quantity is withheld")


def _first_determined(
    values: dict[Key, int], groups: list[Group], withheld: set[Key], sort_key
) -> Key | None:
    """The first withheld key whose value follows from the group equations and the published
    numbers, or None."""
    hidden = sorted((k for k in withheld if k in values), key=sort_key)
    if not hidden:
        return None
    col = {k: i for i, k in enumerate(hidden)}
    rows: list[list[Fraction]] = []
    for g in groups:
        row = [Fraction(0)] * len(hidden)
        for c in g.cells:
            if c in col:
                row[col[c]] += 1
        if g.total in col:
            row[col[g.total]] -= 1
        if any(row):
            rows.append(row)
    for k in determined(rows, len(hidden)):
        return hidden[k]
    return None


def determined(rows: list[list[Fraction]], n_cols: int) -> list[int]:
    """Columns whose unknown is fixed by the linear system ``rows`` (published values moved to
    the right-hand side): exactly the pivot columns whose reduced row is a unit vector."""
    m = [r[:] for r in rows]
    pivots: list[tuple[int, int]] = []
    r = 0
    for c in range(n_cols):
        p = next((i for i in range(r, len(m)) if m[i][c] != 0), None)
        if p is None:
            continue
        m[r], m[p] = m[p], m[r]
        lead = m[r][c]
        m[r] = [x / lead for x in m[r]]
        for i in range(len(m)):
            if i != r and m[i][c] != 0:
                f = m[i][c]
                m[i] = [a - f * b for a, b in zip(m[i], m[r], strict=True)]
        pivots.append((r, c))
        r += 1
        if r == len(m):
            break
    return sorted(c for i, c in pivots if all(x == 0 for j, x in enumerate(m[i]) if j != c))
