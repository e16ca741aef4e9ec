"""A guard that fails when an event loop's thread calls a blocking primitive.

:class:`LoopGuard` watches the thread it is entered on (the one that runs the
event loop) and records every call there that would block it, with no clock
involved: whether a call would wait is decided from the call and the state of
what it waits on, at the moment it is made, so a loaded machine cannot make
the check pass or fail. The offending call raises :exc:`LoopBlocked` instead
of running (so a deliberate block in a test does not hang it), and leaving
the guard raises :exc:`LoopBlocked` again if anything was recorded, in case
the first one was swallowed (an ``except Exception``, asyncio's handler of
callback errors).

What counts as blocking:

- ``time.sleep``; ``socket`` name lookups (``getaddrinfo``, ``gethostbyname``,
  ``gethostbyname_ex``, ``gethostbyaddr``, ``getnameinfo``); ``bind`` on any
  socket; and ``accept``, ``connect``, ``recv*`` and ``send*`` on a socket
  that is not non-blocking.
- ``select.select``, ``poll``, ``epoll``, ``devpoll`` and ``kqueue`` waits
  with a timeout other than 0, except the loop's own selector call
  (``selectors`` called by ``BaseEventLoop._run_once``).
- ``concurrent.futures.Future.result`` or ``.exception`` on a future that is
  not done, unless with ``timeout=0``; ``queue.SimpleQueue.get`` on an empty
  queue, unless non-blocking.
- Acquiring a ``threading`` lock (``Lock``/``RLock``: ``acquire``,
  ``__enter__``, and the ``with lock:`` statement) that is held at that
  moment, by another thread or, for a ``Lock``, by this one, unless the call
  does not block (``acquire(False)``, ``timeout=0``). This covers every wait
  built on locks: ``Condition.wait``, ``Event.wait``, ``Thread.join``,
  ``queue.Queue.get``, ``Semaphore.acquire``.

How it sees calls: a profile function (:func:`sys.setprofile`) gets every
call of a C function (``c_call``, with the function but not its arguments:
those are read back from the calling instruction when they are constants or
variables, else the call is taken as blocking) and every Python call (for
``Future.result``). ``with lock:`` calls ``lock.__enter__`` without a profile
event, so a trace function (:func:`sys.settrace`) also traces the opcodes of
the frames whose code has a ``with`` of a plain name or attribute chain, and
looks at the object at each such ``with`` before it is entered. A trace
function installed before (coverage's) is called on for every event, so
coverage keeps measuring the guarded thread.

Allowances: some locks are held by other threads for a few statements only,
never across a wait (a ``concurrent.futures.Future``'s condition, the
executor's bookkeeping, a logging handler's lock), and a few waits are
bounded and asyncio's own (``run_in_executor`` starting a thread, waiting for
the OS to start it; ``asyncio.run``'s teardown joining the executor). An
:class:`Allowance` names the code that may take such a lock (or make such a
wait): the innermost frame outside ``threading.py`` of the call. Their waits
are short but not timed here: holding a lock someone else holds is a wait
whatever its length, so contention on one of them, however rare, would fail
the guard, and an allowance says it is bounded instead. Everything else is
never allowed: :data:`STDLIB` is the default, and callers add their own.
"""

from __future__ import annotations

import _socket
import _thread
import asyncio
import asyncio.base_events
import concurrent.futures
import dis
import queue
import select
import selectors
import sys
import threading
import time
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "SHIM",
    "STDLIB",
    "Allowance",
    "LoopBlocked",
    "LoopGuard",
    "Violation",
    "guarded_run",
]


class LoopBlocked(AssertionError):
    """A call on the guarded thread would have blocked it."""


@dataclass(frozen=True)
class Allowance:
    """Code that may make a call the guard would otherwise report.

    :param path: how the code's file name ends (``"concurrent/futures/_base.py"``).
    :param function: the code's name, or ``"*"`` for any in that file.
    :param waits: whether it covers waits too (a wait inside ``Condition.wait``,
        ``Event.wait`` or ``Thread.join``, a sleep, a selector), rather than
        only entering a lock's critical section.
    :param reason: why this is bounded.
    """

    path: str
    function: str = "*"
    waits: bool = False
    reason: str = ""

    def covers(self, site: types.FrameType | None, waits: bool) -> bool:
        """Whether a call made from ``site`` (the innermost frame outside
        threading.py), a wait or not, is allowed."""
        if site is None or (waits and not self.waits):
            return False
        code = site.f_code
        return code.co_filename.replace("\\", "/").endswith(self.path) and (
            self.function in ("*", code.co_name)
        )


