import sys

from llmrouter.commands.cli import main

sys.exit(main())
