import sys

from functions_azure.devhost.host import main

sys.exit(main())
