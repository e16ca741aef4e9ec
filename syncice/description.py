"""What one peer tells the other about its ICE side: :class:`IceDescription`.

Every application moves the same things between peers through its
signalling channel: the ``ice-ufrag`` and ``ice-pwd``, the candidates,
whether all of them are there (end-of-candidates), whether the side is
ICE-lite, whether it takes trickled candidates. An :class:`IceDescription`
holds them as one immutable value, with three spellings for the wire:

- a :class:`dict` of plain JSON types (:meth:`~IceDescription.to_dict`,
  :meth:`~IceDescription.from_dict`) and its JSON text
  (:meth:`~IceDescription.to_json`, :meth:`~IceDescription.from_json`);
- SDP attribute lines (:meth:`~IceDescription.to_sdp`,
  :meth:`~IceDescription.from_sdp`, RFC 8839): ``a=ice-lite``,
  ``a=ice-options:trickle``, ``a=ice-ufrag``, ``a=ice-pwd``,
  ``a=candidate`` and ``a=end-of-candidates``.

``Connection.local_description()`` makes one, and
``Connection.set_remote_description()`` takes any of these forms
(:meth:`IceDescription.parse`). Every form is read whole and checked
before anything is used: a bad field or line raises :class:`ValueError`
(:class:`~syncice.exceptions.CandidateError` for a bad candidate, a
:class:`ValueError` too) naming it, and nothing is half applied.

Nothing here does I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .candidate import Candidate

__all__ = ["IceDescription"]

#: RFC 8839 §5.4: ``ice-char = ALPHA / DIGIT / "+" / "/"``. The lengths the
#: RFC asks for (4 and 22 at least) are not required of a peer, as
#: :meth:`syncice.ice.IceAgent.set_remote_credentials` does not.
_CREDENTIAL = re.compile(r"[A-Za-z0-9+/]{1,256}")
#: RFC 8839 §5.6: ``ice-option-tag = 1*ice-char``.
_OPTION = re.compile(r"[A-Za-z0-9+/]+")
#: An SDP line: a type letter and "=" (RFC 8866 §5).
_SDP_LINE = re.compile(r"[a-z]=")
_FIELDS = ("username", "password", "candidates", "end_of_candidates", "lite", "trickle")
#: The most lines :meth:`IceDescription.from_sdp` reads, and candidates a
#: description holds: a peer's signalling is untrusted input.
MAX_LINES = 10_000


def _credential(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    if not _CREDENTIAL.fullmatch(value):
        raise ValueError(f"{name} must be 1 to 256 ice-chars, not {value!r}")
    return value


def _flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, not {type(value).__name__}")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class IceDescription:
    """One side's ICE parameters, as the other side needs them.

    :param username: the ``ice-ufrag``.
    :param password: the ``ice-pwd``.
    :param candidates: the candidates known so far (a tuple; any iterable
        of :class:`~syncice.candidate.Candidate` is taken).
    :param end_of_candidates: whether these are all of them (RFC 8838 §4).
    :param lite: whether the side is an ICE-lite agent (RFC 8445 §2.5).
    :param trickle: whether the side takes candidates trickled after this
        description (RFC 8838, ``a=ice-options:trickle``).
    :raises TypeError: a field of the wrong type.
    :raises ValueError: a credential that is not 1 to 256 ice-chars
        (RFC 8839 §5.4), or more than 10,000 candidates.
    """

    username: str
    password: str
    candidates: tuple[Candidate, ...] = ()
    end_of_candidates: bool = False
    lite: bool = False
    trickle: bool = False

    def __post_init__(self) -> None:
        _credential("username", self.username)
        _credential("password", self.password)
        given: object = self.candidates
        if isinstance(given, (str, bytes)) or not isinstance(given, Iterable):
            raise TypeError("candidates must be an iterable of Candidate")
        candidates = tuple(given)
        for candidate in candidates:
            if not isinstance(candidate, Candidate):
                raise TypeError(
                    f"candidates must hold Candidate, not {type(candidate).__name__}"
                )
        if len(candidates) > MAX_LINES:
            raise ValueError(f"more than {MAX_LINES} candidates")
        object.__setattr__(self, "candidates", candidates)
        _flag("end_of_candidates", self.end_of_candidates)
        _flag("lite", self.lite)
        _flag("trickle", self.trickle)

    # --- dict and JSON -------------------------------------------------------

    def to_dict(self) -> dict[str, object]:
        """The description as plain JSON types; each candidate as its bare
        SDP line (:meth:`~syncice.candidate.Candidate.to_sdp`)."""
        return {
            "username": self.username,
            "password": self.password,
            "candidates": [c.to_sdp() for c in self.candidates],
            "end_of_candidates": self.end_of_candidates,
            "lite": self.lite,
            "trickle": self.trickle,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> IceDescription:
        """Read what :meth:`to_dict` wrote. ``username`` and ``password``
        are required, the other keys optional; candidate lines may be bare
        or start with ``candidate:`` or ``a=candidate:``.

        :raises ValueError: an unknown key, a missing credential, a bad
            value or one of the wrong type (the message names the key, and
            the index of a bad candidate): what came from the peer is wrong.
        :raises TypeError: ``data`` is not a mapping.
        """
        if not isinstance(data, Mapping):
            raise TypeError(f"a description must be a mapping, not {type(data)}")
        unknown = sorted(str(k) for k in data if k not in _FIELDS)
        if unknown:
            raise ValueError(f"unknown key(s) in the description: {unknown}")
        for name in ("username", "password"):
            if name not in data:
                raise ValueError(f"the description has no {name!r}")
        lines = data.get("candidates", [])
        if not isinstance(lines, (list, tuple)):
            raise ValueError("candidates must be a list of candidate lines")
        if len(lines) > MAX_LINES:
            raise ValueError(f"more than {MAX_LINES} candidates")
        candidates = []
        for i, line in enumerate(lines):
            if not isinstance(line, str):
                raise ValueError(f"candidates[{i}] must be a str, not {type(line)}")
            try:
                candidates.append(Candidate.from_sdp(line))
            except ValueError as exc:
                raise ValueError(f"candidates[{i}] {line[:200]!r}: {exc}") from None
        try:
            return cls._of(data, tuple(candidates))
        except TypeError as exc:  # a wrong type from the peer: a bad value
            raise ValueError(str(exc)) from None

    @classmethod
    def _of(
        cls, data: Mapping[str, object], candidates: tuple[Candidate, ...]
    ) -> IceDescription:
        return cls(
            username=data["username"],  # type: ignore[arg-type]
            password=data["password"],  # type: ignore[arg-type]
            candidates=candidates,
            end_of_candidates=data.get("end_of_candidates", False),  # type: ignore[arg-type]
            lite=data.get("lite", False),  # type: ignore[arg-type]
            trickle=data.get("trickle", False),  # type: ignore[arg-type]
        )

    def to_json(self) -> str:
        """:meth:`to_dict` as JSON text."""
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> IceDescription:
        """Read what :meth:`to_json` wrote.

        :raises ValueError: text that is not a JSON object, or as
            :meth:`from_dict`.
        """
        if not isinstance(text, str):
            raise TypeError(f"JSON text must be a str, not {type(text).__name__}")
        try:
            data = json.loads(text)
        except ValueError as exc:  # json.JSONDecodeError
            raise ValueError(f"the description is not JSON: {exc}") from None
        except RecursionError:
            raise ValueError("the description is not JSON: nested too deep") from None
        if not isinstance(data, dict):
            raise ValueError("the description's JSON must be an object")
        return cls.from_dict(data)

    # --- SDP -------------------------------------------------------------------

    def to_sdp(self) -> str:
        """The SDP attribute lines (RFC 8839 §5), each ending in CRLF:
        ``a=ice-lite`` (if lite), ``a=ice-options:trickle`` (if trickle),
        ``a=ice-ufrag``, ``a=ice-pwd``, an ``a=candidate`` per candidate,
        ``a=end-of-candidates`` (if given)."""
        lines = []
        if self.lite:
            lines.append("a=ice-lite")
        if self.trickle:
            lines.append("a=ice-options:trickle")
        lines.append(f"a=ice-ufrag:{self.username}")
        lines.append(f"a=ice-pwd:{self.password}")
        lines.extend(f"a=candidate:{c.to_sdp()}" for c in self.candidates)
        if self.end_of_candidates:
            lines.append("a=end-of-candidates")
        return "".join(line + "\r\n" for line in lines)

    @classmethod
    def from_sdp(cls, text: str) -> IceDescription:
        """Read SDP lines: what :meth:`to_sdp` wrote, or the lines of a
        whole session description of one media stream. Lines end in CRLF
        or LF; blank lines and SDP lines of other kinds (``v=``, ``m=``,
        ``a=mid`` ...) are skipped; ``a=ice-options`` tags other than
        ``trickle`` are skipped too.

        :raises ValueError: naming the line (its number, from 1, and its
            text): a line that is not SDP, a malformed ``ice-ufrag``,
            ``ice-pwd``, ``ice-options`` or ``candidate``, a value on
            ``a=ice-lite`` or ``a=end-of-candidates``, a second
            ``ice-ufrag`` or ``ice-pwd`` that differs from the first
            (another media stream's); or no ``ice-ufrag`` or ``ice-pwd``.
        """
        if not isinstance(text, str):
            raise TypeError(f"SDP text must be a str, not {type(text).__name__}")
        found: dict[str, str] = {}
        candidates: list[Candidate] = []
        flags = {"end-of-candidates": False, "ice-lite": False, "trickle": False}
        for number, raw in enumerate(text.splitlines(), 1):
            if number > MAX_LINES:
                raise ValueError(f"more than {MAX_LINES} lines")
            line = raw.strip()
            if not line:
                continue
            where = f"line {number} {line[:200]!r}"
            if not _SDP_LINE.match(line):
                raise ValueError(f"{where}: not an SDP line (x=...)")
            if not line.startswith("a="):
                continue
            name, colon, value = line[2:].partition(":")
            if name in ("ice-ufrag", "ice-pwd"):
                if not _CREDENTIAL.fullmatch(value):
                    raise ValueError(f"{where}: {name} must be 1 to 256 ice-chars")
                if found.setdefault(name, value) != value:
                    raise ValueError(f"{where}: a second, different {name}")
            elif name == "candidate":
                try:
                    candidates.append(Candidate.from_sdp(line))
                except ValueError as exc:
                    raise ValueError(f"{where}: {exc}") from None
            elif name in ("end-of-candidates", "ice-lite"):
                if colon:
                    raise ValueError(f"{where}: a=" + name + " takes no value")
                flags[name] = True
            elif name == "ice-options":
                tags = value.split(" ")
                if not all(_OPTION.fullmatch(t) for t in tags):
                    raise ValueError(f"{where}: ice-options must be ice-chars tags")
                flags["trickle"] = flags["trickle"] or "trickle" in tags
        for name in ("ice-ufrag", "ice-pwd"):
            if name not in found:
                raise ValueError(f"no a={name} line in the description")
        return cls(
            username=found["ice-ufrag"],
            password=found["ice-pwd"],
            candidates=tuple(candidates),
            end_of_candidates=flags["end-of-candidates"],
            lite=flags["ice-lite"],
            trickle=flags["trickle"],
        )

    # --- any form ----------------------------------------------------------------

    @classmethod
    def parse(
        cls, value: IceDescription | Mapping[str, object] | str
    ) -> IceDescription:
        """Any of the forms: an :class:`IceDescription` (as is), a mapping
        (:meth:`from_dict`), JSON text (a str whose first non-blank
        character is ``{``, :meth:`from_json`) or SDP lines (any other str,
        :meth:`from_sdp`).

        :raises ValueError: as the reader of its form.
        :raises TypeError: for anything else.
        """
        if isinstance(value, IceDescription):
            return value
        if isinstance(value, Mapping):
            return cls.from_dict(value)
        if isinstance(value, str):
            if value.lstrip().startswith("{"):
                return cls.from_json(value)
            return cls.from_sdp(value)
        raise TypeError(
            "a description must be an IceDescription, a dict, JSON or SDP text,"
            f" not {type(value).__name__}"
        )
