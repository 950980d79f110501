import sys

from lambdaflow.cli import main

sys.exit(main())
