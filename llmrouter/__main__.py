import sys

from llmrouter.cli import main

sys.exit(main())
