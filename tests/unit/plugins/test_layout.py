# Copyright: Contributors to the yogurt.phone collection
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The module_utils layout keeps its 1.0 rules: private files, no function over 60 lines."""

import ast
import pathlib

MODULE_UTILS = pathlib.Path(__file__).resolve().parents[3] / "plugins" / "module_utils"
LONGEST = 60


def test_module_utils_files_are_private():
    assert [p.name for p in MODULE_UTILS.glob("*.py") if not p.name.startswith("_")] == []


def test_no_module_utils_function_is_longer_than_60_lines():
    long = []
    for path in sorted(MODULE_UTILS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > LONGEST:
                    long.append(f"{path.name}:{node.lineno} {node.name}: {lines} lines")
    assert long == [], "split these functions (module_utils keeps each under 60 lines): " + "; ".join(long)
