"""`.env.example` lists every environment variable `webhooks_project/settings.py` reads."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ROOT / "webhooks_project" / "settings.py"
ENV_EXAMPLE = ROOT / ".env.example"


def _is_env_read(call: ast.Call) -> bool:
    """``env_str(...)``, ``env_int(...)``, ... or ``os.environ.get(...)`` / ``os.getenv(...)``."""
    func = call.func
    if isinstance(func, ast.Name):
        return func.id.startswith("env_")
    return ast.unparse(func) in {"os.environ.get", "os.getenv"}


def _settings_reads() -> list[ast.Call]:
    """Every environment read in settings.py outside the ``env_*`` helpers' own bodies."""
    module = ast.parse(SETTINGS.read_text(encoding="utf-8"))
    reads = []
    pending: list[ast.AST] = [
        node for node in module.body if not isinstance(node, ast.FunctionDef | ast.ClassDef)
    ]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Call) and _is_env_read(node):
            reads.append(node)
        if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            reads.append(ast.Call(func=node.value, args=[node.slice], keywords=[]))
        pending.extend(ast.iter_child_nodes(node))
    return reads


def _variable_name(call: ast.Call) -> str | None:
    [name, *_] = call.args or [None]
    if isinstance(name, ast.Constant) and isinstance(name.value, str):
        return name.value
    return None


def _listed_variables() -> set[str]:
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    return set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))


def test_settings_read_each_variable_by_its_literal_name():
    unnamed = [ast.unparse(call) for call in _settings_reads() if _variable_name(call) is None]

    assert unnamed == [], "name each variable literally so this test can see it"


def test_env_example_lists_every_variable_settings_read():
    read = {name for call in _settings_reads() if (name := _variable_name(call))}
    missing = sorted(read - _listed_variables())

    assert {"DJANGO_DEBUG", "DATABASE_URL", "WEBHOOKS_ENCRYPTION_KEYS"} <= read
    assert missing == [], f"add these to .env.example with their defaults: {', '.join(missing)}"
