import sys

from registry.cli.entry import main

sys.exit(main())
