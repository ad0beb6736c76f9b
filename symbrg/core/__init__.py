"""The core: errors and argument checks, work limits, the safe expression parser, the symbol registry,
special functions, the code generator, the identity verifier and the derivation data model.

Everything else in symbrg imports from here; nothing here imports from another symbrg subpackage.
"""

from symbrg.core.checks import (  # noqa: F401
    atomic_write,
    choice,
    finite_array,
    in_range,
    integer,
    matching,
    nonnegative,
    positive,
    psd_matrix,
    remove_temporaries,
    resolve_symbols,
    scalar,
    umask,
)
from symbrg.core.codegen import (  # noqa: F401
    BACKENDS,
    Program,
    Workspace,
    lambdify,
)
from symbrg.core.derivation import (  # noqa: F401
    Derivation,
    Step,
)
from symbrg.core.errors import (  # noqa: F401
    ConvergenceError,
    InvalidArgument,
    NonFinite,
    NotPositive,
    NotPositiveDefinite,
    OutOfRange,
    OutputExists,
    ShapeMismatch,
    SymbrgError,
    TooExpensive,
    UnknownName,
    Unsupported,
)
from symbrg.core.identities import (  # noqa: F401
    Verification,
    check_identity,
    verify,
)
from symbrg.core.limits import (  # noqa: F401
    ENV,
    Limit,
    current,
    format_number,
    lifted,
    parse_overrides,
    registry,
)
from symbrg.core.parsing import (  # noqa: F401
    DEFAULT_FUNCTIONS,
    EXPRESSION,
    MAX_BITS,
    MAX_DEPTH,
    ROOT_BITS,
    Function,
    as_expression,
    parse_expression,
    parse_list,
    parse_number,
)
from symbrg.core.printing import (  # noqa: F401
    FORMATS,
    LINE_WIDTH,
    display,
    equation_rows,
    latex_width,
    render,
    status_text,
    to_jupyter_latex,
    to_latex,
    to_markdown,
    to_python,
    to_text,
)
from symbrg.core.special import (  # noqa: F401
    ArcCosKernel,
    GramDet,
    NumericFunction,
    arccos_angular,
    numpy_erf,
)
from symbrg.core.symbols import (  # noqa: F401
    SYMBOLS,
    SymbolInfo,
    symbol,
    symbols,
)
