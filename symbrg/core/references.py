r"""The one table of literature references: every citation in symbrg is a key of :data:`REFERENCES`.

Job: decide each cited work once (authors, title, where it appeared, year, arXiv, DOI) and print it
as BibTeX (``derivations/references.bib``, resolved by ``\cite{key}`` in the LaTeX documents) or as
one line of a numbered list (Markdown and text views).  A reference is the map

.. math::  \text{key} \;\mapsto\; (\text{authors}, \text{title}, \text{venue}, \text{year},
           \text{arXiv}, \text{DOI}),

and :func:`reference` resolves a key (or one of its older spellings, :data:`ALIASES`) or raises
:class:`~symbrg.core.errors.UnknownName` listing the keys.  Derivations refuse an unknown key when a
step is added (:meth:`symbrg.core.derivation.Derivation.step`).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from symbrg.core.errors import UnknownName

__all__ = ["Reference", "REFERENCES", "ALIASES", "reference", "canonical", "register", "cited_keys", "canonical_cites", "to_bibtex"]


@dataclass(frozen=True)
class Reference:
    """One cited work.  ``authors`` are full names ("Jessica N. Howard"); ``kind`` is the BibTeX entry
    type (``article``, ``inproceedings``, ``book``, ``misc``); ``journal`` holds the journal, the
    proceedings or the publisher; ``pages`` the first page or article number."""
    key: str
    authors: tuple[str, ...]
    title: str
    year: int
    kind: str = "article"
    journal: str = ""
    volume: str = ""
    pages: str = ""
    arxiv: str = ""
    doi: str = ""
    note: str = ""

    @property
    def short_authors(self) -> str:
        """Initials and surnames: ``J. N. Howard, M. S. Klinger, ...``."""
        def initials(name: str) -> str:
            *first, last = name.split()
            return " ".join([f"{f[0]}." if not f.endswith(".") else f for f in first] + [last])
        return ", ".join(initials(a) for a in self.authors)

    def to_text(self) -> str:
        """One line for a numbered reference list (Markdown, text)."""
        venue = " ".join(p for p in (self.journal, self.volume) if p)
        venue += f", {self.pages}" if self.pages and venue else ""
        parts = [self.short_authors, self.title] + ([f"{venue} ({self.year})"] if venue else [])
        if self.arxiv:
            parts.append(f"arXiv:{self.arxiv}" + ("" if venue else f" ({self.year})"))
        elif not venue:
            parts.append(str(self.year))
        if self.note:
            parts.append(self.note)
        return ", ".join(parts) + "."

    def to_bibtex(self) -> str:
        """The BibTeX entry (fields in a fixed order; LaTeX-special characters of the title braced)."""
        venue = {"article": "journal", "inproceedings": "booktitle", "book": "publisher"}.get(self.kind)
        fields = [("author", " and ".join(self.authors)), ("title", "{" + self.title + "}")]
        if venue and self.journal:
            fields.append((venue, self.journal))
        fields += [(k, v) for k, v in (("volume", self.volume), ("pages", self.pages)) if v]
        fields.append(("year", str(self.year)))
        if self.arxiv:
            fields += [("eprint", self.arxiv), ("archivePrefix", "arXiv")]
        if self.doi:
            fields.append(("doi", self.doi))
        note = "; ".join(n for n in (self.note, f"arXiv:{self.arxiv}" if self.arxiv else "") if n)
        if note:
            fields.append(("note", note))
        body = ",\n".join(f"  {k} = {{{v}}}" for k, v in fields)
        return f"@{self.kind}{{{self.key},\n{body}\n}}\n"


_HKMS = ("Jessica N. Howard", "Marc S. Klinger", "Anindita Maiti", "Alexander G. Stapleton")

#: Every work symbrg cites, by key.
REFERENCES: dict[str, Reference] = {r.key: r for r in (
    Reference("HKMS2024", _HKMS, "Bayesian RG Flow in Neural Network Field Theories", 2025,
              journal="SciPost Phys. Core", volume="8", pages="027", arxiv="2405.17538"),
    Reference("BKS2023", ("David S. Berman", "Marc S. Klinger", "Alexander G. Stapleton"),
              "Bayesian renormalization", 2023, journal="Mach. Learn.: Sci. Technol.", volume="4",
              pages="045011", arxiv="2305.10491"),
    Reference("BK2024", ("David S. Berman", "Marc S. Klinger"),
              "The inverse of exact renormalization group flows as statistical inference", 2024,
              journal="Entropy", volume="26", pages="389", arxiv="2212.11379"),
    Reference("HJMR2024", ("Jessica N. Howard", "Ro Jefferson", "Anindita Maiti", "Zohar Ringel"),
              "Wilsonian renormalization of neural network Gaussian processes", 2024, kind="misc",
              arxiv="2405.06008"),
    Reference("Halverson2021", ("James Halverson",), "Building quantum field theories out of neurons",
              2021, kind="misc", arxiv="2112.04527"),
    Reference("DHMSS2023", ("Mehmet Demirtas", "James Halverson", "Anindita Maiti", "Matthew D. Schwartz",
                            "Keegan Stoner"),
              "Neural network field theories: non-Gaussianity, actions, and locality", 2023, kind="misc",
              arxiv="2307.03223"),
    Reference("Polchinski1984", ("Joseph Polchinski",), "Renormalization and effective Lagrangians", 1984,
              journal="Nucl. Phys. B", volume="231", pages="269", doi="10.1016/0550-3213(84)90287-6"),
    Reference("Wetterich1993", ("Christof Wetterich",), "Exact evolution equation for the effective "
              "potential", 1993, journal="Phys. Lett. B", volume="301", pages="90",
              doi="10.1016/0370-2693(93)90726-X"),
    Reference("Litim2001", ("Daniel F. Litim",), "Optimized renormalization group flows", 2001,
              journal="Phys. Rev. D", volume="64", pages="105007", arxiv="hep-th/0103195",
              doi="10.1103/PhysRevD.64.105007"),
    Reference("Litim2002", ("Daniel F. Litim",), "Critical exponents from optimised renormalisation "
              "group flows", 2002, journal="Nucl. Phys. B", volume="631", pages="128"),
    Reference("BTW2002", ("Juergen Berges", "Nikolaos Tetradis", "Christof Wetterich"),
              "Non-perturbative renormalization flow in quantum field theory and statistical physics",
              2002, journal="Phys. Rep.", volume="363", pages="223"),
    Reference("WegnerHoughton1973", ("Franz J. Wegner", "Anthony Houghton"), "Renormalization group "
              "equation for critical phenomena", 1973, journal="Phys. Rev. A", volume="8", pages="401"),
    Reference("Morris1994", ("Tim R. Morris",), "The exact renormalization group and approximate "
              "solutions", 1994, journal="Int. J. Mod. Phys. A", volume="9", pages="2411"),
    Reference("Lee2018", ("Jaehoon Lee", "Yasaman Bahri", "Roman Novak", "Samuel S. Schoenholz",
                          "Jeffrey Pennington", "Jascha Sohl-Dickstein"),
              "Deep Neural Networks as Gaussian Processes", 2018, kind="inproceedings", journal="ICLR",
              arxiv="1711.00165"),
    Reference("Jacot2018", ("Arthur Jacot", "Franck Gabriel", "Clement Hongler"),
              "Neural Tangent Kernel: Convergence and Generalization in Neural Networks", 2018,
              kind="inproceedings", journal="NeurIPS", arxiv="1806.07572"),
    Reference("ChoSaul2009", ("Youngmin Cho", "Lawrence K. Saul"), "Kernel methods for deep learning",
              2009, kind="inproceedings", journal="NIPS", volume="22"),
    Reference("Williams1997", ("Christopher K. I. Williams",), "Computing with infinite networks", 1997,
              kind="inproceedings", journal="NIPS", volume="9"),
    Reference("Tsuchida2020", ("Russell Tsuchida", "Tim Pearce", "Christopher van der Heide",
                               "Fred Roosta", "Marcus Gallagher"), "Avoiding kernel fixed points: "
              "computing with ELU and GELU infinite networks", 2020, kind="misc", arxiv="2002.08517"),
    Reference("Mehler1866", ("F. G. Mehler",), "Ueber die Entwicklung einer Function von beliebig "
              "vielen Variablen nach Laplaceschen Functionen hoeherer Ordnung", 1866,
              journal="J. Reine Angew. Math.", volume="66", pages="161",
              note="see also R. O'Donnell, Analysis of Boolean Functions, ch. 11 (2014)"),
    Reference("Price1958", ("Robert Price",), "A useful theorem for nonlinear devices having Gaussian "
              "inputs", 1958, journal="IRE Trans. Inf. Theory", volume="4", pages="69"),
    Reference("Amari2016", ("Shun-ichi Amari",), "Information Geometry and Its Applications", 2016,
              kind="book", journal="Springer"),
    Reference("Jeffreys1946", ("Harold Jeffreys",), "An invariant form for the prior probability in "
              "estimation problems", 1946, journal="Proc. R. Soc. A", volume="186", pages="453",
              doi="10.1098/rspa.1946.0056"),
)}

#: Older spellings of keys still used by callers, mapped to the one key of :data:`REFERENCES`.
ALIASES: dict[str, str] = {
    "HKMS24": "HKMS2024", "hkms2024": "HKMS2024", "BKS23": "BKS2023", "bks2023": "BKS2023",
    "BK24": "BK2024", "HJMR24": "HJMR2024", "lee2018": "Lee2018", "jacot2018": "Jacot2018",
    "cho2009": "ChoSaul2009", "amari2016": "Amari2016", "jeffreys1946": "Jeffreys1946",
}


def canonical(key: str, argument: str = "cites") -> str:
    """The key of :data:`REFERENCES` that ``key`` names (itself or an alias); unknown keys are refused
    with :class:`~symbrg.core.errors.UnknownName` naming ``argument`` and listing the keys."""
    key = ALIASES.get(key, key)
    if key not in REFERENCES:
        raise UnknownName(argument, f"unknown reference {key!r}; known: {', '.join(sorted(REFERENCES))} "
                                    "(add a work with symbrg.core.references.register)")
    return key


def reference(key: str) -> Reference:
    """The :class:`Reference` of a key or alias (:func:`canonical` decides)."""
    return REFERENCES[canonical(key)]


def register(ref: Reference) -> str:
    """Add a work to the table (for a user's own derivations); a key may be registered only once with
    one content.  Returns the key."""
    old = REFERENCES.get(ALIASES.get(ref.key, ref.key))
    if old is not None and old != ref:
        from symbrg.core.errors import InvalidArgument
        raise InvalidArgument("ref", f"reference {ref.key!r} is already registered with other content")
    REFERENCES[ref.key] = ref
    return ref.key


def cited_keys(text: str) -> list[str]:
    r"""The keys of every ``\cite{a,b}`` in a LaTeX text, in order."""
    return [k.strip() for g in re.findall(r"\\cite\{([^}]*)\}", text) for k in g.split(",") if k.strip()]


def canonical_cites(text: str, argument: str = "text") -> str:
    r"""``text`` with the keys of every ``\cite{a,b}`` replaced by :func:`canonical` (unknown keys refused,
    naming ``argument``)."""
    return re.sub(r"\\cite\{([^}]*)\}", lambda m: "\\cite{" + ",".join(
        canonical(k.strip(), argument) for k in m.group(1).split(",")) + "}", text)


def to_bibtex(keys: Iterable[str] | None = None) -> str:
    """A BibTeX database: the given keys (default: the whole table), sorted by key, one entry each."""
    chosen = sorted({canonical(k) for k in keys}) if keys is not None else sorted(REFERENCES)
    return "\n".join(REFERENCES[k].to_bibtex() for k in chosen)
