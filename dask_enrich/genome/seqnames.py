"""Sequence names of the annotation matched to the genome FASTA's (UCSC ``chr1``/``chrM`` vs Ensembl
``1``/``MT``), and ``--seq-aliases FILE`` for the rest.

For each annotation sequence name, in order of preference: its ``--seq-aliases`` entry, the same
name in the genome, else an automatic match: the name with a ``chr`` prefix added or removed, and for
the mitochondrion any of ``M``, ``MT``, ``chrM``, ``chrMT``. An automatic match is used only when it
is one-to-one: exactly one candidate is in the genome, and no other annotation name maps to that
genome name. Names matched differently from their own spelling are printed by ``build-cache`` and
stored in the cache record (``report.seq_names_mapped``); ambiguous ones in
``report.seq_names_ambiguous`` (their genes get no sequence).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from ..errors import InputError

ALIAS = 0
EXACT = 1
AUTO = 2
_MITO = ("M", "MT", "chrM", "chrMT")


def read_seq_aliases(path: str | Path) -> dict[str, str]:
    """``--seq-aliases``: two tab-separated columns per line (annotation/positions name, genome
    name); blank lines and ``#`` comments skipped; a name mapped twice is an error."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"sequence alias file not found: {path}")
    out: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.rstrip("\r\n").split("\t")
        if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
            raise InputError(f"{path}: line {number}: expected two tab-separated columns (the name used "
                             f"by the annotation or positions, the genome's name), not {line[:80]!r}")
        name, target = fields[0].strip(), fields[1].strip()
        if name in out:
            raise InputError(f"{path}: line {number}: {name!r} is mapped twice (also on line "
                             f"{first_line[name]}: {name} -> {out[name]}); give each name once")
        out[name] = target
        first_line[name] = number
    return out


def automatic_candidates(name: str) -> list[str]:
    """Other spellings of ``name`` that may be its genome name (``chr`` toggled; mitochondrion)."""
    bare = name[3:] if name[:3].lower() == "chr" else name
    if bare.upper() in ("M", "MT"):
        return [c for c in _MITO if c != name]
    return [bare] if bare != name else ["chr" + name]


@dataclass
class SeqNames:
    """The candidates of every annotation sequence name, and the final one-to-one mapping."""

    annotation_names: list[str]
    aliases: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._serves: dict[str, list[tuple[str, int]]] = {}
        for name in self.annotation_names:
            if name in self.aliases:
                self._serves.setdefault(self.aliases[name], []).append((name, ALIAS))
            self._serves.setdefault(name, []).append((name, EXACT))
            for cand in automatic_candidates(name):
                self._serves.setdefault(cand, []).append((name, AUTO))

    def serves(self, genome_name: str) -> list[tuple[str, int]]:
        """(annotation name, priority) pairs that genome sequence ``genome_name`` may serve."""
        return self._serves.get(genome_name, [])

    def resolve(self, genome_names: Iterable[str]) -> tuple[dict[str, str], dict]:
        """The mapping annotation name -> genome name given the genome's names, and a report."""
        present = set(genome_names)
        best: dict[str, tuple[int, list[str]]] = {}
        for g in present:
            for name, prio in self.serves(g):
                cur = best.get(name)
                if cur is None or prio < cur[0]:
                    best[name] = (prio, [g])
                elif prio == cur[0]:
                    cur[1].append(g)
        ambiguous = {n for n, (prio, gs) in best.items() if len(gs) > 1}
        mapping = {n: gs[0] for n, (prio, gs) in best.items() if n not in ambiguous}
        users: dict[str, list[str]] = {}
        for n, g in mapping.items():
            users.setdefault(g, []).append(n)
        for g, ns in users.items():  # an automatic match onto a name another one uses is not one-to-one
            if len(ns) > 1:
                for n in ns:
                    if best[n][0] == AUTO:
                        ambiguous.add(n)
                        del mapping[n]
        report = {
            "seq_names_mapped": {n: g for n, g in sorted(mapping.items()) if n != g},
            "seq_names_ambiguous": sorted(ambiguous),
            "seq_aliases_unused": sorted(n for n in self.aliases
                                         if n in set(self.annotation_names) and mapping.get(n) != self.aliases[n]),
        }
        return mapping, report


def describe_mismatch(annotation_names: Iterable[str], genome_names: Iterable[str], k: int = 5) -> str:
    """Some names of each side, for the error when no annotated sequence is in the genome."""
    a = sorted(set(annotation_names))
    g = list(dict.fromkeys(genome_names))
    more_a = ", ..." if len(a) > k else ""
    more_g = ", ..." if len(g) > k else ""
    return (f"the annotation names {', '.join(a[:k])}{more_a} ({len(a)}); the genome has "
            f"{', '.join(g[:k])}{more_g} ({len(g)}). Pass --seq-aliases FILE (two tab-separated "
            "columns: the annotation's name, the genome's name) to match them")
