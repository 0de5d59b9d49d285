"""pixql's SQL front end: split a script, parse the AI statements, keep the rest as text.

Examples:
    >>> from pixql.sql import parse_script
    >>> [type(s).__name__ for s in parse_script("LIST MODEL; SELECT 1")]
    ['ListModels', 'Passthrough']
"""

from pixql.sql.nodes import (
    AiStatement,
    BuildModel,
    Convert,
    CopyFrom,
    DeleteModel,
    GetModel,
    ListModels,
    Passthrough,
    Position,
    PrintImage,
    Query,
    Search,
    Statement,
    Subquery,
    format_ident,
    format_options,
    format_sql_string,
    format_value,
)
from pixql.sql.parser import parse_script, parse_statement, split_statements

__all__ = [
    "AiStatement",
    "BuildModel",
    "Convert",
    "CopyFrom",
    "DeleteModel",
    "GetModel",
    "ListModels",
    "Passthrough",
    "Position",
    "PrintImage",
    "Query",
    "Search",
    "Statement",
    "Subquery",
    "format_ident",
    "format_options",
    "format_sql_string",
    "format_value",
    "parse_script",
    "parse_statement",
    "split_statements",
]
