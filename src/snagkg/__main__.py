import sys

from snagkg.cli.main import main

sys.exit(main())
