"""The node's modules (gausstr_ros/*.py) never import the tooling subpackage gausstr_ros.tools (parsed with ast)."""

from __future__ import annotations

import ast
from pathlib import Path

NODE_PACKAGE = Path(__file__).resolve().parents[1] / "gausstr_ros"


def tools_imports(source: str) -> list[str]:
    """The gausstr_ros.tools imports of one module's source, as written."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("gausstr_ros.tools")]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("gausstr_ros.tools"):
                found.append(node.module)
            elif node.module == "gausstr_ros":
                found += [f"gausstr_ros.{a.name}" for a in node.names if a.name == "tools"]
    return found


def test_the_check_sees_every_spelling():
    assert tools_imports("import gausstr_ros.tools.play\nfrom gausstr_ros import tools, msg\n"
                         "from gausstr_ros.tools.bag_writer import write_bag\nfrom gausstr_ros import qos") == [
        "gausstr_ros.tools.play", "gausstr_ros.tools", "gausstr_ros.tools.bag_writer"]


def test_node_modules_do_not_import_the_tools():
    modules = sorted(NODE_PACKAGE.glob("*.py"))
    assert len(modules) > 10 and (NODE_PACKAGE / "tools" / "replay_session.py").is_file()
    offending = {p.name: found for p in modules if (found := tools_imports(p.read_text()))}
    assert not offending, f"node modules import gausstr_ros.tools: {offending}"
