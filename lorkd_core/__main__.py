import sys

from lorkd_core.cli import main

sys.exit(main())
