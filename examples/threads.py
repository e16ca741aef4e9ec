"""The threading model, shown: timeouts, several threads on one connection,
Ctrl-C in a blocking call, close() waking a blocked recv(), and a connection
after fork()."""

from __future__ import annotations

import os
import signal
import threading
import warnings

import syncice


def connected_pair() -> tuple[syncice.Connection, syncice.Connection]:
    a = syncice.Connection(ice_controlling=True, local_addresses=["127.0.0.1"])
    b = syncice.Connection(ice_controlling=False, local_addresses=["127.0.0.1"])
    for conn in (a, b):
        conn.gather_candidates(timeout=10)
    for ours, theirs in ((a, b), (b, a)):
        theirs.remote_username = ours.local_username
        theirs.remote_password = ours.local_password
        for candidate in ours.local_candidates:
            theirs.add_remote_candidate(candidate)
        theirs.add_remote_candidate(None)
    other = threading.Thread(target=b.connect, kwargs={"timeout": 10})
    other.start()
    a.connect(timeout=10)
    other.join()
    return a, b


def main() -> None:
    a, b = connected_pair()
    try:
        # 1. A timeout raises IceTimeoutError (a TimeoutError); nothing is lost.
        try:
            a.recv(timeout=0.1)
        except syncice.IceTimeoutError as exc:
            print("timeout:", exc)  # noqa: T201

        # 2. Several threads may send and receive on one connection at once.
        got: list[bytes] = []
        readers = [
            threading.Thread(target=lambda: got.append(b.recv(timeout=10)))
            for _ in range(4)
        ]
        for reader in readers:
            reader.start()
        for i in range(4):
            a.send(f"datagram {i}".encode())
        for reader in readers:
            reader.join()
        print("4 readers got:", sorted(d.decode() for d in got))  # noqa: T201

        # 3. Ctrl-C (SIGINT) interrupts a blocking call of the main thread
        #    with KeyboardInterrupt; the connection stays usable.
        if hasattr(signal, "pthread_kill"):
            main_thread = threading.main_thread().ident
            assert main_thread is not None
            threading.Timer(
                0.2, signal.pthread_kill, args=(main_thread, signal.SIGINT)
            ).start()
            try:
                a.recv()
            except KeyboardInterrupt:
                print("recv() interrupted by SIGINT")  # noqa: T201
            b.send(b"still there")
            print("after the interrupt:", a.recv(timeout=10).decode())  # noqa: T201

        # 4. close() from another thread wakes a blocked recv() at once.
        outcome: list[BaseException] = []

        def blocked() -> None:
            try:
                b.recv()  # no timeout: waits until data or close
            except syncice.ConnectionClosedError as exc:
                outcome.append(exc)

        waiter = threading.Thread(target=blocked)
        waiter.start()
        b.close()
        waiter.join()
        print("blocked recv() after close():", repr(outcome[0]))  # noqa: T201

        # 5. A child process after fork() cannot use the parent's connection.
        if hasattr(os, "fork"):
            read_end, write_end = os.pipe()
            with warnings.catch_warnings():  # 3.12+: fork() with threads warns
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
            if pid == 0:  # the child
                try:
                    a.send(b"from the child")
                    message = "send worked"
                except syncice.ConnectionClosedError as exc:
                    message = f"child: {exc}"
                os.write(write_end, message.encode())
                os._exit(0)
            os.close(write_end)
            os.waitpid(pid, 0)
            print(os.read(read_end, 200).decode())  # noqa: T201
            os.close(read_end)
    finally:
        a.close()
        b.close()


if __name__ == "__main__":
    main()
