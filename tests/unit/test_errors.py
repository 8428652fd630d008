"""The one error tree (llmrouter/errors.py): every error is in it, drawn, flagged, and still found where it was."""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

from llmrouter import errors
from llmrouter.errors import RouterError

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("llmrouter", "agents", "topics", "tables", "schemas", "infra")
TREE = [obj for obj in vars(errors).values()
        if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == errors.__name__]

# where each of these was defined before it joined the tree: code imports it from there
OLD_HOMES = {
    "Fenced": "llmrouter.runtime.inflight",
    "BudgetExceeded": "llmrouter.core.ledger",
    "WriteFailed": "llmrouter.runtime.writes",
    "GenerationCancelled": "llmrouter.localmodel.generation",
    "ModelUnavailable": "llmrouter.cache.embedding",
    "InfraError": "llmrouter.infra",
    "RequestProblem": "llmrouter.simulator.formats",
}


def _exception_classes_outside_the_tree() -> list[str]:
    """``path:line Name`` of each class defined outside errors.py whose bases name an exception."""
    found = []
    for folder in SOURCES:
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "llmrouter" / "errors.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef):
                    names = [ast.unparse(base).rsplit(".", 1)[-1] for base in node.bases]
                    if any(name.endswith(("Error", "Exception")) for name in names):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    return found


def test_no_error_class_is_defined_outside_errors_py():
    """Every exception class of the package is declared in llmrouter/errors.py, so the drawn tree is the whole tree."""
    assert _exception_classes_outside_the_tree() == []


def test_every_error_of_the_tree_descends_from_router_error_with_a_code_and_a_retriable_flag():
    """One root; each error has a stable string code and a bool retriable."""
    for error in TREE:
        assert issubclass(error, RouterError), error
        assert isinstance(error.code, str) and error.code, error
        assert isinstance(error.retriable, bool), error


def test_the_docstring_draws_every_error_of_the_tree():
    """Each class of errors.py appears in the module docstring's drawing."""
    drawing = errors.__doc__ or ""
    assert [error.__name__ for error in TREE if f" {error.__name__} " not in drawing] == []


@pytest.mark.parametrize("name, module", sorted(OLD_HOMES.items()))
def test_an_error_that_joined_the_tree_is_still_importable_where_code_imports_it(name, module):
    """The module that raises it still offers the very class errors.py declares."""
    assert getattr(importlib.import_module(module), name) is getattr(errors, name)


@pytest.mark.parametrize("error, builtin", [(errors.ModelUnavailable, RuntimeError), (errors.InfraError, RuntimeError),
                                            (errors.RequestProblem, ValueError)])
def test_errors_that_had_a_builtin_base_are_still_caught_by_it(error, builtin):
    """``except RuntimeError`` / ``except ValueError`` written for them before still catches them."""
    with pytest.raises(builtin):
        raise error("x")


def test_only_a_failed_write_is_worth_trying_again_among_the_errors_that_joined():
    """A write whose tries are spent may succeed later; a refused budget, a fence, a cancel, a missing model,
    a local service that will not start and a body the vendor refuses will not by trying again."""
    assert errors.WriteFailed.retriable
    assert not any(getattr(errors, name).retriable for name in OLD_HOMES if name != "WriteFailed")


def test_a_request_problem_keeps_the_parameter_it_names():
    """The simulator answers a RequestProblem with the vendor's 400 naming the parameter."""
    problem = errors.RequestProblem("'model' must name a model.", param="model")
    assert (problem.param, str(problem), problem.code) == ("model", "'model' must name a model.", "bad_request")
