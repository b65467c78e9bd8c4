import sys

from registry.cli.app import main

sys.exit(main())
