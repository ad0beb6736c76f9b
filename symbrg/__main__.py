import sys

from symbrg.cli import main

sys.exit(main())
