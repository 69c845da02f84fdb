"""SQL-on-FHIR v2 ViewDefinition runner: compiles views to one DuckDB query each."""

from warehouse.viewdef.compile import compile_view
from warehouse.viewdef.errors import ViewDefinitionError
from warehouse.viewdef.run import load_resources, materialize_view, run_view

__all__ = [
    "ViewDefinitionError",
    "compile_view",
    "load_resources",
    "materialize_view",
    "run_view",
]
