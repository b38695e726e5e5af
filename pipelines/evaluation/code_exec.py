"""Run model-written Python programs in a subprocess with time and memory limits; pass@k.

    require_opt_in()                                        # PermissionError unless HF_ALLOW_CODE_EVAL=1
    outcome = run_program("def f(): ...\\nassert f() == 1", timeout_s=10, memory_mb=1024)
    outcome.status                                          # passed | failed | timeout | out_of_memory
    pass_at_k(n=20, c=3, k=10)                              # unbiased estimator (Chen et al. 2021)

Executing generated code is dangerous, so nothing here runs unless the process environment holds
lm-eval's opt-in `HF_ALLOW_CODE_EVAL=1` (the evaluate stage sets it in its workers only when
`eval.allow_code_execution: true`). Each program runs in a fresh `python -I` in its own session
and an empty temporary folder, with no stdin and a minimal environment, under
`resource.setrlimit` limits the child sets on itself before the program starts: RLIMIT_AS
(address space, so allocation fails with MemoryError), RLIMIT_CPU (CPU seconds, SIGXCPU),
RLIMIT_FSIZE (no large files) and RLIMIT_CORE 0; a wall-clock timeout kills the whole process
group (a program that sleeps uses no CPU). This stops accidents (endless loops, memory bombs), not an attacker: it is not a security
sandbox. Run untrusted models' code inside a container or VM without network, as OpenAI's
human-eval README advises. Hand-written because lm-eval's code_eval metric comes from the
`evaluate` package, which is not installed and needs the Hub to load it.
"""
from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass

OPT_IN_ENV = "HF_ALLOW_CODE_EVAL"


def require_opt_in() -> None:
    """Refuse to execute anything unless HF_ALLOW_CODE_EVAL=1 (lm-eval's convention)."""
    if os.environ.get(OPT_IN_ENV) != "1":
        raise PermissionError(
            "code execution refused: evaluating code-generation tasks runs programs the model wrote on "
            "this machine. Opt in with eval.allow_code_execution: true (or HF_ALLOW_CODE_EVAL=1 in the "
            "environment), ideally inside a container or VM without network access.")


@dataclass
class Outcome:
    status: str          # passed | failed | timeout | out_of_memory
    returncode: int | None
    stderr_tail: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"


# Runs first in the child: its own limits, then the program as __main__. Setting them here rather
# than in Popen's preexec_fn, which Python documents as unsafe (it can deadlock) in a process with
# threads, as a Ray worker always is.
_BOOT = """import resource, runpy, sys
path, cpu, memory = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 20, 16 << 20))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
del resource, sys.argv[1:]
runpy.run_path(path, run_name="__main__")
"""


def run_program(program: str, timeout_s: float = 10.0, memory_mb: int = 1024) -> Outcome:
    """Run `program` with `python -I`; passed means exit status 0 within the limits."""
    require_opt_in()
    with tempfile.TemporaryDirectory(prefix="bespoke_exec_") as work:
        path = os.path.join(work, "program.py")
        with open(path, "w") as f:
            f.write(program)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "HOME": work,
               "OMP_NUM_THREADS": "1"}
        limits = [str(max(1, math.ceil(timeout_s))), str(memory_mb * 1024 * 1024)]
        proc = subprocess.Popen([sys.executable, "-I", "-c", _BOOT, path, *limits], cwd=work, env=env,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            _, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)     # the program and anything it started
            _, err = proc.communicate()
            return Outcome("timeout", None, _tail(err))
    tail = _tail(err)
    if proc.returncode == 0:
        return Outcome("passed", 0, tail)
    if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL) and "MemoryError" not in tail:
        return Outcome("timeout", proc.returncode, tail)          # the CPU-seconds limit
    if "MemoryError" in tail or proc.returncode == -signal.SIGSEGV:
        return Outcome("out_of_memory", proc.returncode, tail)
    return Outcome("failed", proc.returncode, tail)


def _tail(err: bytes, n: int = 600) -> str:
    return err.decode("utf-8", "replace")[-n:]


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c pass: 1 - C(n-c, k) / C(n, k).

    Chen et al. 2021, "Evaluating Large Language Models Trained on Code" (arXiv:2107.03374),
    equation 1, computed as their numerically stable product 1 - prod_{i=n-c+1}^{n} (1 - k/i).
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))
