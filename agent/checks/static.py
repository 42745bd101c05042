"""Static checks of a layer program: read with `ast`, never executed.

They catch in milliseconds what would otherwise cost a sandboxed child: syntax errors, a missing or
misshapen `DeltaNet` class, and imports or calls a token mixer has no business making. The sandbox
stays the real containment; these rules exist to give the author (often an LLM) a precise message
with a line number instead of a refusal deep in a traceback.
"""

from __future__ import annotations

import ast

LAYER_CLASS = "DeltaNet"

# Top-level modules a layer program may import: the math and tensor stack and fla's public surface.
ALLOWED_MODULES = frozenset({
    "torch", "einops", "math", "typing", "typing_extensions", "fla", "transformers", "__future__", "functools",
    "dataclasses", "collections", "itertools", "warnings", "numbers", "abc", "enum", "operator",
})
# Modules that reach the file system, processes, the network or arbitrary code loading.
FORBIDDEN_MODULES = frozenset({
    "os", "sys", "subprocess", "socket", "ctypes", "multiprocessing", "shutil", "requests", "urllib", "http",
    "pickle", "marshal", "importlib", "builtins", "signal", "threading", "asyncio", "pathlib", "io", "tempfile",
    "glob", "runpy", "code", "pty", "resource", "gc", "inspect", "httpx", "ftplib", "smtplib", "telnetlib",
    "webbrowser", "shelve", "dill", "cloudpickle", "joblib",
})
# Builtins that execute or load code, or reach outside the layer.
FORBIDDEN_BUILTINS = {
    "eval": "executes arbitrary code",
    "exec": "executes arbitrary code",
    "compile": "builds arbitrary code",
    "__import__": "imports modules dynamically",
    "globals": "exposes the module's namespace",
    "breakpoint": "stops the program for a debugger",
    "input": "waits for a terminal",
    "exit": "ends the process",
    "quit": "ends the process",
}
# Dotted calls that load or save pickles or fetch code.
FORBIDDEN_CALLS = {
    "torch.load": "unpickles a file",
    "torch.save": "writes a file",
    "torch.hub.load": "downloads and runs code",
    "torch.hub.load_state_dict_from_url": "downloads files",
}
# Attributes used to climb from an object to the interpreter's internals.
FORBIDDEN_ATTRIBUTES = frozenset({
    "__builtins__", "__globals__", "__subclasses__", "__code__", "__closure__", "__getattribute__", "f_globals",
    "f_locals", "f_back", "gi_frame", "__loader__", "__spec__",
})
# What the LM shell passes to the constructor, and the keywords of the forward contract.
INIT_KEYWORDS = ("hidden_size", "num_heads", "layer_idx")
SHELL_INIT_KEYWORDS = (*INIT_KEYWORDS, "norm_eps")
FORWARD_KEYWORDS = ("attention_mask", "past_key_values", "use_cache", "output_attentions")


def static_check(source: str) -> dict:
    """Report `{"ok", "errors", "warnings", "imports"}` for a program's source."""
    errors: list[str] = []
    warnings: list[str] = []
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        where = f"line {exc.lineno}" + (f", column {exc.offset}" if exc.offset else "")
        return {"ok": False, "errors": [f"{where}: syntax error: {exc.msg}"], "warnings": [], "imports": []}
    imports = _check_imports(tree, errors)
    _check_calls(tree, errors, warnings)
    _check_layer_class(tree, errors, warnings)
    return {"ok": not errors, "errors": errors, "warnings": warnings, "imports": imports}


def _check_imports(tree: ast.Module, errors: list[str]) -> list[str]:
    imports: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                errors.append(f"line {node.lineno}: relative import `from {'.' * node.level}{node.module or ''}`: "
                              "a program is a single file and has no package to import from")
                continue
            names = [node.module or ""]
        else:
            continue
        for name in names:
            imports.append(name)
            root = name.split(".")[0]
            if root in FORBIDDEN_MODULES:
                errors.append(f"line {node.lineno}: import of {name!r} is forbidden: a layer program may not reach "
                              "the file system, processes or the network")
            elif root not in ALLOWED_MODULES:
                errors.append(f"line {node.lineno}: import of {name!r} is not allowed; allowed modules are "
                              f"{', '.join(sorted(ALLOWED_MODULES))}")
    return sorted(set(imports))


