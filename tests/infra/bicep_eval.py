"""Evaluate the Bicep expressions pycep parses, for given parameter values: what a template computes.

Only the subset the templates use for decisions is supported (literals, parameters, variables, object and
array literals, property access, conditionals, boolean and comparison operators, arithmetic, ``empty``,
``min``, ``max``, ``length``); anything else raises, so a test can never pass on an expression it did not
understand. Two habits of pycep shape the rules, and the templates write decisions to suit them:

* string literals and identifiers both come back as bare strings, so a bare string that names a parameter
  or variable is that symbol, and otherwise a literal;
* binary operators are parsed right-associatively without precedence (``a > 0 && b`` becomes
  ``a > (0 && b)``), so every comparison in a decision is parenthesised in the template.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

__all__ = ["Scope", "accessor", "evaluate"]

_COMPARE = {
    "greater_than": lambda a, b: a > b,
    "greater_than_or_equals": lambda a, b: a >= b,
    "less_than": lambda a, b: a < b,
    "less_than_or_equals": lambda a, b: a <= b,
    "equals": lambda a, b: a == b,
    "not_equals": lambda a, b: a != b,
}


def _int_divide(a: int, b: int) -> int:
    # ARM's div() truncates toward zero.
    return int(a / b)


_ARITHMETIC = {
    "add": lambda a, b: a + b,
    "substract": lambda a, b: a - b,  # sic: pycep's name for subtraction
    "multiply": lambda a, b: a * b,
    "divide": _int_divide,
    "modulo": lambda a, b: a % b,
}


class Scope(Mapping[str, Any]):
    """The symbols of one parsed Bicep file: parameters (given, else their defaults) and variables (on demand)."""

    def __init__(self, tree: Mapping[str, Any], **params: Any) -> None:
        declared = tree.get("parameters") or {}
        unknown = set(params) - set(declared)
        assert not unknown, f"not parameters of this file: {unknown}"
        self._values: dict[str, Any] = {}
        for name, spec in declared.items():
            if name in params:
                self._values[name] = params[name]
            elif spec["default"] is not None:
                self._values[name] = spec["default"]
        self._variables = {name: spec["value"] for name, spec in (tree.get("variables") or {}).items()}

    def __getitem__(self, name: str) -> Any:
        if name not in self._values and name in self._variables:
            self._values[name] = evaluate(self._variables[name], self)
        return self._values[name]

    def __contains__(self, name: object) -> bool:
        return name in self._values or name in self._variables

    def __iter__(self) -> Any:
        return iter({*self._values, *self._variables})

    def __len__(self) -> int:
        return len({*self._values, *self._variables})


def accessor(expr: Any) -> list[str] | None:
    """``a.b.c`` as ``['a', 'b', 'c']`` (pycep nests property accessors to the right), else ``None``."""
    if isinstance(expr, str):
        return [expr]
    op = expr.get("operator", {}) if isinstance(expr, dict) else {}
    if op.get("type") == "property_accessor":
        head = op["operands"]["operand_1"]
        rest = accessor(op["operands"]["operand_2"])
        if isinstance(head, str) and rest is not None:
            return [head, *rest]
    return None


def evaluate(expr: Any, scope: Mapping[str, Any]) -> Any:
    """The value of ``expr`` in ``scope``; raises ``AssertionError`` on anything outside the supported subset."""
    if expr is None or isinstance(expr, bool | int | float):
        return expr
    if isinstance(expr, str):
        return scope.get(expr, expr)
    if isinstance(expr, list):
        return [evaluate(item, scope) for item in expr]
    assert isinstance(expr, dict), f"unexpected node {expr!r}"
    if "operator" in expr:
        return _operator(expr, scope)
    if "function" in expr:
        return _function(expr["function"], scope)
    return {key: evaluate(value, scope) for key, value in expr.items()}


def _operator(expr: dict[str, Any], scope: Mapping[str, Any]) -> Any:
    kind = expr["operator"]["type"]
    operands = expr["operator"]["operands"]
    if kind == "property_accessor":
        path = accessor(expr)
        assert path is not None, f"cannot follow {json.dumps(expr)[:200]}"
        value = scope[path[0]]
        for key in path[1:]:
            value = value[key]
        return value
    if kind == "conditional":
        chosen = operands["true_value"] if evaluate(operands["condition"], scope) else operands["false_value"]
        return evaluate(chosen, scope)
    if kind == "not":
        return not evaluate(operands["bool_value"], scope)
    left = evaluate(operands["operand_1"], scope)
    if kind == "and":
        return bool(left) and bool(evaluate(operands["operand_2"], scope))
    if kind == "or":
        return bool(left) or bool(evaluate(operands["operand_2"], scope))
    if kind == "coalesce":
        return left if left is not None else evaluate(operands["operand_2"], scope)
    right = evaluate(operands["operand_2"], scope)
    if kind in _COMPARE:
        return _COMPARE[kind](left, right)
    if kind in _ARITHMETIC:
        return _ARITHMETIC[kind](left, right)
    raise AssertionError(f"operator {kind!r} is not supported: {json.dumps(expr)[:200]}")


def _function(function: dict[str, Any], scope: Mapping[str, Any]) -> Any:
    kind = function["type"]
    args = [evaluate(value, scope) for value in (function.get("parameters") or {}).values()]
    if kind == "empty":
        return not args[0]
    if kind == "min":
        return min(args)
    if kind == "max":
        return max(args)
    if kind == "length":
        return len(args[0])
    raise AssertionError(f"function {kind!r} is not supported")