#: The standard library's bounded locks and waits.
STDLIB: tuple[Allowance, ...] = (
    Allowance(
        "concurrent/futures/_base.py",
        reason="a Future's condition: its holders run a few statements under it",
    ),
    Allowance(
        "concurrent/futures/thread.py",
        reason="ThreadPoolExecutor's bookkeeping locks, held for a few statements",
    ),
    Allowance(
        "concurrent/futures/thread.py",
        "_adjust_thread_count",
        waits=True,
        reason="run_in_executor starts a thread: Thread.start waits for the OS"
        " to start it, once per executor thread",
    ),
    Allowance(
        "asyncio/base_events.py",
        "shutdown_default_executor",
        waits=True,
        reason="asyncio.run's teardown: starts, then joins, the thread that"
        " shuts the default executor down (after it has done so)",
    ),
    Allowance(
        "logging/__init__.py",
        reason="a logging handler's lock, held while one record is written",
    ),
)

#: :data:`STDLIB`, and syncice's bounded locks that the asyncio shim may take
#: on the loop (through the blocking connection and the worker).
SHIM: tuple[Allowance, ...] = (
    *STDLIB,
    Allowance(
        "syncice/_worker.py",
        "_wake",
        reason="Worker._wake_lock: any thread posting a command holds it for"
        " one non-blocking send() on the wakeup socket",
    ),
    Allowance(
        "syncice/_mailbox.py",
        reason="a mailbox's lock: held for a few statements (a batch of puts,"
        " a take, a withdrawal), never across I/O or a wait",
    ),
    Allowance(
        "syncice/_inbox.py",
        reason="the inbox's lock (its mailbox's): held for a few statements,"
        " never across I/O or a wait",
    ),
    Allowance(
        "syncice/_lifecycle.py",
        reason="the life cycle's lock: held for one check and assignment",
    ),
    Allowance(
        "syncice/_facade.py",
        reason="the facade core's lock: held for a few statements, never"
        " across I/O (gathering's binds run outside it) or a wait",
    ),
)

# Frames in threading.py are skipped to find the code that made a call; the
# ones named here make it a wait rather than entering a critical section.
_THREADING = threading.__file__
_WAITING_FRAMES = frozenset({"wait", "wait_for", "join", "_wait_for_tstate_lock"})

_LOCK_TYPES = (_thread.LockType, _thread.RLock)
_ACQUIRE_NAMES = frozenset({"acquire", "acquire_lock", "__enter__"})
_SOCKET_WAITS = frozenset(
    {
        "accept",
        "connect",
        "connect_ex",
        "recv",
        "recvfrom",
        "recv_into",
        "recvfrom_into",
        "recvmsg",
        "recvmsg_into",
        "send",
        "sendall",
        "sendto",
        "sendmsg",
    }
)
_LOOKUPS = (
    "getaddrinfo",
    "gethostbyname",
    "gethostbyname_ex",
    "gethostbyaddr",
    "getnameinfo",
)


def _module_functions() -> dict[Any, str]:
    functions: dict[Any, str] = {time.sleep: "time.sleep", select.select: "select"}
    for name in _LOOKUPS:
        functions[getattr(_socket, name)] = f"socket.{name}"
    return functions


_MODULE_FUNCTIONS = _module_functions()

# Selector objects, with the index and default of their timeout argument.
_SELECTOR_TYPES: dict[type, tuple[str, int, str]] = {}
if hasattr(select, "epoll"):
    _SELECTOR_TYPES[select.epoll] = ("poll", 0, "timeout")
if hasattr(select, "poll"):
    _SELECTOR_TYPES[type(select.poll())] = ("poll", 0, "timeout")
if hasattr(select, "devpoll"):  # pragma: no cover - Solaris
    _SELECTOR_TYPES[select.devpoll] = ("poll", 0, "timeout")
if hasattr(select, "kqueue"):  # pragma: no cover - BSD, macOS
    _SELECTOR_TYPES[select.kqueue] = ("control", 2, "timeout")

_FUTURE_WAITS = frozenset(
    {
        concurrent.futures.Future.result.__code__,
        concurrent.futures.Future.exception.__code__,
    }
)
_FUTURE_DONE = frozenset({"FINISHED", "CANCELLED", "CANCELLED_AND_NOTIFIED"})
_RUN_ONCE = vars(asyncio.base_events.BaseEventLoop)["_run_once"].__code__
_SELECTORS = selectors.__file__