def _dotted(node: ast.AST) -> str | None:
    """`torch.hub.load` for the expression torch.hub.load; None when it is not a plain dotted name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def _check_calls(tree: ast.Module, errors: list[str], warnings: list[str]) -> None:
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in FORBIDDEN_ATTRIBUTES:
            errors.append(f"line {node.lineno}: attribute {node.attr!r} is forbidden: it reaches interpreter internals")
        elif isinstance(node, ast.Name) and node.id == "__builtins__":
            errors.append(f"line {node.lineno}: `__builtins__` is forbidden: it reaches interpreter internals")
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if name in FORBIDDEN_BUILTINS:
            errors.append(f"line {node.lineno}: call to `{name}()` is forbidden: it {FORBIDDEN_BUILTINS[name]}")
        elif name in FORBIDDEN_CALLS:
            errors.append(f"line {node.lineno}: call to `{name}()` is forbidden: it {FORBIDDEN_CALLS[name]}")
        elif name == "open":
            mode = _open_mode(node)
            if mode is None or any(c in mode for c in "wax+"):
                shown = "a computed mode" if mode is None else f"mode {mode!r}"
                errors.append(f"line {node.lineno}: `open()` with {shown} is forbidden: a layer may not write files")
            else:
                warnings.append(f"line {node.lineno}: `open()` reads a file; a layer program should be self-contained")
        elif name in ("getattr", "setattr", "delattr") and node.args and _dotted(node.args[0]) in (
                "builtins", "__builtins__", "torch", "os", "sys"):
            errors.append(f"line {node.lineno}: `{name}()` on the module {_dotted(node.args[0])!r} is forbidden: "
                          "look names up directly")


def _open_mode(call: ast.Call) -> str | None:
    mode = call.args[1] if len(call.args) > 1 else next((k.value for k in call.keywords if k.arg == "mode"), None)
    if mode is None:
        return "r"
    if isinstance(mode, ast.Constant) and isinstance(mode.value, str):
        return mode.value
    return None


def _check_layer_class(tree: ast.Module, errors: list[str], warnings: list[str]) -> None:
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    layer = classes.get(LAYER_CLASS)
    if layer is None:
        nested = next((n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == LAYER_CLASS), None)
        where = f" (one is defined at line {nested.lineno}, but not at the top level)" if nested else ""
        errors.append(f"no top-level `class {LAYER_CLASS}(nn.Module)`{where}: the trainer loads the layer by that name")
        return
    if not _derives_from_module(layer, classes, set()):
        bases = ", ".join(ast.unparse(b) for b in layer.bases) or "nothing"
        errors.append(f"line {layer.lineno}: `class {LAYER_CLASS}` derives from {bases}; it must derive from nn.Module")
    methods = _methods(layer, classes)
    init = methods.get("__init__")
    if init is None:
        errors.append(f"line {layer.lineno}: `class {LAYER_CLASS}` has no __init__; it must accept "
                      f"{', '.join(INIT_KEYWORDS)} and **kwargs")
    else:
        _check_init(init, errors)
    forward = methods.get("forward")
    if forward is None:
        errors.append(f"line {layer.lineno}: `class {LAYER_CLASS}` has no forward method")
    else:
        _check_forward(forward, errors, warnings)


def _derives_from_module(cls: ast.ClassDef, classes: dict, seen: set) -> bool:
    """True when a base is `...Module` or a class of this file that itself derives from one."""
    for base in cls.bases:
        name = _dotted(base) or ""
        if name.split(".")[-1] == "Module":
            return True
        local = classes.get(name)
        if local is not None and name not in seen and _derives_from_module(local, classes, seen | {name}):
            return True
    return False


def _methods(cls: ast.ClassDef, classes: dict) -> dict:
    """Methods of the class, with those it inherits from classes of the same file."""
    found: dict = {}
    for base in cls.bases:
        local = classes.get(_dotted(base) or "")
        if local is not None and local is not cls:
            found.update(_methods(local, {k: v for k, v in classes.items() if v is not cls}))
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found[node.name] = node
    return found


def _parameters(fn: ast.FunctionDef) -> tuple[list[ast.arg], list[ast.arg], set[str]]:
    """(positional parameters after self, keyword-only parameters, names of those without a default)."""
    positional = [*fn.args.posonlyargs, *fn.args.args][1:]
    defaults = len(fn.args.defaults)
    required = {a.arg for a in positional[:len(positional) - defaults]} if defaults else {a.arg for a in positional}
    required |= {a.arg for a, d in zip(fn.args.kwonlyargs, fn.args.kw_defaults, strict=True) if d is None}
    return positional, fn.args.kwonlyargs, required


def _check_init(init: ast.FunctionDef, errors: list[str]) -> None:
    positional, keyword_only, required = _parameters(init)
    names = {a.arg for a in [*positional, *keyword_only]}
    posonly = {a.arg for a in init.args.posonlyargs[1:]}
    if init.args.kwarg is None:
        errors.append(f"line {init.lineno}: `__init__` has no **kwargs; the LM shell passes extra keywords "
                      f"(norm_eps and layer settings), so it must accept **kwargs")
        missing = [k for k in INIT_KEYWORDS if k not in names]
        if missing:
            errors.append(f"line {init.lineno}: `__init__` does not accept {', '.join(missing)}")
    unfilled = sorted(required - set(SHELL_INIT_KEYWORDS))
    if unfilled:
        errors.append(f"line {init.lineno}: `__init__` requires {', '.join(unfilled)} without a default; the shell "
                      f"constructs the layer with only {', '.join(SHELL_INIT_KEYWORDS)}, so give them defaults")
    blocked = sorted(posonly & set(SHELL_INIT_KEYWORDS))
    if blocked:
        errors.append(f"line {init.lineno}: `__init__` takes {', '.join(blocked)} positionally only; "
                      "the shell passes them by keyword")


def _check_forward(forward: ast.FunctionDef, errors: list[str], warnings: list[str]) -> None:
    if isinstance(forward, ast.AsyncFunctionDef):
        errors.append(f"line {forward.lineno}: `forward` is async; it must be a plain method")
        return
    positional, keyword_only, required = _parameters(forward)
    if not positional:
        if forward.args.vararg is None:
            errors.append(f"line {forward.lineno}: `forward` takes no input; the contract is forward(self, "
                          "hidden_states, attention_mask=None, past_key_values=None, use_cache=False, "
                          "output_attentions=False, **kwargs)")
        return
    if positional[0].arg != "hidden_states":
        warnings.append(f"line {forward.lineno}: the first argument of `forward` is {positional[0].arg!r}; the "
                        "contract calls it hidden_states")
    names = {a.arg for a in [*positional[1:], *keyword_only]} - {a.arg for a in forward.args.posonlyargs}
    if forward.args.kwarg is None:
        missing = [k for k in FORWARD_KEYWORDS if k not in names]
        if missing:
            errors.append(f"line {forward.lineno}: `forward` does not accept {', '.join(missing)} by keyword; add "
                          "them or **kwargs")
        else:
            warnings.append(f"line {forward.lineno}: `forward` has no **kwargs; the contract passes extra keywords "
                            "such as cu_seqlens")
    unfilled = sorted(required - {positional[0].arg})
    if unfilled:
        errors.append(f"line {forward.lineno}: `forward` requires {', '.join(unfilled)} without a default; the shell "
                      "calls it with the hidden states and attention_mask only")
