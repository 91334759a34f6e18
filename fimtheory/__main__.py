import sys

from fimtheory.cli import main

sys.exit(main())
