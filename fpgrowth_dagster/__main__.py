import sys

from fpgrowth_dagster.cli import main

sys.exit(main())
