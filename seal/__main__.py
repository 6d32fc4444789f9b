import sys

from seal.cli.main import main

sys.exit(main())
