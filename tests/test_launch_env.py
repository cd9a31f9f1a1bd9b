"""bin/launch.py's ensure_malloc_tuning: a launcher re-executes itself once with the glibc
malloc tunable, keeps its command line, and leaves the environment alone when asked to."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

from cbir_jax._bin import launch

_GLIBC = launch._glibc_version()  # pylint: disable=protected-access
pytestmark = [pytest.mark.slow,  # re-executes launchers in subprocesses
              pytest.mark.skipif(_GLIBC is None or _GLIBC < (2, 35),
                                 reason="needs Linux with glibc >= 2.35")]

# A launcher-like script: records each start, calls the helper first, reports what it sees.
_SCRIPT = textwrap.dedent("""\
    import json, os, sys
    with open(os.environ["STARTS_FILE"], "a") as f:
      f.write("start\\n")
    from cbir_jax._bin import launch
    launch.ensure_malloc_tuning()
    print(json.dumps({"argv": sys.argv[1:], "tunables": os.environ.get("GLIBC_TUNABLES")}))
    """)
_ARGS = ["--flag=a b", "plain", "--config=x.py:cpu,k=1", "é"]


def _run(tmp_path, env_extra: dict[str, str], module: bool = False) -> tuple[dict, int]:
  (tmp_path / "fake_launcher.py").write_text(_SCRIPT)
  starts = tmp_path / "starts.txt"
  starts.unlink(missing_ok=True)
  env = {k: v for k, v in os.environ.items()
         if k not in ("GLIBC_TUNABLES", launch.MALLOC_TUNING_ENV,
                      launch._REEXEC_GUARD)}  # pylint: disable=protected-access
  env.update(STARTS_FILE=str(starts), PYTHONPATH=os.pathsep.join(
      [str(tmp_path)] + [p for p in sys.path if p]), **env_extra)
  target = ["-m", "fake_launcher"] if module else [str(tmp_path / "fake_launcher.py")]
  proc = subprocess.run([sys.executable, *target, *_ARGS], env=env, cwd=tmp_path,
                        capture_output=True, text=True, timeout=60, check=True)
  return json.loads(proc.stdout), starts.read_text().count("start")


@pytest.mark.parametrize("module", [False, True], ids=["script", "python_m"])
def test_reexecutes_once_with_tunable_and_same_argv(tmp_path, module):
  seen, starts = _run(tmp_path, {}, module=module)
  assert seen == {"argv": _ARGS, "tunables": "glibc.malloc.hugetlb=1"}
  assert starts == 2


def test_appends_to_existing_tunables(tmp_path):
  seen, starts = _run(tmp_path, {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})
  assert seen["tunables"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
  assert seen["argv"] == _ARGS and starts == 2


@pytest.mark.parametrize("env", [{"CBIR_JAX_MALLOC_TUNING": "0"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}],
                         ids=["opt_out", "user_value_kept", "already_set"])
def test_no_reexecution(tmp_path, env):
  seen, starts = _run(tmp_path, env)
  assert seen == {"argv": _ARGS, "tunables": env.get("GLIBC_TUNABLES")}
  assert starts == 1


def test_guard_stops_a_loop():
  env = {launch._REEXEC_GUARD: "1"}  # pylint: disable=protected-access
  assert launch.malloc_tuned_env(env) is None
  tuned = launch.malloc_tuned_env({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1"})
  assert tuned["GLIBC_TUNABLES"] == "glibc.malloc.trim_threshold=1:glibc.malloc.hugetlb=1"
  assert launch.malloc_tuned_env(tuned) is None
