"""A dockerd of the benchmark's own (own data root, exec root and socket, no bridge, no
iptables), never the host's, and how to stop it."""
import os
import subprocess
import time
from pathlib import Path

DOCKER = "/usr/bin/docker" if os.path.exists("/usr/bin/docker") else "docker"


class OwnDockerd:
    """Starts a dockerd under `work`; `env` is the environment its clients use."""

    def __init__(self, work: Path, extra_env=None):
        sock = work / "docker.sock"
        self.env = dict(os.environ, DOCKER_HOST=f"unix://{sock}", DOCKER_CONFIG=str(work / "client"),
                        **(extra_env or {}))
        self.process = subprocess.Popen(
            ["dockerd", "--data-root", str(work / "data"), "--exec-root", str(work / "x"),
             "--pidfile", str(work / "dockerd.pid"), "--host", f"unix://{sock}",
             "--bridge=none", "--iptables=false", "--ip6tables=false", "--log-level", "warn"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(work / "dockerd.log", "w"))

    def ready(self) -> bool:
        """Waits up to a minute for the daemon to answer."""
        for _ in range(600):
            if subprocess.run([DOCKER, "version"], env=self.env, capture_output=True).returncode == 0:
                return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
