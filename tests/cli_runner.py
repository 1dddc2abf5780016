"""Runs an entry script as `python SCRIPT ARGS...` does, in processes forked from one warm interpreter.

Starting Python and importing torch costs 5-8 s on 2 busy cores, far more than most bad-input
cases take once started. This module is started once as a real subprocess (`python
tests/cli_runner.py`); it imports the project, then for each request read from stdin forks a
child that runs SCRIPT as __main__ with the given argv, environment and working folder, its
stdout and stderr going to files. The exit status is what `python SCRIPT ARGS` would return:
SystemExit's code, or 1 with a printed traceback for an uncaught exception. The parent
process never runs torch or OpenCV work, so forking it is safe.

Protocol: one JSON object per line in ({"script", "argv", "env", "cwd", "stdout", "stderr",
"timeout"}), one JSON line out ({"code": int}, -9 after a timeout).
"""
from __future__ import annotations

import json
import os
import runpy
import signal
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _child(request: dict) -> None:
    """In the forked child: become `python SCRIPT ARGS`, then exit with its status."""
    os.setsid()
    for fd, target in ((0, os.devnull), (1, request["stdout"]), (2, request["stderr"])):
        opened = os.open(target, os.O_RDONLY if fd == 0 else os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(opened, fd)
        os.close(opened)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = [request["script"], *request["argv"]]
    code = 0
    try:
        runpy.run_path(request["script"], run_name="__main__")
    except SystemExit as e:
        if e.code is None:
            code = 0
        elif isinstance(e.code, int):
            code = e.code
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _wait(pid: int, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.killpg(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return -9


def serve() -> None:
    sys.path.insert(0, str(ROOT))
    import main  # noqa: F401  (the import this server exists to pay once)

    for line in sys.stdin:
        request = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            _child(request)
        print(json.dumps({"code": _wait(pid, request["timeout"])}), flush=True)


if __name__ == "__main__":
    serve()
