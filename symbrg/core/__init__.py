"""The core: errors and argument checks, work limits, the safe expression parser, the symbol registry,
special functions, the code generator, the identity verifier and the derivation data model.

Everything else in symbrg imports from here; nothing here imports from another symbrg subpackage.
"""

from symbrg.core.checks import (  # noqa: F401
    scalar, positive, nonnegative, in_range, integer, finite_array,
    matching, choice, psd_matrix, atomic_write, remove_temporaries, umask,
    resolve_symbols,
)
from symbrg.core.codegen import (  # noqa: F401
    Program, Workspace, lambdify, BACKENDS,
)
from symbrg.core.derivation import (  # noqa: F401
    Step, Derivation,
)
from symbrg.core.identities import (  # noqa: F401
    Verification, verify, check_identity,
)
from symbrg.core.errors import (  # noqa: F401
    SymbrgError, InvalidArgument, NotPositive, OutOfRange, NonFinite, ShapeMismatch,
    UnknownName, NotPositiveDefinite, Unsupported, TooExpensive, ConvergenceError, OutputExists,
)
from symbrg.core.limits import (  # noqa: F401
    Limit, lifted, current, registry, parse_overrides, format_number,
    ENV,
)
from symbrg.core.parsing import (  # noqa: F401
    Function, DEFAULT_FUNCTIONS, EXPRESSION, MAX_DEPTH, MAX_BITS, ROOT_BITS,
    parse_expression, parse_number, parse_list, as_expression,
)
from symbrg.core.printing import (  # noqa: F401
    FORMATS, LINE_WIDTH, render, to_text, to_latex, to_markdown,
    to_jupyter_latex, to_python, latex_width, equation_rows, display, status_text,
)
from symbrg.core.special import (  # noqa: F401
    numpy_erf, NumericFunction, GramDet, ArcCosKernel, arccos_angular,
)
from symbrg.core.symbols import (  # noqa: F401
    SYMBOLS, SymbolInfo, symbol, symbols,
)
