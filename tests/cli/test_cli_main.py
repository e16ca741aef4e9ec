"""What every command of the ``syncice`` program shares: help, ``-v``,
the exit status of an interrupted run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys

from tests.cli.servers import ROOT, cli


def test_top_level_help_lists_the_commands_and_exit_codes() -> None:
    result = cli(["--help"])
    assert result.returncode == 0
    for command in ("stun", "turn", "pipe", "demo"):
        assert f"    {command} " in result.stdout
    for status in ("0    success", "1    a check failed", "2    bad arguments"):
        assert status in result.stdout
    assert "130  interrupted" in result.stdout


def test_every_command_has_examples_json_and_verbose() -> None:
    for command in ("stun", "turn", "pipe"):
        text = cli([command, "--help"]).stdout
        assert "examples:" in text
        assert "--json" in text
        assert "-v, --verbose" in text
        assert "exit status:" in text


def test_verbose_logs_at_debug_on_stderr() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # receives, never answers
        port = silent.getsockname()[1]
        quiet = cli(["stun", f"127.0.0.1:{port}", "--timeout", "0.2"])
        loud = cli(["stun", f"127.0.0.1:{port}", "--timeout", "0.2", "-v"])
    assert quiet.returncode == loud.returncode == 1
    assert "DEBUG syncice.cli.stun: binding request to 127.0.0.1:" in loud.stderr
    assert "DEBUG" not in quiet.stderr


WAIT_LONG = ("--timeout", "600", "--local", "127.0.0.1")


def test_interrupted_exits_130() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        process = subprocess.Popen(
            [sys.executable, "-m", "syncice", "stun", f"127.0.0.1:{port}", *WAIT_LONG],
            cwd=ROOT,
            env=dict(os.environ, PYTHONPATH=str(ROOT)),
            stderr=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stderr is not None
            # The progress line says it is waiting for the answer.
            assert "binding request from 127.0.0.1" in process.stderr.readline()
            silent.recvfrom(2048)  # and the request is out
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 130
    assert "error: interrupted" in err


def test_the_examples_of_every_help_parse() -> None:
    # Each "syncice ..." line of a help text is a command line the parser
    # takes (redirections, continuations and the notes after two spaces or
    # in parentheses aside).
    import shlex

    from syncice.cli import EPILOG, build_parser, pipe, stun, turn

    parser, _ = build_parser()
    lines = [
        line
        for text in (EPILOG, stun.EPILOG, turn.EPILOG, pipe.EPILOG)
        for line in text.replace("\\\n", " ").splitlines()
    ]
    examples = [line[line.index("syncice ") :] for line in lines if "syncice " in line]
    assert len(examples) >= 8
    for example in examples:
        command = example.split("  ")[0].split("(")[0]
        words = shlex.split(command.split(">")[0].split("<")[0])
        args = parser.parse_args(words[1:])  # SystemExit: the help is wrong
        assert args.command == words[1], example
