"""Token authentication, as cluster.yaml runs every node: a head with RAY_AUTH_MODE=token runs a
job for a client holding its token and refuses clients with a wrong token or none.

Slow (a private Ray head and three client processes, about a minute); the head has its own ports
and temp dir and is stopped by killing only its own processes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from cluster.local_head import LocalHead

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

# A client in its own process (Ray caches the auth mode per process): list jobs, run one that
# connects to the cluster, print the outcome as JSON.
TOKEN_CLIENT = """
import json, sys
from ray.job_submission import JobSubmissionClient
from cluster.submit import runtime_env, wait_for
try:
    client = JobSubmissionClient(sys.argv[1])
    client.list_jobs()
except Exception as exc:
    print(json.dumps({"ok": False, "error": type(exc).__name__})); sys.exit(0)
job = client.submit_job(entrypoint="python -c 'import ray; ray.init(); print(ray.cluster_resources()[\\"CPU\\"])'",
                        runtime_env={"env_vars": runtime_env()["env_vars"]})
status, code = wait_for(client, job, poll_s=1, timeout_s=120, say=lambda s: None)
print(json.dumps({"ok": True, "status": status, "code": code}))
"""


def test_token_auth_head_refuses_clients_without_the_token():
    token = uuid.uuid4().hex
    with LocalHead(num_cpus=1, env={"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}) as h:
        def client(**env):
            base = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
            out = subprocess.run([sys.executable, "-c", TOKEN_CLIENT, h.dashboard_url], env={**base, **env},
                                 capture_output=True, text=True, timeout=180, cwd=REPO)
            return json.loads(out.stdout.strip().splitlines()[-1]) if out.stdout.strip() else out.stderr[-2000:]

        assert client(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token) == {"ok": True, "status": "SUCCEEDED", "code": 0}
        assert client(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=uuid.uuid4().hex)["ok"] is False
        assert client(RAY_AUTH_MODE="disabled")["ok"] is False