@dataclass(frozen=True)
class Violation:
    """One call that would have blocked the guarded thread."""

    what: str
    stack: tuple[str, ...]  # innermost first

    def __str__(self) -> str:
        return f"{self.what}\n" + "".join(f"    {line}\n" for line in self.stack)


def _stack(frame: types.FrameType | None, depth: int = 8) -> tuple[str, ...]:
    lines: list[str] = []
    while frame is not None and len(lines) < depth:
        code = frame.f_code
        lines.append(f"{code.co_filename}:{frame.f_lineno} in {code.co_name}")
        frame = frame.f_back
    return tuple(lines)


def _site(frame: types.FrameType | None) -> tuple[types.FrameType | None, bool]:
    """The innermost frame outside threading.py, and whether the frames
    skipped make the call a wait."""
    waits = False
    while frame is not None and frame.f_code.co_filename == _THREADING:
        waits = waits or frame.f_code.co_name in _WAITING_FRAMES
        frame = frame.f_back
    return frame, waits


# --- reading a call's arguments back from its instruction ----------------------

_LOADS = frozenset(
    {"LOAD_CONST", "LOAD_FAST", "LOAD_DEREF", "LOAD_GLOBAL", "LOAD_NAME"}
)
#: An argument the guard could not read back: taken as the blocking kind.
UNKNOWN: Any = object()


@dataclass(frozen=True)
class _Plan:
    """How to read back the arguments of one call instruction."""

    argc: int
    #: The loads of the last arguments, as far back as each is one plain load
    #: (a constant or a variable): ("const", value) or ("name", name).
    tail: tuple[tuple[str, Any], ...]
    keywords: tuple[str, ...]


_plans: dict[tuple[types.CodeType, int], _Plan | None] = {}


def _plain_variable(ins: dis.Instruction) -> bool:
    """Whether ``ins`` loads one variable and nothing else (a LOAD_GLOBAL
    that also pushes a NULL loads the callable of a call)."""
    return ins.opname in _LOADS - {"LOAD_CONST"} and not (
        ins.opname == "LOAD_GLOBAL" and (ins.arg or 0) & 1
    )


def _plan(code: types.CodeType, offset: int) -> _Plan | None:
    instructions = list(dis.get_instructions(code))
    index = next(
        (i for i, ins in enumerate(instructions) if ins.offset == offset), None
    )
    if index is None or instructions[index].opname != "CALL":
        return None
    argc = instructions[index].arg or 0
    j = index - 1
    if j >= 0 and instructions[j].opname == "PRECALL":
        j -= 1
    keywords: tuple[str, ...] = ()
    if j >= 0 and instructions[j].opname == "KW_NAMES":
        keywords = code.co_consts[instructions[j].arg or 0]
        j -= 1
    tail: list[tuple[str, Any]] = []
    while len(tail) < argc and j >= 0:
        ins = instructions[j]
        if not (ins.opname == "LOAD_CONST" or _plain_variable(ins)):
            break
        tail.append(("const" if ins.opname == "LOAD_CONST" else "name", ins.argval))
        if ins.is_jump_target:
            break  # what came before may be another path's
        j -= 1
    return _Plan(argc, tuple(reversed(tail)), keywords)


def _arguments(frame: types.FrameType) -> tuple[list[Any], dict[str, Any]] | None:
    """The arguments of the C call ``frame`` is making (:data:`UNKNOWN` for
    those that cannot be read back), or None if the call is not a plain one."""
    key = (frame.f_code, frame.f_lasti)
    try:
        plan = _plans[key]
    except KeyError:
        plan = _plans[key] = _plan(*key)
    if plan is None:
        return None
    values = [UNKNOWN] * (plan.argc - len(plan.tail))
    for kind, value in plan.tail:
        if kind == "const":
            values.append(value)
            continue
        scopes = (frame.f_locals, frame.f_globals, frame.f_builtins)
        scope = next((s for s in scopes if value in s), None)
        values.append(UNKNOWN if scope is None else scope[value])
    split = len(values) - len(plan.keywords)
    return values[:split], dict(zip(plan.keywords, values[split:], strict=True))


def _argument(
    args: tuple[list[Any], dict[str, Any]] | None, index: int, name: str, default: Any
) -> Any:
    """Argument ``index`` (or keyword ``name``) of a call, ``default`` if not
    given, :data:`UNKNOWN` if it cannot be read back."""
    if args is None:
        return UNKNOWN
    positional, keywords = args
    if index < len(positional):
        return positional[index]
    return keywords.get(name, default)


# --- `with x.y:` sites -------------------------------------------------------

_Site = tuple[str, tuple[str, ...]]  # a variable, then attribute names


