"""Safe arithmetic: an AST walker over a whitelist, never `eval`.

Only numbers, + - * / // % **, unary signs, parentheses and a few named functions and
constants are allowed. Inputs, exponents, intermediate magnitudes and node counts are
bounded, so no expression can run away with time or memory.
"""

from __future__ import annotations

import ast
import math
import operator

from ..errors import MicroturnError

MAX_CHARS = 200
MAX_NODES = 100
MAX_EXPONENT = 1000
MAX_MAGNITUDE = 1e300

BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
FUNCTIONS = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "log": math.log,
    "log10": math.log10,
    "log2": math.log2,
    "exp": math.exp,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "floor": math.floor,
    "ceil": math.ceil,
    "factorial": math.factorial,
}
CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}
WORDS = {
    "plus": "+",
    "minus": "-",
    "times": "*",
    "multiplied by": "*",
    "divided by": "/",
    "over": "/",
    "to the power of": "**",
    "squared": "**2",
    "cubed": "**3",
    "x": "*",
    "×": "*",
    "÷": "/",
    "^": "**",
}


class CalculatorError(MicroturnError, ValueError):
    """An expression the calculator refuses, with the reason."""


def normalise(text: str) -> str:
    """Spoken arithmetic to symbols: 'seventeen'-free but 'times', 'divided by', '^' and ','."""
    out = f" {text.lower()} "
    for word, sym in sorted(WORDS.items(), key=lambda kv: -len(kv[0])):
        out = (
            out.replace(f" {word} ", f" {sym} ")
            if word.isalpha() or " " in word
            else out.replace(word, sym)
        )
    return out.replace(",", "").strip()


def calculate(expression: str) -> float | int:
    if not isinstance(expression, str) or not expression.strip():
        raise CalculatorError("empty expression: expected arithmetic such as '17 * 23'")
    if len(expression) > MAX_CHARS:
        raise CalculatorError(
            f"expression of {len(expression)} characters: at most {MAX_CHARS} allowed"
        )
    try:
        tree = ast.parse(normalise(expression), mode="eval")
    except SyntaxError as e:
        raise CalculatorError(f"not arithmetic: {expression!r} ({e.msg})") from e
    nodes = sum(1 for _ in ast.walk(tree))
    if nodes > MAX_NODES:
        raise CalculatorError(f"expression has {nodes} parts: at most {MAX_NODES} allowed")
    return _eval(tree.body)


def _check(value: float | int) -> float | int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CalculatorError(f"result of type {type(value).__name__}: expected a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise CalculatorError("the result is not a finite number")
    if abs(value) > MAX_MAGNITUDE:
        raise CalculatorError(f"the result exceeds {MAX_MAGNITUDE:g} in magnitude")
    return value


def _eval(node: ast.AST) -> float | int:
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, (int, float))
        and not isinstance(node.value, bool)
    ):
        return _check(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            if abs(right) > MAX_EXPONENT:
                raise CalculatorError(f"exponent {right} is too large: at most {MAX_EXPONENT}")
            if abs(left) > 1 and abs(right) * math.log10(abs(left)) > math.log10(MAX_MAGNITUDE):
                raise CalculatorError(f"{left} ** {right} exceeds {MAX_MAGNITUDE:g}")
        try:
            return _check(BINARY[type(node.op)](left, right))
        except ZeroDivisionError as e:
            raise CalculatorError("division by zero") from e
    if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
        return _check(UNARY[type(node.op)](_eval(node.operand)))
    if isinstance(node, ast.Name):
        if node.id in CONSTANTS:
            return CONSTANTS[node.id]
        raise CalculatorError(
            f"unknown name {node.id!r}: allowed are {', '.join(sorted(CONSTANTS))}"
        )
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        if node.func.id not in FUNCTIONS:
            raise CalculatorError(
                f"unknown function {node.func.id!r}: allowed are {', '.join(sorted(FUNCTIONS))}"
            )
        args = [_eval(a) for a in node.args]
        if node.func.id == "factorial" and (len(args) != 1 or not 0 <= args[0] <= 170):
            raise CalculatorError("factorial takes one whole number from 0 to 170")
        try:
            return _check(FUNCTIONS[node.func.id](*args))
        except (ValueError, TypeError) as e:
            raise CalculatorError(f"{node.func.id}{tuple(args)}: {e}") from e
    if isinstance(node, ast.Attribute):
        raise CalculatorError("attribute access is not allowed")
    raise CalculatorError(f"{type(node).__name__} is not allowed in arithmetic")


def spoken_number(value: float | int) -> str:
    """How a result is said: thousands separators, two decimals above 1,000, else 6 digits."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)
    if isinstance(value, int):
        return f"{value:,}"
    if 1e3 <= abs(value) < 1e15:
        return f"{value:,.2f}".rstrip("0").rstrip(".")
    return f"{value:.6g}"