def _with_sites(code: types.CodeType) -> dict[int, _Site] | None:
    """The offsets of the ``BEFORE_WITH`` of ``code`` whose manager is a
    variable or an attribute chain (``with self._lock:``), with that chain."""
    sites: dict[int, _Site] = {}
    instructions = list(dis.get_instructions(code))
    for index, ins in enumerate(instructions):
        if ins.opname != "BEFORE_WITH":
            continue
        attributes: list[str] = []
        j = index - 1
        while j >= 0 and instructions[j].opname == "LOAD_ATTR":
            if instructions[j].is_jump_target:
                break
            attributes.append(instructions[j].argval)
            j -= 1
        else:
            if j >= 0 and _plain_variable(instructions[j]):
                sites[ins.offset] = (
                    instructions[j].argval,
                    tuple(reversed(attributes)),
                )
    return sites or None


def _with_manager(frame: types.FrameType, site: _Site) -> Any:
    name, attributes = site
    for scope in (frame.f_locals, frame.f_globals, frame.f_builtins):
        if name in scope:
            value = scope[name]
            break
    else:
        return None
    try:
        for attribute in attributes:
            value = getattr(value, attribute)
    except Exception:
        return None
    return value


def _held(lock: Any) -> bool:
    """Whether acquiring ``lock`` now would wait (no side effect)."""
    if isinstance(lock, _thread.LockType):
        return lock.locked()  # held by anyone, this thread included: a wait
    if lock._is_owned():  # an RLock of this thread: re-entered at once
        return False
    return repr(lock).startswith("<locked")


_TraceFn = Callable[[types.FrameType, str, Any], Any]


class LoopGuard:
    """Fail on blocking calls made by the thread this is entered on.

    :param allow: what may wait (see :class:`Allowance`): :data:`STDLIB` by
        default; pass ``STDLIB + (...)`` to add to it.
    :raises LoopBlocked: at a blocking call (it does not run), and on leaving
        the guard if any was made.

    ``with LoopGuard(): asyncio.run(main())``, or :func:`guarded_run`. Once a
    call raised, the thread is no longer watched (CPython unsets a profile
    function that raised) until the guard is left.
    """

    def __init__(self, allow: Iterable[Allowance] = STDLIB) -> None:
        self.allow = tuple(allow)
        self.violations: list[Violation] = []
        self._ident: int | None = None
        self._prev_profile: Any = None
        self._prev_trace: Any = None
        self._sites: dict[types.CodeType, dict[int, _Site] | None] = {}
        # Bound once: sys.gettrace() is compared with it.
        self._profile_fn = self._profile
        self._trace_fn = self._trace

    # --- entering and leaving ------------------------------------------------

    def __enter__(self) -> LoopGuard:
        if self._ident is not None:
            raise RuntimeError("a LoopGuard is entered once")
        self._ident = threading.get_ident()
        self._prev_profile = sys.getprofile()
        self._prev_trace = sys.gettrace()
        sys.settrace(self._trace_fn)
        sys.setprofile(self._profile_fn)
        return self

    def __exit__(self, *exc_info: object) -> None:
        sys.setprofile(self._prev_profile)
        sys.settrace(self._prev_trace)
        self.check()

    def check(self) -> None:
        """Raise :exc:`LoopBlocked` listing the blocking calls made so far."""
        if self.violations:
            raise LoopBlocked(
                f"{len(self.violations)} blocking call(s) on the loop thread:\n"
                + "\n".join(map(str, self.violations))
            )

    # --- what is reported ----------------------------------------------------

    def _report(self, what: str, frame: types.FrameType | None, *, waits: bool) -> None:
        site, via_wait = _site(frame)
        waits = waits or via_wait
        if any(allowance.covers(site, waits) for allowance in self.allow):
            return
        violation = Violation(what, _stack(frame))
        self.violations.append(violation)
        raise LoopBlocked(str(violation))

    def _lock(self, lock: Any, frame: types.FrameType, how: str) -> None:
        if _held(lock):
            self._report(f"{how} of a held {type(lock).__name__}", frame, waits=False)

    # --- the profile function -------------------------------------------------

    def _profile(self, frame: types.FrameType, event: str, arg: Any) -> None:
        if event == "c_call":
            self._c_call(frame, arg)
        elif event == "call" and frame.f_code in _FUTURE_WAITS:
            future = frame.f_locals.get("self")
            pending = future is not None and future._state not in _FUTURE_DONE
            if pending and frame.f_locals.get("timeout") != 0:
                self._report(
                    f"Future.{frame.f_code.co_name}() of a pending future",
                    frame.f_back,
                    waits=True,
                )

    def _c_call(self, frame: types.FrameType, function: Any) -> None:
        owner: Any = getattr(function, "__self__", None)
        kind = type(owner)
        if kind is types.ModuleType:
            if function.__class__ is types.BuiltinFunctionType:
                what = _MODULE_FUNCTIONS.get(function)
                if what is not None:
                    self._module_function(frame, function, what)
            return
        name = getattr(function, "__name__", "")
        if kind in _LOCK_TYPES:
            if name in _ACQUIRE_NAMES:
                self._acquire(frame, owner, name)
        elif isinstance(owner, _socket.socket):
            if name == "bind":
                self._report("socket.bind", frame, waits=True)
            elif name in _SOCKET_WAITS and owner.timeout != 0.0:
                self._report(f"socket.{name} on a blocking socket", frame, waits=True)
        elif kind in _SELECTOR_TYPES:
            method, index, keyword = _SELECTOR_TYPES[kind]
            if name == method:
                self._selector(frame, f"{kind.__name__}.{name}", index, keyword)
        elif kind is queue.SimpleQueue and name == "get":
            args = _arguments(frame)
            block = _argument(args, 0, "block", True)
            timeout = _argument(args, 1, "timeout", None)
            if block is not False and timeout != 0 and owner.empty():
                self._report("SimpleQueue.get of an empty queue", frame, waits=True)

    def _module_function(
        self, frame: types.FrameType, function: Any, what: str
    ) -> None:
        if function is select.select:
            self._selector(frame, what, 3, "timeout")
        elif function is time.sleep:
            if _argument(_arguments(frame), 0, "secs", UNKNOWN) != 0:
                self._report(what, frame, waits=True)
        else:
            self._report(what, frame, waits=True)

    def _selector(
        self, frame: types.FrameType, what: str, index: int, keyword: str
    ) -> None:
        back = frame.f_back
        if (
            frame.f_code.co_filename == _SELECTORS
            and back is not None
            and back.f_code is _RUN_ONCE
        ):
            return  # the event loop's own wait
        timeout = _argument(_arguments(frame), index, keyword, None)
        if timeout is UNKNOWN or timeout is None or timeout != 0:
            shown = "unknown" if timeout is UNKNOWN else repr(timeout)
            self._report(f"{what} with a timeout of {shown}", frame, waits=True)

    def _acquire(self, frame: types.FrameType, lock: Any, name: str) -> None:
        if name != "__enter__":
            args = _arguments(frame)
            blocking = _argument(args, 0, "blocking", True)
            timeout = _argument(args, 1, "timeout", -1)
            if blocking is not UNKNOWN and not blocking:
                return
            if timeout is not UNKNOWN and timeout == 0:
                return
        self._lock(lock, frame, f"{name}()")

    # --- the trace function: `with lock:` --------------------------------------

    def _trace(self, frame: types.FrameType, event: str, arg: Any) -> _TraceFn | None:
        # The global trace function: called for "call" events only.
        outer = self._prev_trace
        local: _TraceFn | None = None
        if outer is not None:
            local = outer(frame, event, arg)
            current = sys.gettrace()
            if current is not self._trace_fn:
                # coverage's tracer puts itself back the C way on "call"
                # (and its installer on a new thread swaps itself for it).
                if current is not None:
                    self._prev_trace = current
                sys.settrace(self._trace_fn)
        code = frame.f_code
        try:
            sites = self._sites[code]
        except KeyError:
            sites = self._sites[code] = _with_sites(code)
        if sites is None:
            return local
        frame.f_trace_opcodes = True
        if local is None:
            frame.f_trace_lines = False
        return self._opcodes(sites, local)

    def _opcodes(self, sites: dict[int, _Site], outer: _TraceFn | None) -> _TraceFn:
        def trace(frame: types.FrameType, event: str, arg: Any) -> _TraceFn:
            if event == "opcode":
                site = sites.get(frame.f_lasti)
                if site is not None:
                    manager = _with_manager(frame, site)
                    if isinstance(manager, _LOCK_TYPES):
                        self._lock(manager, frame, "with")
            elif outer is not None:
                outer(frame, event, arg)
            return trace

        return trace


def guarded_run(
    main: Any, *, allow: Iterable[Allowance] = STDLIB, debug: bool = False
) -> Any:
    """``asyncio.run(main, debug=debug)`` under a :class:`LoopGuard`."""
    with LoopGuard(allow):
        return asyncio.run(main, debug=debug)
